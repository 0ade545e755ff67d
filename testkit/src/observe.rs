//! One observed batch: a workload started, a goscope command attached, the
//! target's baseline taken after that (so goscope's window contains the
//! target's), one batch run, goscope stopped with Ctrl-C; returns what
//! goscope printed and the target's own runtime/metrics deltas.

use std::path::Path;

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::{Goscope, Target, WorkloadResult, goscope::Finished};

/// Starts `binary` with `target_args`, attaches `goscope <command> --pid PID
/// --duration 600 <extra>`, runs one batch and stops goscope with Ctrl-C.
/// Fails unless goscope exits successfully.
pub fn around_batch(
    binary: &Path,
    target_args: &[&str],
    env: &[(&str, &str)],
    command: &str,
    extra: &[&str],
) -> anyhow::Result<(Finished, WorkloadResult)> {
    let mut target = Target::start(binary, target_args, env)?;
    let pid = target.pid.to_string();
    let mut args = vec![command, "--pid", &pid, "--duration", "600"];
    args.extend_from_slice(extra);
    let mut goscope = Goscope::start(&args)?;
    goscope.wait_attached()?;
    target.baseline()?;
    let truth = target.run_batch()?;
    let finished = goscope.interrupt()?;
    target.quit()?;
    ensure!(
        finished.status.success(),
        "{command} on {} failed: {}",
        binary.display(),
        finished.stderr
    );
    Ok((finished, truth))
}

/// `around_batch` with `goscope doctor --json <extra>`; the report parsed.
pub fn doctor_around_batch_with(
    binary: &Path,
    target_args: &[&str],
    env: &[(&str, &str)],
    extra: &[&str],
) -> anyhow::Result<(Value, WorkloadResult)> {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let (finished, truth) = around_batch(binary, target_args, env, "doctor", &args)?;
    let report = serde_json::from_str(&finished.stdout)
        .with_context(|| format!("doctor printed invalid JSON: {}", finished.stdout))?;
    Ok((report, truth))
}

pub fn doctor_around_batch(
    binary: &Path,
    work: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(Value, WorkloadResult)> {
    doctor_around_batch_with(binary, &["-work", work], env, &[])
}

/// A numeric field of a report by dotted path (`gc.cycles`).
pub fn number(report: &Value, path: &str) -> Option<f64> {
    path.split('.').fold(report, |v, key| &v[key]).as_f64()
}
