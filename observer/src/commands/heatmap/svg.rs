//! The heatmap as SVG: one row per size class (large objects on top), one
//! column per interval, colour by bytes/s on a log scale, labelled axes, a
//! legend, and a tooltip per cell (with the exact bytes in `data-bytes`).
//! The HTML page inlines the SVG and needs nothing from the network.

use std::fmt::Write as _;

use super::Heatmap;
use crate::format::bytes;

const CELL_H: f64 = 14.0;
const LEFT: f64 = 90.0;
const TOP: f64 = 50.0;
const PLOT_W: f64 = 760.0;
const LEGEND_H: f64 = 60.0;

/// A perceptual dark-to-bright palette (viridis stops).
const PALETTE: [(f64, f64, f64); 5] = [
    (68.0, 1.0, 84.0),
    (59.0, 82.0, 139.0),
    (33.0, 145.0, 140.0),
    (94.0, 201.0, 98.0),
    (253.0, 231.0, 37.0),
];

fn colour(t: f64) -> String {
    let t = t.clamp(0.0, 1.0) * (PALETTE.len() - 1) as f64;
    let i = (t.floor() as usize).min(PALETTE.len() - 2);
    let f = t - i as f64;
    let (a, b) = (PALETTE[i], PALETTE[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn svg(map: &Heatmap) -> String {
    let rows = map.rows.len().max(1);
    let columns = map.column_ends_s.len().max(1);
    let cell_w = PLOT_W / columns as f64;
    let plot_h = CELL_H * rows as f64;
    let width = LEFT + PLOT_W + 20.0;
    let height = TOP + plot_h + 40.0 + LEGEND_H;
    let rates: Vec<f64> = (0..map.rows.len())
        .flat_map(|r| (0..map.column_ends_s.len()).map(move |c| (r, c)))
        .map(|(r, c)| map.rate(r, c))
        .filter(|v| *v > 0.0)
        .collect();
    let max = rates.iter().copied().fold(1.0, f64::max);
    let min = rates.iter().copied().fold(max, f64::min).max(max / 1e6);
    let scale = |v: f64| {
        if v <= 0.0 || max <= min {
            if v > 0.0 { 1.0 } else { 0.0 }
        } else {
            (v.ln() - min.ln()) / (max.ln() - min.ln())
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(&map.title)
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="36" fill="dimgray">colour: bytes allocated per second (log scale); rows: size class; columns: time</text>"#
    );
    // Rows: large objects on top, the smallest size class at the bottom.
    for (r, label) in map.rows.iter().enumerate() {
        let y = TOP + plot_h - CELL_H * (r + 1) as f64;
        let _ = writeln!(
            out,
            r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + CELL_H * 0.75,
            escape(label)
        );
        for c in 0..map.column_ends_s.len() {
            let rate = map.rate(r, c);
            let fill = if rate > 0.0 {
                colour(scale(rate))
            } else {
                "#f2f2f2".into()
            };
            let _ = writeln!(
                out,
                r#"<rect class="cell" x="{:.2}" y="{y:.1}" width="{:.2}" height="{CELL_H}" fill="{fill}" data-row="{}" data-t="{:.3}" data-bytes="{}"><title>{} at {:.1} s: {}/s</title></rect>"#,
                LEFT + cell_w * c as f64,
                cell_w + 0.3,
                escape(label),
                map.column_ends_s[c],
                map.cells[r][c],
                escape(label),
                map.column_ends_s[c],
                bytes(rate)
            );
        }
    }
    // Time axis.
    let axis_y = TOP + plot_h;
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{axis_y}" x2="{:.0}" y2="{axis_y}" stroke="black"/>"#,
        LEFT + PLOT_W
    );
    let ticks = columns.min(10);
    for i in 0..=ticks {
        let c = (columns * i / ticks.max(1)).min(columns);
        let x = LEFT + cell_w * c as f64;
        let t = if c == 0 {
            0.0
        } else {
            map.column_ends_s[c - 1]
        };
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{axis_y}" x2="{x:.1}" y2="{:.0}" stroke="black"/><text x="{x:.1}" y="{:.0}" text-anchor="middle">{t:.0} s</text>"#,
            axis_y + 4.0,
            axis_y + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.0}" y="{:.0}" text-anchor="middle">time since start</text>"#,
        LEFT + PLOT_W / 2.0,
        axis_y + 30.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(14,{:.0}) rotate(-90)" text-anchor="middle">size class</text>"#,
        TOP + plot_h / 2.0
    );
    // Legend: the colour bar from min to max rate.
    let legend_y = axis_y + 42.0;
    let steps = 40;
    for i in 0..steps {
        let t = i as f64 / (steps - 1) as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{:.1}" y="{legend_y:.0}" width="{:.1}" height="12" fill="{}"/>"#,
            LEFT + 300.0 * t,
            300.0 / steps as f64 + 0.5,
            colour(t)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.0}">{}/s</text><text x="{:.0}" y="{:.0}" text-anchor="end">{}/s</text><text x="{:.0}" y="{:.0}">bytes allocated per second</text>"#,
        legend_y + 26.0,
        bytes(min),
        LEFT + 300.0,
        legend_y + 26.0,
        bytes(max),
        LEFT + 310.0,
        legend_y + 10.0
    );
    out.push_str("</svg>\n");
    out
}

/// A self-contained page: the SVG inline, a summary table, no external
/// resources.
pub fn html(map: &Heatmap) -> String {
    let mut totals: Vec<(String, u64)> = map
        .rows
        .iter()
        .zip(&map.cells)
        .map(|(label, row)| (label.clone(), row.iter().sum()))
        .collect();
    totals.sort_by_key(|row| std::cmp::Reverse(row.1));
    let duration = map.column_ends_s.last().copied().unwrap_or(0.0).max(1e-9);
    let mut rows = String::new();
    for (label, total) in totals.iter().take(15) {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}/s</td><td>{}</td></tr>",
            escape(label),
            bytes(*total as f64 / duration),
            bytes(*total as f64)
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:20px;color:#222}} table{{border-collapse:collapse}} td,th{{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}} td:first-child,th:first-child{{text-align:left}} rect.cell:hover{{stroke:#000;stroke-width:1}}</style>
</head><body>
<h2>{title}</h2>
<p>Hover a cell for its size class, time and rate. Figures are the Go runtime's own per-size-class allocation counters, read from the process's memory by goscope.</p>
{svg}
<h3>Size classes by bytes over {duration:.1} s</h3>
<table><tr><th>size class</th><th>rate</th><th>total</th></tr>
{rows}</table>
</body></html>
"#,
        title = escape(&map.title),
        svg = svg(map),
    )
}
