//! The Prometheus text exposition format (version 0.0.4) of a snapshot:
//! metric families with HELP and TYPE lines, escaped label values,
//! histograms with cumulative `le` buckets, `_sum` and `_count`.

use std::fmt::Write as _;

use super::snapshot::{Kind, Labels, Snapshot, Value};

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A label value escaped for the exposition.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

fn label_text(labels: &Labels, extra: Option<(&str, &str)>) -> String {
    let text = labels.prometheus();
    let separator = if text.is_empty() { "" } else { "," };
    match extra {
        Some((k, v)) => format!("{{{text}{separator}{k}=\"{}\"}}", escape(v)),
        None if text.is_empty() => String::new(),
        None => format!("{{{text}}}"),
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

/// Every family of `snapshot` in name order, its samples in the order they
/// were added. A histogram without a +Inf bucket gets one.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    for (name, family) in snapshot.families() {
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {}", family.kind.name());
        for sample in &family.samples {
            let labels = &sample.labels;
            match &sample.value {
                Value::Number(v) => {
                    let _ = writeln!(out, "{name}{} {}", label_text(labels, None), number(*v));
                }
                Value::Histogram(h) => {
                    let mut cumulative = 0u64;
                    let mut saw_inf = false;
                    for (le, count) in &h.buckets {
                        cumulative = cumulative.wrapping_add(*count);
                        saw_inf |= le.is_infinite();
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {cumulative}",
                            label_text(labels, Some(("le", &number(*le))))
                        );
                    }
                    if !saw_inf {
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {cumulative}",
                            label_text(labels, Some(("le", "+Inf")))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_sum{} {}",
                        label_text(labels, None),
                        number(h.sum)
                    );
                    let _ = writeln!(out, "{name}_count{} {cumulative}", label_text(labels, None));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let mut s = Snapshot::default();
        let labels = Labels::new(&[("exe", "a\"b".into())]);
        s.histogram("h", "help", &labels, &[(8.0, 2), (16.0, 3)], 40.0);
        let text = render(&s);
        assert!(text.contains("# TYPE h histogram"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"8\"} 2"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"16\"} 5"));
        assert!(text.contains("h_bucket{exe=\"a\\\"b\",le=\"+Inf\"} 5"));
        assert!(text.contains("h_count{exe=\"a\\\"b\"} 5"));
    }

    #[test]
    fn families_render_in_name_order_with_help_and_type() {
        let mut s = Snapshot::default();
        s.gauge("b", "B.", &Labels::default(), 1.5);
        s.counter("a", "A.", &Labels::new(&[("k", "v".into())]), 3.0);
        assert_eq!(
            render(&s),
            "# HELP a A.\n# TYPE a counter\na{k=\"v\"} 3\n# HELP b B.\n# TYPE b gauge\nb 1.5\n"
        );
    }
}
