//! A goroutine dump as people and tools read it: goroutines grouped by
//! state and stack, biggest group first (goscope's view); the runtime's own
//! `debug=1` (groups by stack, with counts) and `debug=2` (one traceback
//! per goroutine, "created by" lines) texts; a JSON document with every
//! goroutine; and the difference between two dumps by group.

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    format::count,
    goroutine_dump::{
        GoroutineDump, JsonFrame, JsonGoroutine, creation_frame, frames_of, start_key,
    },
    runtime::{goroutines::GoStatus, labels::Label},
};

/// Goroutines with the same state, wait reason, stack and creation site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub count: u64,
    pub status: String,
    pub wait_reason: Option<String>,
    /// The longest wait the runtime recorded among them, seconds.
    pub longest_wait_s: Option<f64>,
    pub created_by: Option<JsonFrame>,
    /// Start function of running goroutines (which have no stack).
    pub start_function: Option<String>,
    pub frames: Vec<JsonFrame>,
    /// Threads of the running ones.
    #[serde(default)]
    pub threads: Vec<u64>,
    /// pprof labels the group's goroutines share.
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// A few goroutine ids of the group.
    pub goids: Vec<u64>,
}

impl Group {
    /// What identifies a group across two dumps.
    fn key(&self) -> GroupKey {
        (
            self.status.clone(),
            self.wait_reason.clone(),
            self.frames.clone(),
            self.created_by.as_ref().map(|f| f.function.clone()),
            self.start_function.clone(),
            self.labels.clone(),
        )
    }

    /// The first frame outside the runtime: the code to look at.
    pub fn blocking_frame(&self) -> Option<&JsonFrame> {
        self.frames
            .iter()
            .find(|f| !is_runtime_frame(&f.function))
            .or(self.frames.first())
    }
}

/// State, wait reason, frames, creating function, start function, labels.
type GroupKey = (
    String,
    Option<String>,
    Vec<JsonFrame>,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
);

/// How many goroutine ids a group keeps.
const GROUP_GOIDS: usize = 8;

/// A frame of package runtime (or internal/runtime) that tracebacks hide.
fn is_runtime_frame(function: &str) -> bool {
    function.starts_with("runtime.") || function.starts_with("internal/runtime/")
}

/// The JSON document.
#[derive(Serialize)]
pub struct DumpJson<'a> {
    pub pid: u32,
    pub executable: String,
    pub go_version: String,
    pub allglen: u64,
    pub total: usize,
    pub system_left_out: u64,
    pub partial: usize,
    pub retried: u64,
    pub truncated_stacks: usize,
    pub stacks_not_walked: u64,
    pub max_frames: usize,
    pub elapsed_ms: f64,
    pub by_state: Vec<(String, u64)>,
    pub groups: Vec<Group>,
    pub goroutines: Vec<JsonGoroutine<'a>>,
}

/// What a diff reads back from an earlier `--json` dump.
#[derive(Deserialize)]
pub struct EarlierDump {
    pub total: usize,
    pub groups: Vec<Group>,
}

/// The state a group shows: the wait reason for waiting goroutines.
fn state_label(status: &str, wait_reason: Option<&str>) -> String {
    match wait_reason {
        Some(reason) if !reason.is_empty() => reason.to_string(),
        _ => status.to_string(),
    }
}

/// Groups of a dump, biggest first (ties: by state, then first goid).
pub fn groups(dump: &GoroutineDump) -> Vec<Group> {
    type Key<'a> = (GoStatus, Option<&'a str>, &'a [u64], u64, u64, &'a [Label]);
    let mut by_key: HashMap<Key<'_>, Vec<usize>> = HashMap::new();
    for (i, g) in dump.goroutines.iter().enumerate() {
        let start = if g.pcs().is_empty() { g.startpc } else { 0 };
        by_key
            .entry((
                g.status,
                g.wait_reason.as_deref(),
                g.pcs(),
                g.gopc,
                start,
                &g.labels[..],
            ))
            .or_default()
            .push(i);
    }
    let mut groups: Vec<Group> = by_key
        .into_iter()
        .map(|((status, reason, pcs, gopc, start, labels), members)| {
            let gs = members.iter().map(|&i| &dump.goroutines[i]);
            Group {
                count: members.len() as u64,
                status: status.name().to_string(),
                wait_reason: reason.map(str::to_string),
                longest_wait_s: gs
                    .clone()
                    .filter_map(|g| g.waiting)
                    .max()
                    .map(|d| d.as_secs_f64()),
                created_by: creation_frame(dump, gopc),
                start_function: (start != 0)
                    .then(|| {
                        dump.location(start_key(start))
                            .lines
                            .last()
                            .map(|l| l.function.clone())
                    })
                    .flatten(),
                frames: frames_of(dump, pcs),
                labels: labels.to_vec(),
                threads: gs.clone().filter_map(|g| g.thread).collect(),
                goids: gs.take(GROUP_GOIDS).map(|g| g.goid).collect(),
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.status.cmp(&b.status))
            .then_with(|| a.goids.first().cmp(&b.goids.first()))
    });
    groups
}

/// Goroutines by state label, biggest first.
pub fn by_state(dump: &GoroutineDump) -> Vec<(String, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for g in &dump.goroutines {
        *counts
            .entry(state_label(g.status.name(), g.wait_reason.as_deref()))
            .or_default() += 1;
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// A wait as tracebacks print it ("12 minutes"), `None` under a minute.
fn minutes(wait: Option<f64>) -> Option<String> {
    let m = (wait? / 60.0).floor() as u64;
    (m > 0).then(|| format!("{m} minutes"))
}

fn wait_text(wait: Option<f64>) -> String {
    match wait {
        Some(s) if s >= 1.0 => format!(", waiting {}", crate::format::duration_ns(s * 1e9)),
        _ => String::new(),
    }
}

fn position(frame: &JsonFrame) -> String {
    let file = frame.file.rsplit('/').next().unwrap_or(&frame.file);
    format!("{file}:{}", frame.line)
}

/// Header lines shared by every text view.
pub fn summary(dump: &GoroutineDump, what: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{what}: {} goroutines ({} system left out), read in {:.1} ms without stopping the target",
        count(dump.goroutines.len() as f64),
        dump.system_left_out,
        dump.elapsed.as_secs_f64() * 1e3,
    );
    let states: Vec<String> = by_state(dump)
        .iter()
        .map(|(state, n)| format!("{state} {}", count(*n as f64)))
        .collect();
    let _ = writeln!(out, "  by state: {}", states.join(", "));
    let mut notes = Vec::new();
    if dump.partial() > 0 {
        notes.push(format!(
            "{} partial (changed under the walk, or a stack that did not reach runtime.goexit)",
            dump.partial()
        ));
    }
    if dump.retried > 0 {
        notes.push(format!(
            "{} walks retried after the goroutine moved",
            dump.retried
        ));
    }
    if dump.truncated() > 0 {
        notes.push(format!(
            "{} stacks cut at {} frames (--max-frames)",
            dump.truncated(),
            dump.limits.max_frames
        ));
    }
    if dump.stacks_not_walked > 0 {
        notes.push(format!(
            "{} goroutines listed without a stack (--max-stacks {})",
            dump.stacks_not_walked, dump.limits.max_stacks
        ));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "  {}", notes.join("; "));
    }
    out
}

/// goscope's view: groups with their state and the frame to look at (or
/// every frame with `stacks`).
pub fn grouped_text(dump: &GoroutineDump, header: &str, stacks: bool, max_groups: usize) -> String {
    let mut out = summary(dump, header);
    let all = groups(dump);
    for group in all.iter().take(max_groups) {
        out.push('\n');
        let state = state_label(&group.status, group.wait_reason.as_deref());
        let created = group.created_by.as_ref().map_or(String::new(), |f| {
            format!("  created by {} ({})", f.function, position(f))
        });
        let labels = if group.labels.is_empty() {
            String::new()
        } else {
            format!("  labels {}", labels_text(&group.labels))
        };
        let _ = writeln!(
            out,
            "{} goroutine{}  [{state}{}]{created}{labels}",
            count(group.count as f64),
            if group.count == 1 { "" } else { "s" },
            wait_text(group.longest_wait_s),
        );
        if group.frames.is_empty() {
            let start = group.start_function.as_deref().unwrap_or("[unknown]");
            let threads: Vec<String> = group.threads.iter().map(u64::to_string).collect();
            let on = if threads.is_empty() {
                String::new()
            } else {
                format!(" on thread {}", threads.join(", "))
            };
            let _ = writeln!(
                out,
                "    {start}  (running{on}: no saved stack while it runs)"
            );
            continue;
        }
        let shown: Vec<&JsonFrame> = if stacks {
            group.frames.iter().collect()
        } else {
            group.blocking_frame().into_iter().collect()
        };
        for f in shown {
            let _ = writeln!(out, "    {:<50} {}", f.function, position(f));
        }
    }
    if all.len() > max_groups {
        let _ = writeln!(
            out,
            "\n... {} more groups (--json lists every goroutine)",
            all.len() - max_groups
        );
    }
    out
}

/// runtime/pprof's goroutine profile text, debug=1: groups by stack (and
/// labels), biggest first, leading runtime frames and goexit hidden.
pub fn debug1_text(dump: &GoroutineDump) -> String {
    type Key<'a> = (&'a [u64], u64, &'a [Label]);
    let mut by_stack: HashMap<Key<'_>, u64> = HashMap::new();
    for g in &dump.goroutines {
        let start = if g.pcs().is_empty() { g.startpc } else { 0 };
        *by_stack.entry((g.pcs(), start, &g.labels[..])).or_default() += 1;
    }
    let mut groups: Vec<(Key<'_>, u64)> = by_stack.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = format!("goroutine profile: total {}\n", dump.goroutines.len());
    for ((pcs, start, labels), n) in groups {
        let hex: Vec<String> = pcs.iter().map(|pc| format!("{pc:#x}")).collect();
        let _ = writeln!(out, "{n} @ {}", hex.join(" "));
        if !labels.is_empty() {
            let _ = writeln!(out, "# labels: {}", labels_text(labels));
        }
        if pcs.is_empty() {
            let name = dump
                .location(start_key(start))
                .lines
                .last()
                .map_or("[unknown]".to_string(), |l| l.function.clone());
            let _ = writeln!(out, "#\t[running]\t{name}");
        }
        let mut show = false;
        for &pc in pcs {
            for line in dump.location(pc).lines {
                if line.function == "runtime.goexit" {
                    continue;
                }
                if !show && line.function.starts_with("runtime.") {
                    continue;
                }
                show = true;
                let _ = writeln!(
                    out,
                    "#\t{:#x}\t{}\t{}:{}",
                    pc - 1,
                    line.function,
                    line.file,
                    line.line
                );
            }
        }
        out.push('\n');
    }
    out
}

/// Labels as runtime/pprof prints them: {"k":"v", "k2":"v2"}.
pub fn labels_text(labels: &[Label]) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A traceback hides runtime frames other than exported ones.
fn traceback_shows(function: &str) -> bool {
    match function.strip_prefix("runtime.") {
        Some(rest) => rest.starts_with(|c: char| c.is_ascii_uppercase()),
        None => !function.starts_with("internal/runtime/"),
    }
}

/// debug=2: one traceback per goroutine, as a crash prints them.
pub fn debug2_text(dump: &GoroutineDump) -> String {
    let mut out = String::new();
    for g in &dump.goroutines {
        let mut state = state_label(g.status.name(), g.wait_reason.as_deref());
        if let Some(m) = minutes(g.waiting.map(|d: Duration| d.as_secs_f64())) {
            state.push_str(", ");
            state.push_str(&m);
        }
        let _ = writeln!(out, "goroutine {} [{state}]:", g.goid);
        let frames = frames_of(dump, g.pcs());
        if frames.is_empty() {
            let on = g
                .thread
                .map_or(String::new(), |t| format!(" on thread {t}"));
            let _ = writeln!(out, "\t(running{on}: no saved stack while it runs)");
        }
        let visible: Vec<&JsonFrame> = frames
            .iter()
            .filter(|f| traceback_shows(&f.function))
            .collect();
        let shown = if visible.is_empty() {
            frames.iter().collect()
        } else {
            visible
        };
        for f in shown {
            let _ = writeln!(out, "{}(...)\n\t{}:{}", f.function, f.file, f.line);
        }
        if let Some(created) = creation_frame(dump, g.gopc) {
            let parent = g
                .parent_goid
                .filter(|&p| p != 0)
                .map_or(String::new(), |p| format!(" in goroutine {p}"));
            let _ = writeln!(
                out,
                "created by {}{parent}\n\t{}:{}",
                created.function, created.file, created.line
            );
        }
        out.push('\n');
    }
    out
}

/// Groups that grew or shrank since an earlier dump, biggest change first.
pub fn diff_text(earlier: &EarlierDump, now: &[Group], now_total: usize) -> String {
    let mut before: HashMap<_, &Group> = earlier.groups.iter().map(|g| (g.key(), g)).collect();
    let mut rows: Vec<(i128, &Group)> = Vec::new();
    for g in now {
        let was = before.remove(&g.key()).map_or(0, |b| b.count);
        let delta = i128::from(g.count) - i128::from(was);
        if delta != 0 {
            rows.push((delta, g));
        }
    }
    for g in before.into_values() {
        rows.push((-i128::from(g.count), g));
    }
    rows.sort_by(|a, b| b.0.abs().cmp(&a.0.abs()).then_with(|| b.0.cmp(&a.0)));
    let mut out = format!(
        "since the earlier dump: {} -> {} goroutines ({:+})\n",
        earlier.total,
        now_total,
        now_total as i128 - earlier.total as i128
    );
    if rows.is_empty() {
        out.push_str("  no group grew or shrank\n");
    }
    for (delta, g) in rows {
        let state = state_label(&g.status, g.wait_reason.as_deref());
        let frame = g.blocking_frame().map_or_else(
            || g.start_function.clone().unwrap_or_default(),
            |f| format!("{} ({})", f.function, position(f)),
        );
        let created = g
            .created_by
            .as_ref()
            .map_or(String::new(), |f| format!("  created by {}", f.function));
        // The earlier dump is a file anyone may have written.
        let line = crate::format::escape_control(&format!("[{state}]  {frame}{created}"));
        let _ = writeln!(out, "  {delta:+8}  {line}");
    }
    out
}

/// `--watch`: leak suspects first, then the groups that changed most.
pub fn watch_text(
    trends: &[crate::leak_watch::GroupTrend],
    samples: usize,
    window: Duration,
) -> String {
    let mut out = format!(
        "goscope goroutines --watch: {samples} dumps over {:.1} s\n",
        window.as_secs_f64()
    );
    let suspects: Vec<_> = trends.iter().filter(|t| t.suspect).collect();
    if suspects.is_empty() {
        out.push_str("no leak suspect: no group kept growing while its goroutines stayed parked\n");
    }
    for t in &suspects {
        let wait = t.oldest_wait_s.map_or(String::new(), |w| {
            format!(", oldest wait {}", crate::format::duration_ns(w * 1e9))
        });
        let _ = writeln!(
            out,
            "LEAK SUSPECT  {:+.0} goroutines/min ({} -> {}), {:.0}% stayed parked, oldest seen {:.0} s{wait}\n    [{}] at {}\n    created by {}",
            t.growth_per_min,
            t.first_count,
            t.last_count,
            t.retention * 100.0,
            t.oldest_seen_s,
            t.key.wait_reason,
            t.key.blocking_frame,
            t.key.created_by
        );
    }
    let others: Vec<_> = trends.iter().filter(|t| !t.suspect).take(10).collect();
    if !others.is_empty() {
        out.push_str("\nother groups (growth/min, first -> last, stayed):\n");
    }
    for t in others {
        let _ = writeln!(
            out,
            "  {:+8.0}  {:>6} -> {:<6} {:>4.0}%  [{}] {}",
            t.growth_per_min,
            t.first_count,
            t.last_count,
            t.retention * 100.0,
            t.key.wait_reason,
            t.key.blocking_frame
        );
    }
    out
}

/// `--profile`: goroutine time by state, then the rows that took most.
pub fn wall_text(
    wall: &crate::wall_profile::WallProfile,
    rows: &[crate::wall_profile::WallRow],
    max_rows: usize,
) -> String {
    let mut out = format!(
        "goscope goroutines --profile: {} samples over {:.1} s of goroutine time by state\n ",
        wall.samples,
        wall.elapsed_ns as f64 / 1e9
    );
    if wall.unobserved_ns > wall.elapsed_ns / 20 {
        let _ = write!(
            out,
            " ({:.1} s unobserved: goscope could not sample on time; that time is left out)\n ",
            wall.unobserved_ns as f64 / 1e9
        );
    }
    let total: f64 = wall.by_state().iter().map(|(_, s)| s).sum();
    for (class, seconds) in wall.by_state() {
        let share = if total > 0.0 { seconds / total } else { 0.0 };
        let _ = write!(
            out,
            " {} {:.1} goroutine-s ({:.1}%)",
            class.name(),
            seconds,
            share * 100.0
        );
    }
    out.push_str("\n\n   share  goroutine-s  state                     where\n");
    for row in rows.iter().take(max_rows) {
        let state = match &row.wait_reason {
            Some(reason) if !reason.is_empty() => reason.clone(),
            _ => row.state.name().to_string(),
        };
        let _ = writeln!(
            out,
            "  {:5.1}%  {:11.2}  {:<24}  {}",
            row.share * 100.0,
            row.seconds,
            state,
            crate::wall_profile::row_frame(row)
        );
    }
    out
}
