//! `top`'s overview for small terminals (the classic 80x24): no borders
//! or sparklines; the verdicts first, then one line per question (CPU,
//! allocation, heap and GC pacing, pauses and latency, the scheduler),
//! then as many allocation sites as the rows left hold.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Paragraph, Row, Table},
};

use crate::{
    format::{bytes, count, duration_ns, gogc, gomemlimit, percent},
    report::DoctorReport,
    runtime::histogram::Percentiles,
};

/// Below this width or height the full overview cuts figures off.
pub const MIN_FULL_WIDTH: u16 = 100;
pub const MIN_FULL_HEIGHT: u16 = 32;

/// Verdict lines shown at most, so the figures below always fit.
const MAX_VERDICT_LINES: usize = 5;

pub fn wanted(area: Rect) -> bool {
    area.width < MIN_FULL_WIDTH || area.height < MIN_FULL_HEIGHT
}

pub fn overview(frame: &mut Frame, area: Rect, last: &DoctorReport, total: &DoctorReport) {
    let verdicts = verdict_lines(last, area.width as usize);
    let figures = figure_lines(last);
    let [verdicts_area, figures_area, sites_area] = Layout::vertical([
        Constraint::Length(verdicts.len() as u16),
        Constraint::Length(figures.len() as u16),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(verdicts), verdicts_area);
    frame.render_widget(Paragraph::new(figures), figures_area);
    frame.render_widget(sites(total), sites_area);
}

/// The last second's verdicts, word-wrapped to the width, at most
/// `MAX_VERDICT_LINES` lines; what does not fit is counted, not cut.
fn verdict_lines(r: &DoctorReport, width: usize) -> Vec<Line<'static>> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    if r.verdicts.is_empty() {
        return vec![Line::styled("nothing stands out in the last second", bold)];
    }
    let mut lines = Vec::new();
    let mut shown = 0;
    for v in &r.verdicts {
        let wrapped = wrap(&format!("{} {}", v.severity.label(), v.message), width);
        // Keep a line for the "more" note when verdicts remain after this one.
        let room = MAX_VERDICT_LINES - usize::from(shown + 1 < r.verdicts.len());
        if lines.len() + wrapped.len() > room && shown > 0 {
            break;
        }
        lines.extend(wrapped.into_iter().map(|l| Line::styled(l, bold)));
        shown += 1;
    }
    if shown < r.verdicts.len() {
        lines.push(Line::from(format!(
            "+{} more verdicts: a wider terminal or goscope doctor shows them",
            r.verdicts.len() - shown
        )));
    }
    lines
}

/// Words of `text` in lines of at most `width` columns; a word longer than
/// the width is split.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn pct(p: Option<Percentiles>) -> String {
    p.map_or("-".into(), |p| {
        format!("p50 {} p99 {}", duration_ns(p.p50), duration_ns(p.p99))
    })
}

/// One line per question, each under 80 columns for any value.
fn figure_lines(r: &DoctorReport) -> Vec<Line<'static>> {
    let g = &r.gc;
    let a = &r.alloc;
    let s = &r.sched;
    let cpu = match r.cpu.as_ref().and_then(|c| c.runtime_share) {
        Some(runtime) => format!(
            "CPU {:.2} cores: Go runtime {} · app {} · GC {} · assist {}",
            r.process.cpu_cores,
            percent(runtime),
            percent(1.0 - runtime),
            g.gc_cpu_share.map_or("-".into(), percent),
            g.assist_cpu_share.map_or("-".into(), percent)
        ),
        None => format!(
            "CPU {:.2} cores: GC {} · mark assist {}",
            r.process.cpu_cores,
            g.gc_cpu_share.map_or("-".into(), percent),
            g.assist_cpu_share.map_or("-".into(), percent)
        ),
    };
    let heap = format!(
        "heap live {} of goal {}{} · GOGC {} · GOMEMLIMIT {}",
        bytes(g.heap_live_bytes as f64),
        g.heap_goal_bytes.map_or("-".into(), |b| bytes(b as f64)),
        if g.goal_set_by_memory_limit {
            " (limit)"
        } else {
            ""
        },
        gogc(g.gogc),
        gomemlimit(g.memory_limit_bytes)
    );
    let quota = match r.cfs.quota_cpus {
        Some(q) => format!(
            " · quota {q:.2}, throttled {}/{}",
            r.cfs.throttled_periods, r.cfs.periods
        ),
        None => String::new(),
    };
    vec![
        Line::from(cpu),
        Line::from(format!(
            "alloc {}/s · {} objects/s · GC {:.1} cycles/s",
            bytes(a.bytes_per_s),
            count(a.objects_per_s),
            g.cycles_per_s
        )),
        Line::from(heap),
        Line::from(format!(
            "STW {} · sched latency {}",
            pct(g.pause_ns),
            pct(s.latency_ns)
        )),
        Line::from(format!(
            "goroutines {} (+{}/s) · GOMAXPROCS {} · threads {}{quota}",
            r.goroutines.live,
            count(r.goroutines.created_per_s),
            s.gomaxprocs,
            s.threads
        )),
    ]
}

/// The allocation sites since attach, as many as fit; when no byte sites
/// were collected (the heap profile off and the probes over budget), the
/// CPU sampler's allocating call sites instead, labelled as such.
fn sites(r: &DoctorReport) -> Table<'static> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let a = &r.alloc;
    let site = |function: &str, position: &str| {
        format!("{function} {}", position.rsplit('/').next().unwrap_or(""))
    };
    let (header, rows): ([String; 3], Vec<Row>) = if a.sites.is_empty() && !a.cpu_sites.is_empty() {
        (
            [
                "samples".into(),
                "share".into(),
                "allocation CPU by call site (CPU sampler; no byte sites)".into(),
            ],
            a.cpu_sites
                .iter()
                .map(|s| {
                    Row::new(vec![
                        s.samples.to_string(),
                        percent(s.share),
                        s.function.clone(),
                    ])
                })
                .collect(),
        )
    } else {
        let title = match &a.sites_skipped {
            Some(why) => format!("allocation sites: {why}"),
            None if a.sites.is_empty() => "allocation sites: none yet".into(),
            None => "allocation sites since attach".into(),
        };
        (
            ["bytes/s".into(), "share".into(), title],
            a.sites
                .iter()
                .map(|s| {
                    Row::new(vec![
                        format!("{}/s", bytes(s.bytes_per_s)),
                        percent(s.bytes_share),
                        site(&s.function, &s.position),
                    ])
                })
                .collect(),
        )
    };
    Table::new(
        rows,
        [
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(header.to_vec()).style(bold))
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_keeps_every_word_and_the_width() {
        let text =
            "WARN GC takes 31.2% of the target's CPU: heap live 12.0 MB against a goal of 13.1 MB";
        for width in [10, 20, 33, 80] {
            let lines = wrap(text, width);
            assert!(
                lines.iter().all(|l| l.chars().count() <= width),
                "{lines:?}"
            );
            assert_eq!(lines.join(" "), text, "width {width}");
        }
    }

    #[test]
    fn a_word_longer_than_the_width_is_split_not_lost() {
        let lines = wrap("a main.(*veryLongReceiverName).method b", 8);
        assert!(lines.iter().all(|l| l.chars().count() <= 8), "{lines:?}");
        assert_eq!(
            lines.concat().replace(' ', ""),
            "amain.(*veryLongReceiverName).methodb"
        );
    }
}
