//! The Prometheus text exposition format (version 0.0.4): metric families
//! with HELP and TYPE lines, escaped label values, histograms with
//! cumulative `le` buckets, `_sum` and `_count`.

use std::{collections::BTreeMap, fmt::Write as _};

/// Label pairs of one series, in order.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

struct Family {
    help: &'static str,
    kind: Kind,
    lines: Vec<String>,
}

/// Collects samples by family and renders them.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, Family>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

fn label_text(labels: &Labels, extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{}\"", escape(v)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Exposition {
    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        self.families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            lines: Vec::new(),
        })
    }

    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: &Labels, v: f64) {
        let line = format!("{name}{} {}", label_text(labels, None), number(v));
        self.family(name, help, Kind::Counter).lines.push(line);
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &Labels, v: f64) {
        let line = format!("{name}{} {}", label_text(labels, None), number(v));
        self.family(name, help, Kind::Gauge).lines.push(line);
    }

    /// A histogram from per-bucket (not cumulative) counts with upper
    /// bounds `le` (the last may be +Inf; one is added if missing).
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &Labels,
        buckets: &[(f64, u64)],
        sum: f64,
    ) {
        let family = self.family(name, help, Kind::Histogram);
        let mut cumulative = 0u64;
        let mut saw_inf = false;
        for (le, count) in buckets {
            cumulative += count;
            saw_inf |= le.is_infinite();
            family.lines.push(format!(
                "{name}_bucket{} {cumulative}",
                label_text(labels, Some(("le", &number(*le))))
            ));
        }
        if !saw_inf {
            family.lines.push(format!(
                "{name}_bucket{} {cumulative}",
                label_text(labels, Some(("le", "+Inf")))
            ));
        }
        family.lines.push(format!(
            "{name}_sum{} {}",
            label_text(labels, None),
            number(sum)
        ));
        family.lines.push(format!(
            "{name}_count{} {cumulative}",
            label_text(labels, None)
        ));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, family) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.name());
            for line in &family.lines {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let mut e = Exposition::default();
        let labels: Labels = vec![("exe", "a\"b".into())];
        e.histogram("h", "help", &labels, &[(8.0, 2), (16.0, 3)], 40.0);
        let text = e.render();
        assert!(text.contains("# TYPE h histogram"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"8\"} 2"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"16\"} 5"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"+Inf\"} 5"));
        assert!(text.contains("h_count{exe=\"a\\\"b\"} 5"));
    }
}
