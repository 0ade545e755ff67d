//! `goscope ps`: every Go process on the host (`process_list`), like gops
//! with no arguments, with whether goscope can observe it and why not.

use std::fmt::Write as _;

use crate::{cli::PsArgs, output, process_list};

pub fn run(args: &PsArgs) -> anyhow::Result<i32> {
    let processes = process_list::go_processes();
    if args.json {
        output::print_json(&processes)?;
        return Ok(0);
    }
    let mut out = format!(
        "{:>8}  {:<10} {:<12} {:<18} {:<24} {}\n",
        "PID", "GO", "FLAGS", "SUPPORTED", "CGROUP", "EXECUTABLE"
    );
    for p in &processes {
        let flags: Vec<&str> = [(p.stripped, "stripped"), (p.pie, "pie"), (p.cgo, "cgo")]
            .iter()
            .filter_map(|(on, name)| on.then_some(*name))
            .collect();
        let supported = match &p.unsupported_reason {
            None => "yes".to_string(),
            Some(why) => format!("no: {why}"),
        };
        let _ = writeln!(
            out,
            "{:>8}  {:<10} {:<12} {:<18} {:<24} {}",
            p.pid,
            p.go_version,
            if flags.is_empty() {
                "-".to_string()
            } else {
                flags.join(",")
            },
            supported,
            crate::format::bounded(&p.cgroup, 24),
            p.exe
        );
    }
    if processes.is_empty() {
        out.push_str("no Go process found (as non-root, only your own processes are readable)\n");
    }
    output::print_text(&out)?;
    Ok(0)
}
