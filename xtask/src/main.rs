//! Build helpers: `cargo xtask bench` measures what attaching goscope costs
//! a target.

mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Runs the same fixed Go workload alternately with and without goscope
    /// attached and prints each pair's time ratio and the median.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Bench(args) => bench::run(&args),
    }
}
