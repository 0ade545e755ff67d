//! `goscope flamegraph`: renders a pprof profile read from a file (at
//! most `flamegraph::MAX_PROFILE_BYTES`) as a flame graph SVG, offline.

use std::io::Read as _;

use anyhow::Context as _;

use crate::{cli::FlamegraphArgs, flamegraph, target::display_path};

pub fn run(args: &FlamegraphArgs) -> anyhow::Result<i32> {
    let input = display_path(&args.profile);
    let file = std::fs::File::open(&args.profile).with_context(|| input.clone())?;
    // Read through a cap, not by the size the file claims.
    let mut raw = Vec::new();
    file.take(flamegraph::MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut raw)
        .with_context(|| input.clone())?;
    if raw.len() as u64 > flamegraph::MAX_PROFILE_BYTES {
        anyhow::bail!(
            "{input}: larger than {} bytes",
            flamegraph::MAX_PROFILE_BYTES
        );
    }
    let profile = flamegraph::decode(&raw).with_context(|| input.clone())?;
    let measure = flamegraph::Measure::of(&profile, args.sample_index.as_deref())
        .with_context(|| input.clone())?;
    let title = args.title.clone().unwrap_or_else(|| {
        let name = args
            .profile
            .file_name()
            .map_or_else(|| input.clone(), |n| n.to_string_lossy().into_owned());
        format!(
            "goscope flamegraph {}",
            crate::format::escape_control(&name)
        )
    });
    let lines = flamegraph::folded(&profile, &measure);
    let svg = flamegraph::render(&lines, &title, &measure).with_context(|| input.clone())?;
    crate::outfile::write(&args.output, &svg)?;
    eprintln!(
        "goscope: wrote the flame graph of {input} ({}, {} stacks) to {}",
        measure.label,
        lines.len(),
        display_path(&args.output)
    );
    Ok(0)
}
