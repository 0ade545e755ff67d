//! Command-line arguments, parsed and nothing more (no I/O here).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "goscope",
    version,
    about = "A live observer for running Go processes: runtime CPU, allocation pressure, GC pacing and the scheduler, without restarting the target.",
    after_help = "Examples:\n  sudo goscope doctor --pid 1234\n  sudo goscope doctor --pid 1234 --duration 30 --json\n  sudo goscope gc --pid 1234 --duration 30\n  sudo goscope sched --pid 1234 --interval 500\n  sudo goscope cpu --pid 1234 --duration 30 -o cpu.pb.gz\n  goscope inspect ./server --json\n  sudo goscope inspect 1234"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what goscope knows about a Go binary before attaching: Go version,
    /// build settings, symbols/DWARF/PIE, and the address of every runtime
    /// function it probes.
    Inspect(InspectArgs),
    /// Attach to a running Go process for a window and report GC, allocation
    /// and scheduler health with verdicts.
    Doctor(DoctorArgs),
    /// gctrace without a restart: one line per GC cycle as it completes,
    /// with mark-assist count and latency, GOGC and GOMEMLIMIT in force.
    Gc(GcArgs),
    /// schedtrace without a restart: gomaxprocs, idle Ps, threads, run
    /// queues, goroutines and scheduling latency every interval.
    Sched(SchedArgs),
    /// Sample the process's CPU: runtime (GC, allocation, scheduler, ...)
    /// versus application, and a pprof CPU profile.
    Cpu(CpuArgs),
    /// Where allocation comes from: call sites with MB/s, and a pprof
    /// allocation profile (alloc_objects, alloc_space).
    Alloc(AllocArgs),
    /// Host daemon: watch every Go process on the host and serve their
    /// figures as Prometheus metrics (and push them over OTLP).
    #[command(
        after_help = "Examples:\n  sudo goscope agent\n  sudo goscope agent --listen 0.0.0.0:9464\n  sudo goscope agent --otlp-endpoint http://127.0.0.1:4318/v1/metrics\n  sudo goscope agent --otlp-endpoint https://otel.example:4318/v1/metrics \\\n      --otlp-header 'Authorization=Bearer TOKEN' --otlp-ca-file /etc/ssl/otel-ca.pem \\\n      --otlp-compression gzip"
    )]
    Agent(AgentArgs),
    /// Live terminal view: allocation, GC, scheduler, cgo and sites,
    /// refreshed every second.
    Top(TopArgs),
    /// Allocation bytes per size class over time, as an SVG or a
    /// self-contained HTML heatmap.
    Heatmap(HeatmapArgs),
    /// What every goroutine is doing, read from the runtime's table
    /// without stopping the target: groups by state and stack, the
    /// runtime's debug=1/debug=2 texts, a pprof goroutine profile, and
    /// the difference from an earlier dump.
    Goroutines(GoroutinesArgs),
    /// Why each hot allocation is on the heap: the compiler's escape
    /// decisions for the module at --src joined to the hot sites of a live
    /// target (--pid) or of an allocation profile (--profile).
    Explain(ExplainArgs),
    /// Every Go process on the host: pid, executable, Go version, build
    /// flags, cgroup, and whether goscope can observe it (and why not).
    Ps(PsArgs),
    /// A timeline for Perfetto (Chrome trace-event JSON): GC cycles and
    /// their phases, heap live and goal, goroutines, CFS throttling, all
    /// on CLOCK_MONOTONIC.
    Trace(TraceArgs),
    /// Render a pprof profile (goscope's or any other) as an interactive
    /// flame graph SVG, offline: no process, no privilege.
    Flamegraph(FlamegraphArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  goscope flamegraph cpu.pb.gz -o cpu.svg\n  goscope flamegraph allocs.pb.gz --sample-index inuse_space -o live-heap.svg"
)]
pub struct FlamegraphArgs {
    /// The profile (profile.proto, gzipped or not).
    pub profile: PathBuf,
    /// The SVG to write.
    #[arg(long, short)]
    pub output: PathBuf,
    /// The sample type the widths measure (default: cpu, alloc_space or
    /// goroutine when present, the sum of all states for a wall-clock
    /// profile, else the last one, as pprof does).
    #[arg(long)]
    pub sample_index: Option<String>,
    /// The title (default: the profile's file name).
    #[arg(long)]
    pub title: Option<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("sites").args(["pid", "profile"])))]
pub struct ExplainArgs {
    /// The module's source (the directory holding go.mod).
    #[arg(long)]
    pub src: PathBuf,
    /// Take the hot sites from this process over --duration.
    #[arg(long, short)]
    pub pid: Option<u32>,
    /// Take the hot sites from an allocation or heap profile (goscope
    /// alloc -o, or Go's own /debug/pprof/heap or allocs).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// The binary the profile came from: its Go version and build
    /// settings are rebuilt with (--pid reads the target's own).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Seconds to observe a --pid target.
    #[arg(long, short, default_value_t = 10.0, value_parser = parse_duration)]
    pub duration: f64,
    /// The Go toolchain to build with (default: an installed one matching
    /// the binary's Go version).
    #[arg(long)]
    pub go: Option<PathBuf>,
    /// Count the module's escape decisions by reason class instead.
    #[arg(long)]
    pub summary: bool,
    /// Hot sites shown.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GoroutinesArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Every goroutine as JSON (frames, state, wait, creation site).
    #[arg(long)]
    pub json: bool,
    /// Write a pprof goroutine profile (`go tool pprof` opens it), or
    /// its flame graph when the name ends in .svg.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Show every frame of each group, not only the frame to look at.
    #[arg(long)]
    pub stacks: bool,
    /// Print runtime/pprof's own text instead: 1 groups by stack with
    /// counts, 2 one traceback per goroutine with "created by" lines.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub debug: Option<u8>,
    /// An earlier `goscope goroutines --json` dump: show which groups
    /// grew or shrank since.
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Walk at most this many stacks (the others are listed by state).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_stacks: u64,
    /// Frames per stack at most.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_frames: u64,
    /// Refuse a goroutine table larger than this.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_goroutines: u64,
    /// Include system goroutines (GC workers, ...), which the runtime's
    /// goroutine profile leaves out.
    #[arg(long)]
    pub system: bool,
    /// Groups printed in the text view.
    #[arg(long, default_value_t = 25)]
    pub groups: usize,
    /// Watch for this many seconds and report leak suspects: groups
    /// (creation site, wait reason, blocking frame) that keep growing while
    /// their goroutines stay parked. Ctrl-C stops earlier.
    #[arg(long, value_parser = parse_duration)]
    pub watch: Option<f64>,
    /// Milliseconds between dumps while watching (lengthened so that
    /// goscope's dumps take at most 5% of a core).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub watch_interval_ms: u64,
    /// Sample every goroutine's state and stack for this many seconds: a
    /// wall-clock profile of where goroutines spend their time (running,
    /// runnable, syscall, waiting), written with -o as pprof.
    #[arg(long, value_parser = parse_duration, conflicts_with = "watch")]
    pub profile: Option<f64>,
    /// Milliseconds between samples of the profile (lengthened so that
    /// goscope's sampling takes at most 5% of a core).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub profile_interval_ms: u64,
}

#[derive(Debug, Args)]
pub struct HeatmapArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How long to record, in seconds; Ctrl-C stops earlier and still writes.
    #[arg(long, short, default_value_t = 30.0, value_parser = parse_duration)]
    pub duration: f64,
    /// Milliseconds per column.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub interval_ms: u64,
    /// Output file: .svg or .html.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Milliseconds between refreshes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(200..=60_000))]
    pub interval_ms: u64,
    /// Where goscope's own messages go while the view is up (default
    /// $XDG_RUNTIME_DIR/goscope/top-PID.log, else /run/goscope/top-PID.log;
    /// the directory is private, mode 0700). A symbolic link is refused.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Most of the target's CPU the per-call probes may cost, in percent
    /// (or "off").
    #[arg(long, default_value = "1")]
    pub overhead_budget: OverheadBudget,
    /// Counts from memory only: no per-call probes.
    #[arg(long)]
    pub no_sites: bool,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address to serve /metrics on; loopback unless you name another.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
    /// Milliseconds between scans of /proc for new Go processes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub scan_interval_ms: u64,
    /// Most processes watched at once (bounds the series exported).
    #[arg(long, default_value_t = 256)]
    pub max_targets: usize,
    /// Also watch Go versions outside the verified range.
    #[arg(long)]
    pub force_version: bool,
    /// The kubelet's pod log directories (NAMESPACE_NAME_UID), where pod
    /// names and namespaces are read from.
    #[arg(long, default_value = "/var/log/pods")]
    pub kubelet_pods_dir: PathBuf,
    /// Also push the same metrics as OTLP/HTTP protobuf, POSTed to this
    /// URL (http or https; a URL without a path gets /v1/metrics), e.g.
    /// http://127.0.0.1:4318/v1/metrics.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<crate::agent::otlp_config::Endpoint>,
    /// Milliseconds between two pushes.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000), requires = "otlp_endpoint")]
    pub otlp_interval_ms: u64,
    /// Milliseconds one push may take, connecting included (then it is
    /// retried).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=120_000), requires = "otlp_endpoint")]
    pub otlp_timeout_ms: u64,
    /// A header sent with every push (repeatable), e.g.
    /// "Authorization=Bearer TOKEN"; its value is never logged.
    #[arg(long, value_name = "KEY=VALUE", requires = "otlp_endpoint")]
    pub otlp_header: Vec<crate::agent::otlp_config::Header>,
    /// A PEM file of CA certificates trusted for an https endpoint, besides
    /// Mozilla's roots built in.
    #[arg(long, value_name = "PATH", requires = "otlp_endpoint")]
    pub otlp_ca_file: Option<PathBuf>,
    /// How push bodies are compressed (gzip: Content-Encoding: gzip, which
    /// OTLP/HTTP receivers such as the Collector accept).
    #[arg(long, value_enum, default_value_t, requires = "otlp_endpoint")]
    pub otlp_compression: crate::agent::otlp_config::Compression,
}

#[derive(Debug, Args)]
pub struct AllocArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sampling window in seconds; Ctrl-C ends it early.
    #[arg(long, short, default_value_t = 10.0, value_parser = parse_duration)]
    pub duration: f64,
    /// Where to write the gzipped pprof profile (a flame graph of the
    /// bytes allocated when the name ends in .svg).
    #[arg(long, short, default_value = "allocs.pb.gz")]
    pub output: PathBuf,
    /// Most of the target's CPU the allocation probes may cost, in percent;
    /// above it they run in sampled windows.
    #[arg(long, default_value = "1")]
    pub overhead_budget: OverheadBudget,
    /// Print the sites as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CpuArgs {
    /// The process to observe.
    #[arg(long, short)]
    pub pid: u32,
    /// Sampling window in seconds; Ctrl-C ends it early.
    #[arg(long, short, default_value_t = 10.0, value_parser = parse_duration)]
    pub duration: f64,
    /// Where to write the gzipped pprof profile (a flame graph of the
    /// CPU time when the name ends in .svg).
    #[arg(long, short, default_value = "cpu.pb.gz")]
    pub output: PathBuf,
    /// Samples per second per CPU.
    #[arg(long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub hz: u64,
    /// Print the split as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SchedArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Milliseconds between lines.
    #[arg(long, short, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub interval: u64,
    /// How long to watch, in seconds; Ctrl-C stops earlier.
    #[arg(long, short, default_value_t = 10.0, value_parser = parse_duration)]
    pub duration: f64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How long to watch, in seconds; Ctrl-C stops earlier.
    #[arg(long, short, default_value_t = 10.0, value_parser = parse_duration)]
    pub duration: f64,
    /// One JSON object per cycle per line instead of gctrace-style text.
    #[arg(long)]
    pub json: bool,
    /// Do not probe mark assists (cycle records only: one probe hit per GC).
    #[arg(long)]
    pub no_assists: bool,
    /// Most of the target's CPU the assist probes may cost, in percent;
    /// above it they are attached only part of the time (sampled windows).
    #[arg(long, default_value = "1")]
    pub overhead_budget: OverheadBudget,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A process id, or the path of a Go executable.
    pub target: String,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Length of the observation window in seconds; Ctrl-C ends it early and
    /// still prints the report.
    #[arg(long, short, default_value_t = 10.0, value_parser = parse_duration)]
    pub duration: f64,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Also show where each figure came from (probe, DWARF, version table).
    #[arg(long, short)]
    pub verbose: bool,
    /// Most of the target's CPU the high-frequency probes (allocation
    /// sites, cgo latency, goroutine creation sites) may cost, in percent;
    /// above it they run in sampled windows.
    #[arg(long, default_value = "1")]
    pub overhead_budget: OverheadBudget,
    /// Skip the per-call probes (allocation sites, cgo latency, goroutine
    /// creation sites): counts from memory only.
    #[arg(long)]
    pub no_sites: bool,
    /// The target's module source: each top allocation site shows why the
    /// compiler put its value on the heap (as `goscope explain`).
    #[arg(long)]
    pub src: Option<PathBuf>,
    /// The Go toolchain for --src (default: one matching the target).
    #[arg(long, requires = "src")]
    pub go: Option<PathBuf>,
}

/// A process by PID or by name (resolved when the command opens it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessSpec {
    Pid(u32),
    Name(String),
}

impl std::str::FromStr for ProcessSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(pid) = text.parse::<u32>() {
            return Ok(ProcessSpec::Pid(pid));
        }
        if text.is_empty() || text.len() > 4096 || text.chars().any(char::is_control) {
            return Err(format!("{text:?} is neither a PID nor a process name"));
        }
        Ok(ProcessSpec::Name(text.to_string()))
    }
}

impl ProcessSpec {
    /// The PID, looking the name up in /proc (exactly one match).
    pub fn resolve(&self) -> anyhow::Result<u32> {
        match self {
            ProcessSpec::Pid(pid) => Ok(*pid),
            ProcessSpec::Name(name) => crate::process_list::find_by_name(name),
        }
    }
}

/// The target every observing command takes (flattened into each).
#[derive(Clone, Debug, Args)]
pub struct TargetArgs {
    /// The process to observe: a PID, or a process or executable name
    /// that matches exactly one process.
    #[arg(long, short)]
    pub pid: ProcessSpec,
    /// Attach even to a Go version outside the verified range.
    #[arg(long)]
    pub force_version: bool,
}

/// How much of the target's CPU per-call probes may cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OverheadBudget {
    /// A percentage of the target's CPU, in (0, 100].
    Percent(f64),
    /// No governing: every probe stays attached whatever it costs.
    Off,
}

impl OverheadBudget {
    /// The budget as the governor takes it (infinite when off).
    pub fn percent(self) -> f64 {
        match self {
            Self::Percent(p) => p,
            Self::Off => f64::INFINITY,
        }
    }
}

impl std::str::FromStr for OverheadBudget {
    type Err = String;

    /// A percentage in (0, 100], or "off".
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self::Off);
        }
        let percent: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a percentage (or \"off\")"))?;
        if percent.is_finite() && percent > 0.0 && percent <= 100.0 {
            Ok(Self::Percent(percent))
        } else {
            Err(format!("{text}% is outside 0 < budget <= 100"))
        }
    }
}

fn parse_duration(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 {
        Ok(seconds)
    } else {
        Err(format!("{text} s is outside 0 < duration <= 86400"))
    }
}

impl InspectArgs {
    /// The target as a PID when it is all digits.
    pub fn pid(&self) -> Option<u32> {
        self.target.parse().ok()
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.target)
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo goscope trace --pid 1234 --duration 10 -o trace.json\n  sudo goscope trace --pid 1234 -d 30 -o trace.json.gz --max-events-per-sec 5000\nOpen the file in ui.perfetto.dev or chrome://tracing."
)]
pub struct TraceArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How long to trace, in seconds; Ctrl-C stops earlier and still
    /// closes the file.
    #[arg(long, short, default_value_t = 10.0, value_parser = parse_duration)]
    pub duration: f64,
    /// The trace file (Chrome trace-event JSON, array form); gzip when
    /// the name ends in .gz.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Milliseconds between readings of the runtime's counters (heap live
    /// and goal, goroutines) from memory.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub interval: u64,
    /// Milliseconds between readings of the cgroup's cpu.stat (the
    /// resolution of the throttled slices).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub cgroup_interval: u64,
    /// Most events per second of trace kept; the rest are counted and the
    /// file says what was dropped.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(10..))]
    pub max_events_per_sec: u32,
    /// Most of the target's CPU the GC-cycle probe may cost, in percent;
    /// past it the probe is detached and cycles are read from memory.
    #[arg(long, default_value = "1")]
    pub overhead_budget: OverheadBudget,
}
