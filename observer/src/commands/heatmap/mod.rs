//! `goscope heatmap`: allocation bytes per size class (rows) over time
//! (columns), read from the runtime's own per-class counters every
//! interval (memory reads only, nothing attached), drawn as SVG or as a
//! self-contained HTML page.

pub mod svg;

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{cli::HeatmapArgs, session::Session, window};

/// Bytes allocated per size class in each interval.
pub struct Heatmap {
    pub title: String,
    /// Row labels, smallest size first; the last row is large objects.
    pub rows: Vec<String>,
    /// Seconds from the start at the end of each column.
    pub column_ends_s: Vec<f64>,
    /// cells[row][column]: bytes allocated in that interval.
    pub cells: Vec<Vec<u64>>,
}

impl Heatmap {
    fn interval_s(&self, column: usize) -> f64 {
        let start = if column == 0 {
            0.0
        } else {
            self.column_ends_s[column - 1]
        };
        (self.column_ends_s[column] - start).max(1e-9)
    }

    /// Bytes per second in a cell.
    pub fn rate(&self, row: usize, column: usize) -> f64 {
        self.cells[row][column] as f64 / self.interval_s(column)
    }
}

pub fn run(args: &HeatmapArgs) -> anyhow::Result<i32> {
    let html = match args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => false,
        Some("html") | Some("htm") => true,
        _ => bail!(
            "{}: the output must end in .svg or .html",
            args.output.display()
        ),
    };
    let Session {
        target,
        stop,
        runtime,
        ..
    } = Session::open("goscope heatmap", args.target.clone())?;
    let class_sizes = &runtime.class_sizes;
    let read = || runtime.read();
    let mut previous = read()?.alloc;
    let started = Instant::now();
    eprintln!(
        "goscope: attached to pid {} ({}); one column every {} ms for {} s, Ctrl-C to stop early",
        target.pid,
        crate::target::display_path(&target.exe),
        args.interval_ms,
        args.duration
    );
    let classes = previous.small_objects.len();
    let mut columns: Vec<(f64, Vec<u64>)> = Vec::new();
    let mut column = |at: Duration| -> anyhow::Result<()> {
        let now = read()?;
        let allocated = now.alloc.since(&previous, class_sizes);
        let mut bytes: Vec<u64> = (1..classes)
            .map(|c| allocated.class_bytes.get(c).copied().unwrap_or(0))
            .collect();
        bytes.push(allocated.large_bytes);
        columns.push((at.as_secs_f64(), bytes));
        previous = now.alloc;
        Ok(())
    };
    let mut window = window::observe(
        Duration::from_secs_f64(args.duration),
        &target,
        &stop,
        Some(Duration::from_millis(args.interval_ms)),
        &mut column,
    );
    if window.error.is_none() && !window.end.target_ended() {
        let at = started.elapsed().max(window.elapsed);
        if let Err(e) = column(at) {
            match target.liveness() {
                crate::target::Liveness::Alive => window.error = Some(e),
                gone => window.ended(gone),
            }
        }
    }
    if let Some(e) = window.error.take() {
        return Err(e.context("a read failed inside the window"));
    }
    if columns.is_empty() {
        window.announce_end(&target, "nothing was recorded");
        bail!(
            "pid {} ended before the first column; no heatmap written",
            target.pid
        );
    }
    let mut rows: Vec<String> = (1..classes)
        .map(|c| format!("{} B", class_sizes.get(c).copied().unwrap_or(0)))
        .collect();
    rows.push("large".into());
    let map = Heatmap {
        title: format!(
            "Allocation by size class: pid {} {} ({})",
            target.pid,
            crate::target::display_path(&target.exe),
            crate::format::bounded(
                &target.binary.build.go_version_string,
                crate::format::MAX_SHOWN
            )
        ),
        rows,
        column_ends_s: columns.iter().map(|(t, _)| *t).collect(),
        cells: (0..classes)
            .map(|row| columns.iter().map(|(_, c)| c[row]).collect())
            .collect(),
    };
    let map = map.without_empty_rows();
    let document = if html {
        svg::html(&map)
    } else {
        svg::svg(&map)
    };
    crate::outfile::write(&args.output, document.as_bytes())?;
    eprintln!(
        "goscope: wrote {} ({} size classes × {} columns)",
        args.output.display(),
        map.rows.len(),
        map.column_ends_s.len()
    );
    Ok(window.announce_end(&target, "the heatmap covers what was observed until then"))
}

impl Heatmap {
    /// Drops size classes nothing was allocated in.
    fn without_empty_rows(self) -> Self {
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&r| self.cells[r].iter().any(|&b| b > 0))
            .collect();
        Self {
            title: self.title,
            rows: keep.iter().map(|&r| self.rows[r].clone()).collect(),
            column_ends_s: self.column_ends_s,
            cells: keep.iter().map(|&r| self.cells[r].clone()).collect(),
        }
    }
}
