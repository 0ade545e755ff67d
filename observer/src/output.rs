//! Writing reports to stdout; a closed pipe (`goscope ... | head`) is not an
//! error.

use std::io::{self, Write as _};

use serde::Serialize;

/// Marker error: stdout was closed by the reader; main exits 0.
#[derive(Debug, thiserror::Error)]
#[error("stdout closed")]
pub struct BrokenPipe;

pub fn print_text(text: &str) -> anyhow::Result<()> {
    write_stdout(text.as_bytes())
}

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_stdout(text.as_bytes())
}

/// One compact JSON object per line (for streaming commands).
pub fn print_json_line(value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string(value)?;
    text.push('\n');
    write_stdout(text.as_bytes())
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(BrokenPipe.into()),
        other => Ok(other?),
    }
}
