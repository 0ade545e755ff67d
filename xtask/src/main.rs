//! Build helpers: `cargo xtask bench` measures what attaching goscope costs
//! a target; `cargo xtask matrix` checks figures on every Go version;
//! `cargo xtask workload` builds a Go test target; `cargo xtask
//! pprof-proto` regenerates the pprof protobuf types; `cargo xtask
//! pictures` draws the README's pictures from real runs.

mod agent_bench;
mod bench;
mod dist;
mod matrix;
mod pictures;
mod pprof_proto;
mod runtime_table;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// What attaching goscope costs a Go target: fixed loadgen batches in
    /// fresh targets with and without goscope (A/B) and without/without
    /// (A/A) pairs, interleaved, target and goscope on separate CPUs; per
    /// pair target CPU (schedstat ns) and wall ratios, medians with an
    /// order-statistics interval, goscope's own CPU and estimate, a verdict
    /// and a `bench-json` line per workload (`--all`: the four acceptance
    /// workloads). Fails when the verdict does.
    Bench(bench::BenchArgs),
    /// The host agent watching N Go processes: its own CPU and memory.
    AgentBench(agent_bench::AgentBenchArgs),
    /// Runs goscope doctor against every installed Go version and prints a
    /// table of figures against the target's own runtime/metrics.
    Matrix(matrix::MatrixArgs),
    /// Regenerates the per-Go-version runtime table (offsets and global
    /// reference sites for binaries without DWARF or .symtab).
    RuntimeTable(runtime_table::RuntimeTableArgs),
    /// Regenerates observer/src/pprof/generated.rs (prost types) from the
    /// vendored observer/proto/profile.proto, with protox (no protoc).
    PprofProto,
    /// The release artifacts in target/dist/: a static goscope, shell
    /// completions, man pages and a Debian package with the agent's
    /// systemd unit.
    Dist(dist::DistArgs),
    /// The README's pictures (docs/img/top.png, heatmap.png) from real
    /// runs: goscope top in tmux against the demo workload, and a heatmap.
    Pictures(pictures::PicturesArgs),
    /// Builds a Go workload from workloads/ and prints the binary's path.
    Workload {
        /// Go version (installed by scripts/setup.sh), e.g. 1.27 or 1.22.10.
        #[arg(long, default_value = "1.27")]
        go: String,
        /// Directory under workloads/.
        #[arg(long, default_value = "loadgen")]
        name: String,
        /// Build with CGO_ENABLED=0.
        #[arg(long)]
        no_cgo: bool,
        /// -ldflags, e.g. "-s -w".
        #[arg(long, allow_hyphen_values = true)]
        ldflags: Option<String>,
        /// -buildmode, e.g. pie.
        #[arg(long)]
        buildmode: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Bench(args) => bench::run(&args),
        Task::AgentBench(args) => agent_bench::run(&args),
        Task::Matrix(args) => matrix::run(&args),
        Task::RuntimeTable(args) => runtime_table::run(&args),
        Task::PprofProto => pprof_proto::run(),
        Task::Dist(args) => dist::run(&args),
        Task::Pictures(args) => pictures::run(&args),
        Task::Workload {
            go,
            name,
            no_cgo,
            ldflags,
            buildmode,
        } => {
            let options = testkit::BuildOptions {
                cgo: !no_cgo,
                ldflags,
                buildmode,
            };
            println!(
                "{}",
                testkit::build_workload(&go, &name, &options)?.display()
            );
            Ok(())
        }
    }
}
