//! One observed batch: a workload started, `goscope doctor --json`
//! attached, one batch run, goscope stopped with Ctrl-C; returns goscope's
//! report and the target's own runtime/metrics deltas for the same batch.

use std::path::Path;

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::{Goscope, Target, WorkloadResult};

pub fn doctor_around_batch(
    binary: &Path,
    work: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(Value, WorkloadResult)> {
    let mut target = Target::start(binary, &["-work", work], env)?;
    let pid = target.pid.to_string();
    let mut goscope = Goscope::start(&["doctor", "--pid", &pid, "--duration", "600", "--json"])?;
    goscope.wait_attached()?;
    let truth = target.run_batch()?;
    let finished = goscope.interrupt()?;
    ensure!(
        finished.status.success(),
        "doctor on {} failed: {}",
        binary.display(),
        finished.stderr
    );
    target.quit()?;
    let report = serde_json::from_str(&finished.stdout)
        .with_context(|| format!("doctor printed invalid JSON: {}", finished.stdout))?;
    Ok((report, truth))
}

/// A numeric field of a report by dotted path (`gc.cycles`).
pub fn number(report: &Value, path: &str) -> Option<f64> {
    path.split('.').fold(report, |v, key| &v[key]).as_f64()
}
