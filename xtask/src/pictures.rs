//! `cargo xtask pictures`: the README's pictures from real runs. Starts the
//! demo workload, runs `goscope top` in a tmux pane and renders the pane
//! (colours included) to PNG, and renders a `goscope heatmap` SVG to PNG,
//! both with resvg, so the pictures stay true to what goscope prints.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use testkit::{BuildOptions, Target, TmuxSession};

#[derive(clap::Args)]
pub struct PicturesArgs {
    /// Where top.png, top.txt and heatmap.png go.
    #[arg(long, default_value = "docs/img")]
    out: PathBuf,
    /// Go version of the demo workload.
    #[arg(long, default_value = "1.27")]
    go: String,
    /// The terminal top is drawn in, columns x rows.
    #[arg(long, default_value_t = 120)]
    columns: u16,
    #[arg(long, default_value_t = 40)]
    rows: u16,
    /// Seconds of top's history before the capture (its sparklines).
    #[arg(long, default_value_t = 20)]
    top_seconds: u64,
    /// The heatmap's window.
    #[arg(long, default_value_t = 12)]
    heatmap_seconds: u64,
}

pub fn run(args: &PicturesArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let binary = testkit::build_workload(
        &args.go,
        "loadgen",
        &BuildOptions {
            cgo: true,
            ..Default::default()
        },
    )?;
    let target = Target::start(&binary, &["-work", "mixed", "-background"], &[])?;
    let screen = capture_top(&target, args)?;
    write_file(&args.out.join("top.txt"), strip_escapes(&screen).as_bytes())?;
    let svg = terminal_svg(&screen, args.columns, args.rows);
    rasterise(&svg, &args.out.join("top.png"))?;

    let scratch = tempfile::Builder::new()
        .prefix("goscope-pictures-")
        .tempdir()
        .context("a private scratch directory")?;
    let heatmap_svg = scratch.path().join("heatmap.svg");
    let status = Command::new(testkit::goscope_binary())
        .args(["heatmap", "--pid", &target.pid.to_string(), "--duration"])
        .arg(args.heatmap_seconds.to_string())
        .arg("-o")
        .arg(&heatmap_svg)
        .status()
        .context("running goscope heatmap")?;
    if !status.success() {
        bail!("goscope heatmap failed: {status}");
    }
    let svg = std::fs::read_to_string(&heatmap_svg)?;
    drop(scratch);
    rasterise(&svg, &args.out.join("heatmap.png"))?;
    drop(target);
    for name in ["top.png", "top.txt", "heatmap.png"] {
        println!("{}", args.out.join(name).display());
    }
    Ok(())
}

/// top's pane, with its escape sequences, once it has drawn figures and
/// `top_seconds` of history (its own "up N s" says so).
fn capture_top(target: &Target, args: &PicturesArgs) -> anyhow::Result<String> {
    let name = format!("goscope-pictures-{}", std::process::id());
    let log = std::env::temp_dir().join(format!("{name}.log"));
    let command = format!(
        "{} top --pid {} --log {}; echo GOSCOPE_EXIT=$?; sleep 60",
        testkit::goscope_binary().display(),
        target.pid,
        log.display()
    );
    let session = TmuxSession::start(&name, args.columns, args.rows, &command)?;
    // top's footer says "up N s".
    let up = |screen: &str| {
        screen
            .split("up ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    session.wait_for(
        "goscope top's figures",
        Duration::from_secs(args.top_seconds + 30),
        |s| s.contains("/s allocated") && up(s).is_some_and(|n| n >= args.top_seconds),
    )?;
    let screen = session.capture_with_escapes()?;
    // Quit and wait for top to detach and exit before the session goes:
    // killing the pane would SIGHUP it mid-exit.
    session.send_keys("q")?;
    session.wait_for("goscope top's exit", Duration::from_secs(30), |s| {
        s.contains("GOSCOPE_EXIT=")
    })?;
    drop(session);
    let _ = std::fs::remove_file(&log);
    Ok(screen)
}

/// One terminal cell's style.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Style {
    fg: Option<(u8, u8, u8)>,
    bg: Option<(u8, u8, u8)>,
    bold: bool,
    reverse: bool,
}

const FOREGROUND: (u8, u8, u8) = (0xdc, 0xdc, 0xdc);
const BACKGROUND: (u8, u8, u8) = (0x1c, 0x1c, 0x24);

/// The xterm 256-colour palette.
fn palette(n: u8) -> (u8, u8, u8) {
    const BASE: [(u8, u8, u8); 16] = [
        (0x00, 0x00, 0x00),
        (0xcd, 0x31, 0x31),
        (0x0d, 0xbc, 0x79),
        (0xe5, 0xe5, 0x10),
        (0x24, 0x72, 0xc8),
        (0xbc, 0x3f, 0xbc),
        (0x11, 0xa8, 0xcd),
        (0xe5, 0xe5, 0xe5),
        (0x66, 0x66, 0x66),
        (0xf1, 0x4c, 0x4c),
        (0x23, 0xd1, 0x8b),
        (0xf5, 0xf5, 0x43),
        (0x3b, 0x8e, 0xea),
        (0xd6, 0x70, 0xd6),
        (0x29, 0xb8, 0xdb),
        (0xff, 0xff, 0xff),
    ];
    match n {
        0..=15 => BASE[n as usize],
        16..=231 => {
            let n = n - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            (level(n / 36), level((n / 6) % 6), level(n % 6))
        }
        _ => {
            let v = 8 + (n - 232) * 10;
            (v, v, v)
        }
    }
}

/// Applies one SGR sequence's parameters to `style`.
fn apply_sgr(style: &mut Style, params: &str) {
    let values: Vec<u16> = if params.is_empty() {
        vec![0]
    } else {
        params.split(';').map(|p| p.parse().unwrap_or(0)).collect()
    };
    let mut i = 0;
    while i < values.len() {
        let v = values[i];
        let extended = |i: &mut usize| -> Option<(u8, u8, u8)> {
            match values.get(*i + 1) {
                Some(5) => {
                    *i += 2;
                    values.get(*i).map(|&n| palette(n as u8))
                }
                Some(2) => {
                    *i += 4;
                    Some((
                        *values.get(*i - 2)? as u8,
                        *values.get(*i - 1)? as u8,
                        *values.get(*i)? as u8,
                    ))
                }
                _ => None,
            }
        };
        match v {
            0 => *style = Style::default(),
            1 => style.bold = true,
            22 => style.bold = false,
            7 => style.reverse = true,
            27 => style.reverse = false,
            30..=37 => style.fg = Some(palette((v - 30) as u8)),
            90..=97 => style.fg = Some(palette((v - 90 + 8) as u8)),
            39 => style.fg = None,
            40..=47 => style.bg = Some(palette((v - 40) as u8)),
            100..=107 => style.bg = Some(palette((v - 100 + 8) as u8)),
            49 => style.bg = None,
            38 => style.fg = extended(&mut i),
            48 => style.bg = extended(&mut i),
            _ => {}
        }
        i += 1;
    }
}

/// The pane's cells: each row's characters with their styles.
fn cells(screen: &str) -> Vec<Vec<(char, Style)>> {
    let mut rows = Vec::new();
    let mut style = Style::default();
    for line in screen.lines() {
        let mut row = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    let mut params = String::new();
                    for p in chars.by_ref() {
                        if p.is_ascii_alphabetic() {
                            if p == 'm' {
                                apply_sgr(&mut style, &params);
                            }
                            break;
                        }
                        params.push(p);
                    }
                }
                continue;
            }
            row.push((c, style));
        }
        rows.push(row);
    }
    rows
}

fn strip_escapes(screen: &str) -> String {
    cells(screen)
        .iter()
        .map(|row| row.iter().map(|(c, _)| *c).collect::<String>() + "\n")
        .collect()
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape_xml(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

const FONT_SIZE: f64 = 14.0;
/// DejaVu Sans Mono's advance is 0.602 em.
const CELL_WIDTH: f64 = FONT_SIZE * 0.602;
const CELL_HEIGHT: f64 = 17.0;

/// The pane as an SVG: a background, a rectangle per coloured cell, a
/// text run per row and style, in DejaVu Sans Mono.
fn terminal_svg(screen: &str, columns: u16, rows: u16) -> String {
    let (width, height) = (
        f64::from(columns) * CELL_WIDTH + 16.0,
        f64::from(rows) * CELL_HEIGHT + 16.0,
    );
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}"><rect width="100%" height="100%" fill="{}"/><g font-family="DejaVu Sans Mono" font-size="{FONT_SIZE}">"#,
        hex(BACKGROUND)
    );
    for (y, row) in cells(screen).iter().enumerate().take(rows as usize) {
        let top = 8.0 + y as f64 * CELL_HEIGHT;
        let baseline = top + CELL_HEIGHT * 0.78;
        let mut x = 0;
        while x < row.len() {
            let style = row[x].1;
            let start = x;
            let mut text = String::new();
            while x < row.len() && row[x].1 == style {
                escape_xml(row[x].0, &mut text);
                x += 1;
            }
            let (fg, bg) = match style.reverse {
                false => (style.fg.unwrap_or(FOREGROUND), style.bg),
                true => (
                    style.bg.unwrap_or(BACKGROUND),
                    Some(style.fg.unwrap_or(FOREGROUND)),
                ),
            };
            let left = 8.0 + start as f64 * CELL_WIDTH;
            if let Some(bg) = bg {
                let _ = write!(
                    svg,
                    r#"<rect x="{left:.2}" y="{top:.2}" width="{:.2}" height="{CELL_HEIGHT}" fill="{}"/>"#,
                    (x - start) as f64 * CELL_WIDTH,
                    hex(bg)
                );
            }
            if text.trim().is_empty() {
                continue;
            }
            let _ = write!(
                svg,
                r#"<text x="{left:.2}" y="{baseline:.2}" fill="{}"{} xml:space="preserve" textLength="{:.2}" lengthAdjust="spacingAndGlyphs">{text}</text>"#,
                hex(fg),
                if style.bold {
                    r#" font-weight="bold""#
                } else {
                    ""
                },
                (x - start) as f64 * CELL_WIDTH,
            );
        }
    }
    svg.push_str("</g></svg>");
    svg
}

/// Renders an SVG to a PNG with resvg and the system's fonts.
fn rasterise(svg: &str, png: &Path) -> anyhow::Result<()> {
    let mut options = resvg::usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    // The generic families the SVGs name, mapped to fonts Debian ships
    // (fonts-dejavu-core).
    fonts.set_sans_serif_family("DejaVu Sans");
    fonts.set_serif_family("DejaVu Serif");
    fonts.set_monospace_family("DejaVu Sans Mono");
    let tree = resvg::usvg::Tree::from_str(svg, &options).context("parsing the SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .with_context(|| format!("an image of {}x{}", size.width(), size.height()))?;
    // An SVG without a background of its own is drawn on white.
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let bytes = pixmap
        .encode_png()
        .with_context(|| format!("encoding {}", png.display()))?;
    write_file(png, &bytes)
}

/// Writes as goscope writes its own outputs: never through a link.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    goscope::outfile::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgr_sequences_set_and_reset_the_style() {
        let rows = cells("a\x1b[1;38;5;6mb\x1b[7mc\x1b[0md\x1b[38;2;1;2;3me");
        let styles: Vec<Style> = rows[0].iter().map(|(_, s)| *s).collect();
        assert_eq!(styles[0], Style::default());
        assert!(styles[1].bold && styles[1].fg == Some(palette(6)));
        assert!(styles[2].reverse && styles[2].bold);
        assert_eq!(styles[3], Style::default());
        assert_eq!(styles[4].fg, Some((1, 2, 3)));
        assert_eq!(strip_escapes("x\x1b[31my"), "xy\n");
    }

    #[test]
    fn text_is_escaped_for_svg() {
        let svg = terminal_svg("<a & b>", 10, 1);
        assert!(svg.contains("&lt;a &amp; b&gt;"), "{svg}");
    }
}
