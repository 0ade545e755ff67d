//! Drawing `top`'s panes from the doctor reports in its state.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Gauge, Paragraph, Row, Sparkline, Table, Tabs, Wrap},
};

use super::{Pane, State, compact};
use crate::{
    alloc_sites::{self, SitesSource},
    format::{bytes, count, duration_ns, percent},
    report::{DoctorReport, table},
    runtime::histogram::Percentiles,
};

pub fn draw(frame: &mut Frame, state: &State) {
    let small = compact::wanted(frame.area());
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(if small { 2 } else { 3 }),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let selected = Pane::ALL.iter().position(|p| *p == state.pane).unwrap_or(0);
    let tabs = Tabs::new(Pane::ALL.iter().map(|p| p.title()))
        .select(selected)
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    if small {
        let [title, tabs_area] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(header);
        frame.render_widget(
            Paragraph::new(format!("goscope top · {}", state.short_header))
                .style(Style::default().add_modifier(Modifier::BOLD)),
            title,
        );
        frame.render_widget(tabs, tabs_area);
    } else {
        frame.render_widget(
            tabs.block(Block::bordered().title(format!(" goscope top · {} ", state.header))),
            header,
        );
    }
    let footer_text = if small {
        format!(
            " q quit · 1-4 Tab · up {:.0} s · log {}",
            state.started.elapsed().as_secs_f64(),
            state.log
        )
    } else {
        format!(
            " q quit · 1-4 or Tab: panes · up {:.0} s · log {}",
            state.started.elapsed().as_secs_f64(),
            state.log
        )
    };
    frame.render_widget(
        Paragraph::new(footer_text).style(Style::default().fg(Color::DarkGray)),
        footer,
    );
    let (Some(last), Some(total)) = (&state.last, &state.since_attach) else {
        frame.render_widget(
            Paragraph::new("waiting for the first second of figures…").block(Block::bordered()),
            body,
        );
        return;
    };
    match state.pane {
        Pane::Overview if small => compact::overview(frame, body, last, total),
        Pane::Overview => overview(frame, body, state, last, total),
        Pane::SizeClasses => size_classes(frame, body, last),
        Pane::Sites => sites(frame, body, total),
        Pane::Figures => figures(frame, body, last, total),
    }
}

/// Every figure of the figure table: the last interval and since attach.
fn figures(frame: &mut Frame, area: Rect, last: &DoctorReport, total: &DoctorReport) {
    // The runtime/metrics twins need a wide terminal; the values come first.
    let twins = area.width >= 120;
    let rows: Vec<Row> = table::FIGURES
        .iter()
        .map(|f| {
            let cell = |r: &DoctorReport| {
                r.figures
                    .get(f.key)
                    .map_or("-".to_string(), |v| f.render_value(v))
            };
            let mut cells = vec![f.label.to_string(), cell(last), cell(total)];
            if twins {
                cells.push(
                    f.runtime_metric
                        .map_or(String::new(), |(m, _)| m.to_string()),
                );
            }
            Row::new(cells)
        })
        .collect();
    let (widths, header) = if twins {
        (
            vec![
                Constraint::Length(34),
                Constraint::Length(28),
                Constraint::Length(28),
                Constraint::Min(20),
            ],
            vec!["figure", "last interval", "since attach", "runtime/metrics"],
        )
    } else {
        (
            vec![
                Constraint::Percentage(40),
                Constraint::Percentage(30),
                Constraint::Percentage(30),
            ],
            vec!["figure", "last interval", "since attach"],
        )
    };
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
            .block(Block::bordered().title(" figures (counters: window total and rate) ")),
        area,
    );
}

fn pct(p: Option<Percentiles>) -> String {
    p.map_or("-".into(), |p| {
        format!("p50 {}  p99 {}", duration_ns(p.p50), duration_ns(p.p99))
    })
}

fn spark<'a>(
    title: String,
    data: &'a std::collections::VecDeque<u64>,
    width: u16,
) -> Sparkline<'a> {
    let skip = data.len().saturating_sub(width.saturating_sub(2) as usize);
    let values: Vec<u64> = data.iter().skip(skip).copied().collect();
    Sparkline::default()
        .block(Block::bordered().title(title))
        .data(values)
        .style(Style::default().fg(Color::Cyan))
}

fn overview(frame: &mut Frame, area: Rect, state: &State, r: &DoctorReport, total: &DoctorReport) {
    let [alloc, gc, sched, bottom] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Min(4),
    ])
    .areas(area);

    let [text, bytes_area, objects_area] = Layout::horizontal([
        Constraint::Percentage(34),
        Constraint::Percentage(33),
        Constraint::Percentage(33),
    ])
    .areas(alloc);
    let a = &r.alloc;
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(format!("{}/s allocated", bytes(a.bytes_per_s))),
            Line::from(format!("{} objects/s", count(a.objects_per_s))),
            Line::from(format!(
                "{} tiny objects/s",
                count(a.tiny_objects as f64 / r.window_s.max(1e-9))
            )),
        ])
        .block(Block::bordered().title(" Allocation ")),
        text,
    );
    frame.render_widget(
        spark(
            format!(" MB/s {} ", bytes(a.bytes_per_s)),
            &state.alloc_bytes,
            bytes_area.width,
        ),
        bytes_area,
    );
    frame.render_widget(
        spark(
            format!(" objects/s {} ", count(a.objects_per_s)),
            &state.alloc_objects,
            objects_area.width,
        ),
        objects_area,
    );

    let g = &r.gc;
    let [gc_text, heap] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(gc);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(format!(
                "{:.1} cycles/s   GOGC {}   GOMEMLIMIT {}",
                g.cycles_per_s,
                crate::format::gogc(g.gogc),
                crate::format::gomemlimit(g.memory_limit_bytes)
            )),
            Line::from(format!(
                "GC CPU {}   mark assist {}",
                g.gc_cpu_share.map_or("-".into(), percent),
                g.assist_cpu_share.map_or("-".into(), percent)
            )),
            Line::from(format!("STW pauses {}", pct(g.pause_ns))),
        ])
        .block(Block::bordered().title(" GC ")),
        gc_text,
    );
    let goal = g.heap_goal_bytes.unwrap_or(0);
    let ratio = if goal > 0 {
        (g.heap_live_bytes as f64 / goal as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(" heap live vs goal "))
            .gauge_style(Style::default().fg(Color::Green))
            .ratio(ratio)
            .label(format!(
                "{} / {}",
                bytes(g.heap_live_bytes as f64),
                bytes(goal as f64)
            )),
        heap,
    );

    let s = &r.sched;
    let [sched_text, created] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(sched);
    let cfs = match r.cfs.quota_cpus {
        Some(q) => format!(
            "CPU quota {q:.2}: throttled {} of {} periods ({})",
            r.cfs.throttled_periods,
            r.cfs.periods,
            duration_ns(r.cfs.throttled_ns as f64)
        ),
        None => "no CPU quota".into(),
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(format!(
                "goroutines {} live, {} created/s",
                r.goroutines.live,
                count(r.goroutines.created_per_s)
            )),
            Line::from(format!("scheduling latency {}", pct(s.latency_ns))),
            Line::from(format!(
                "GOMAXPROCS {}   OS threads {}   {:.2} cores busy",
                s.gomaxprocs, s.threads, r.process.cpu_cores
            )),
            Line::from(cfs),
            Line::from(format!(
                "cgo {} calls/s   {}",
                count(r.cgo.calls_per_s),
                pct(total.cgo.latency_ns)
            )),
        ])
        .block(Block::bordered().title(" Scheduler ")),
        sched_text,
    );
    frame.render_widget(
        spark(
            format!(
                " goroutines created/s {} ",
                count(r.goroutines.created_per_s)
            ),
            &state.goroutines_created,
            created.width,
        ),
        created,
    );

    let [sites_area, verdicts_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(bottom);
    frame.render_widget(alloc_site_table(total, 8), sites_area);
    let verdicts: Vec<Line> = if r.verdicts.is_empty() {
        vec![Line::from("nothing stands out in the last second")]
    } else {
        r.verdicts
            .iter()
            .map(|v| Line::from(format!("{} {}", v.severity.label(), v.message)))
            .collect()
    };
    frame.render_widget(
        Paragraph::new(verdicts)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" Verdicts (last second) ")),
        verdicts_area,
    );
}

fn alloc_site_table(r: &DoctorReport, limit: usize) -> Table<'static> {
    let a = &r.alloc;
    if a.sites.is_empty() && !a.cpu_sites.is_empty() {
        return alloc_cpu_site_table(r, limit);
    }
    let rows: Vec<Row> = a
        .sites
        .iter()
        .take(limit)
        .map(|s| {
            Row::new(vec![
                format!("{}/s", bytes(s.bytes_per_s)),
                percent(s.bytes_share),
                format!(
                    "{} {}",
                    s.function,
                    s.position.rsplit('/').next().unwrap_or("")
                ),
            ])
        })
        .collect();
    let source = match (a.sites_source, &a.sites_skipped) {
        (_, Some(why)) => why.clone(),
        // Short: the pane may be half the terminal wide.
        (Some(SitesSource::MemoryProfile), None) => format!(
            "heap profile, 1 sample per {}",
            a.sites_sampling_rate_bytes
                .map_or("?".into(), alloc_sites::binary_bytes)
        ),
        (Some(SitesSource::SpanRefillProbes), None) => format!(
            "probes attached {} of the time",
            percent(a.sites_sampled_fraction.unwrap_or(0.0))
        ),
        (None, None) => "not collected".into(),
    };
    Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec!["bytes/s", "share", "allocation site"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(format!(" Top allocation sites since attach ({source}) ")))
}

/// No byte sites (the heap profile off, the probes over budget): the CPU
/// sampler's allocating call sites, zero-trap, as a share of allocation CPU.
fn alloc_cpu_site_table(r: &DoctorReport, limit: usize) -> Table<'static> {
    let rows: Vec<Row> = r
        .alloc
        .cpu_sites
        .iter()
        .take(limit)
        .map(|s| {
            Row::new(vec![
                s.samples.to_string(),
                percent(s.share),
                s.function.clone(),
            ])
        })
        .collect();
    Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec!["samples", "share", "allocating call site"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(
        " Allocation CPU by call site since attach (CPU sampler; no byte sites: see doctor) ",
    ))
}

/// The live heap by site at the end of the report's window (heap-profile
/// source only).
fn live_site_table(r: &DoctorReport, limit: usize) -> Table<'static> {
    let rows: Vec<Row> = r
        .alloc
        .live_sites
        .iter()
        .take(limit)
        .map(|s| {
            Row::new(vec![
                bytes(s.inuse_bytes as f64),
                percent(s.share),
                format!(
                    "{} {}",
                    s.function,
                    s.position.rsplit('/').next().unwrap_or("")
                ),
            ])
        })
        .collect();
    Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec!["in use", "share", "live heap by site"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(" Live heap by site (last published GC cycle) "))
}

fn size_classes(frame: &mut Frame, area: Rect, r: &DoctorReport) {
    let a = &r.alloc;
    let mut classes: Vec<_> = a.by_size.iter().filter(|c| c.bytes > 0).collect();
    classes.sort_by_key(|c| std::cmp::Reverse(c.bytes));
    let per_s = |v: u64| v as f64 / r.window_s.max(1e-9);
    let rows: Vec<Row> = classes
        .iter()
        .map(|c| {
            let share = if a.bytes > 0 {
                c.bytes as f64 / a.bytes as f64
            } else {
                0.0
            };
            Row::new(vec![
                c.size.map_or("large".into(), |s| format!("{s} B")),
                count(per_s(c.objects)),
                format!("{}/s", bytes(per_s(c.bytes))),
                percent(share),
                "█".repeat((share * 40.0).round() as usize),
            ])
        })
        .collect();
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(7),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(vec!["size class", "objects/s", "bytes/s", "share", ""])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(format!(
            " Allocation by size class, last second: {}/s ",
            bytes(a.bytes_per_s)
        ))),
        area,
    );
}

fn sites(frame: &mut Frame, area: Rect, r: &DoctorReport) {
    let [alloc, cgo, created] = Layout::vertical([
        Constraint::Percentage(50),
        Constraint::Percentage(25),
        Constraint::Percentage(25),
    ])
    .areas(area);
    if r.alloc.sites_source == Some(SitesSource::MemoryProfile) {
        let [allocated, live] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(alloc);
        frame.render_widget(alloc_site_table(r, 20), allocated);
        frame.render_widget(live_site_table(r, 20), live);
    } else {
        frame.render_widget(alloc_site_table(r, 20), alloc);
    }
    let cgo_rows: Vec<Row> = r
        .cgo
        .sites
        .iter()
        .map(|s| {
            Row::new(vec![
                s.function.clone(),
                s.calls_timed.to_string(),
                pct(s.latency_ns),
            ])
        })
        .collect();
    frame.render_widget(
        Table::new(
            cgo_rows,
            [
                Constraint::Min(30),
                Constraint::Length(10),
                Constraint::Length(30),
            ],
        )
        .header(
            Row::new(vec!["cgo call site", "timed", "latency"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(" cgo call sites since attach ")),
        cgo,
    );
    frame.render_widget(creation_table(&r.goroutines), created);
}

/// Goroutine creation sites since attach (rate, share) with the live
/// goroutines of each site now; sites with live goroutines only follow.
fn creation_table(go: &crate::report::figures::GoroutineFigures) -> Table<'static> {
    let site = |function: &str, position: &str| match position.rsplit('/').next() {
        Some(file) if !file.is_empty() => format!("{function} {file}"),
        _ => function.to_string(),
    };
    let live_of = |function: &str, position: &str| {
        go.live_by_creation_site
            .iter()
            .find(|l| l.function == function && l.position == position)
            .map_or(0, |l| l.live)
    };
    let mut rows: Vec<Row> = go
        .creation_sites
        .iter()
        .map(|s| {
            Row::new(vec![
                site(&s.function, &s.position),
                format!("{}/s", count(s.per_s)),
                format!("{:.1}%", s.share * 100.0),
                live_of(&s.function, &s.position).to_string(),
            ])
        })
        .collect();
    for l in &go.live_by_creation_site {
        let listed = go
            .creation_sites
            .iter()
            .any(|s| s.function == l.function && s.position == l.position);
        if !listed {
            rows.push(Row::new(vec![
                site(&l.function, &l.position),
                "-".into(),
                "-".into(),
                l.live.to_string(),
            ]));
        }
    }
    let title = match (
        &go.creation_sites_skipped,
        go.creation_sites_covered_fraction,
    ) {
        (Some(why), _) => format!(" goroutine creation sites: {why} "),
        (None, Some(covered)) => format!(
            " goroutine creation sites since attach ({:.1}% seen in the goroutine table) ",
            covered * 100.0
        ),
        (None, None) => " goroutine creation sites since attach ".to_string(),
    };
    Table::new(
        rows,
        [
            Constraint::Min(30),
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new(vec!["goroutine creation site", "rate", "share", "live"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(title))
}
