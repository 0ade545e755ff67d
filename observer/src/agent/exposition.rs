//! The Prometheus text exposition format (version 0.0.4): metric families
//! with HELP and TYPE lines, escaped label values, histograms with
//! cumulative `le` buckets, `_sum` and `_count`.

use std::{collections::BTreeMap, fmt::Write as _};

/// The label pairs of a series, rendered (escaped) once: `k="v",k2="v2"`.
/// A target's labels never change, so scrapes only concatenate.
#[derive(Clone, Debug, Default)]
pub struct Labels(String);

impl Labels {
    pub fn new(pairs: &[(&str, String)]) -> Self {
        let mut labels = Self::default();
        for (k, v) in pairs {
            labels.push(k, v);
        }
        labels
    }

    fn push(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(key);
        self.0.push_str("=\"");
        self.0.push_str(&escape(value));
        self.0.push('"');
    }

    /// These labels and one more.
    pub fn with(&self, key: &str, value: &str) -> Self {
        let mut labels = self.clone();
        labels.push(key, value);
        labels
    }
}

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
    let separator = if labels.0.is_empty() { "" } else { "," };
    match extra {
        Some((k, v)) => format!("{{{}{separator}{k}=\"{}\"}}", labels.0, escape(v)),
        None if labels.0.is_empty() => String::new(),
        None => format!("{{{}}}", labels.0),
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
        let labels = Labels::new(&[("exe", "a\"b".into())]);
        e.histogram("h", "help", &labels, &[(8.0, 2), (16.0, 3)], 40.0);
        let text = e.render();
        assert!(text.contains("# TYPE h histogram"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"8\"} 2"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"16\"} 5"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"+Inf\"} 5"));
        assert!(text.contains("h_count{exe=\"a\\\"b\"} 5"));
    }
}
