//! The `goscope` command: parses arguments, runs one subcommand, prints the
//! error chain on failure.

use std::process::ExitCode;

use clap::Parser as _;
use goscope::{
    cli::{Cli, Command},
    commands, output,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect(args) => commands::inspect::run(args).map(|()| 0),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Gc(args) => commands::gc::run(args),
        Command::Sched(args) => commands::sched::run(args),
        Command::Cpu(args) => commands::cpu::run(args),
        Command::Alloc(args) => commands::alloc::run(args),
        Command::Agent(args) => goscope::agent::run(args),
        Command::Top(args) => commands::top::run(args),
        Command::Heatmap(args) => commands::heatmap::run(args),
        Command::Goroutines(args) => commands::goroutines::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Ps(args) => commands::ps::run(args),
        Command::Trace(args) => commands::trace::run(args),
        Command::Flamegraph(args) => commands::flamegraph::run(args),
    };
    match result {
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
        Err(e) if e.is::<output::BrokenPipe>() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goscope: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
