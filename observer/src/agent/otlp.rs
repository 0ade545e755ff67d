//! The OTLP form of snapshots (an ExportMetricsServiceRequest of the
//! official message types): one resource per watched process, with
//! OpenTelemetry's semantic-convention attributes (process.*, container.id,
//! k8s.*, service.name, host.name), and one for the agent itself. Counters
//! become cumulative monotonic sums, gauges gauges, histograms
//! explicit-bucket histograms with the Prometheus buckets' bounds. Metric
//! names are the Prometheus family names; the labels a process's series
//! add (`size`, `state`, `site`, `reason`) are data point attributes.
//! Cumulative points start when the agent started watching the process;
//! every point is stamped with the time its figures were read.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
    },
    resource::v1::Resource,
};

use super::snapshot::{self, Kind, Snapshot, TargetIdentity, Value};

/// The instrumentation scope every metric is reported under.
const SCOPE: &str = "goscope";

/// What the agent says of itself and of the host it runs on.
#[derive(Clone, Debug)]
pub struct Origin {
    /// `host.name`, when the host has one.
    pub host_name: Option<String>,
    pub agent_pid: u32,
    pub agent_exe: Option<String>,
    /// When the agent started: where its own cumulative series start.
    pub agent_since: SystemTime,
}

impl Origin {
    /// The running agent: its pid and executable, the host's name.
    pub fn of_this_agent(since: SystemTime) -> Self {
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty());
        Self {
            host_name,
            agent_pid: std::process::id(),
            agent_exe: std::env::current_exe()
                .ok()
                .map(|p| p.display().to_string()),
            agent_since: since,
        }
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// Nanoseconds since the Unix epoch (0 for a clock before it).
fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The file name of a path (the whole text when it has none).
fn file_name(path: &str) -> &str {
    path.rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or(path)
}

/// A watched process's resource attributes.
pub fn target_attributes(target: &TargetIdentity, origin: &Origin) -> Vec<KeyValue> {
    let mut attributes = vec![
        string("service.name", file_name(&target.exe)),
        int("process.pid", i64::from(target.pid)),
        string("process.executable.path", &target.exe),
        string("process.executable.name", file_name(&target.exe)),
        string("process.runtime.name", "go"),
        string("process.runtime.version", &target.go_version),
    ];
    for (key, value) in [
        ("container.id", &target.container_id),
        ("k8s.pod.uid", &target.pod_uid),
        ("k8s.pod.name", &target.pod),
        ("k8s.namespace.name", &target.namespace),
        ("host.name", &origin.host_name),
    ] {
        if let Some(value) = value {
            attributes.push(string(key, value));
        }
    }
    attributes
}

/// The agent's own resource attributes.
fn agent_attributes(origin: &Origin) -> Vec<KeyValue> {
    let mut attributes = vec![
        string("service.name", "goscope-agent"),
        string("service.version", env!("CARGO_PKG_VERSION")),
        int("process.pid", i64::from(origin.agent_pid)),
    ];
    if let Some(exe) = &origin.agent_exe {
        attributes.push(string("process.executable.path", exe));
    }
    if let Some(host) = &origin.host_name {
        attributes.push(string("host.name", host));
    }
    attributes
}

/// The unit a metric name says (UCUM), or none.
fn unit(name: &str) -> &'static str {
    let base = name.strip_suffix("_total").unwrap_or(name);
    if base.ends_with("_bytes") {
        "By"
    } else if base.ends_with("_seconds") {
        "s"
    } else {
        ""
    }
}

/// Explicit bounds and counts (one more count than bounds: the last is the
/// overflow bucket) from Prometheus-style `le` buckets. A bound not above
/// the one before (out of order, or +Inf) has its count merged into the
/// bucket before, so the bounds are strictly increasing and finite.
fn explicit_buckets(buckets: &[(f64, u64)]) -> (Vec<f64>, Vec<u64>) {
    let mut bounds: Vec<f64> = Vec::new();
    let mut counts: Vec<u64> = vec![0];
    for &(le, count) in buckets {
        let open = counts.len() - 1;
        if le == f64::INFINITY {
            counts[open] = counts[open].wrapping_add(count);
        } else if le.is_finite() && bounds.last().is_none_or(|last| le > *last) {
            // The open bucket ends at `le`; a new open one follows.
            counts[open] = counts[open].wrapping_add(count);
            bounds.push(le);
            counts.push(0);
        } else {
            // Merged into the bucket before (the open one when none).
            let at = open.saturating_sub(1);
            counts[at] = counts[at].wrapping_add(count);
        }
    }
    (bounds, counts)
}

/// The metrics of one resource, by name.
#[derive(Default)]
struct Metrics(BTreeMap<&'static str, Metric>);

impl Metrics {
    fn metric(&mut self, name: &'static str, family: &snapshot::Family) -> &mut Metric {
        self.0.entry(name).or_insert_with(|| Metric {
            name: name.to_string(),
            description: family.help.to_string(),
            unit: unit(name).to_string(),
            data: Some(match family.kind {
                Kind::Counter => metric::Data::Sum(Sum {
                    data_points: Vec::new(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                Kind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: Vec::new(),
                }),
                Kind::Histogram => metric::Data::Histogram(Histogram {
                    data_points: Vec::new(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            }),
            ..Default::default()
        })
    }
}

/// Appends one sample to its metric; a sample whose value does not fit the
/// family's kind is left out.
fn add_point(metric: &mut Metric, sample: &snapshot::Sample, start: u64, time: u64) {
    let attributes: Vec<KeyValue> = sample
        .labels
        .attributes()
        .iter()
        .map(|(k, v)| string(k, v))
        .collect();
    let number = |v: f64, start_time_unix_nano: u64| NumberDataPoint {
        attributes: attributes.clone(),
        start_time_unix_nano,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    match (&mut metric.data, &sample.value) {
        (Some(metric::Data::Sum(sum)), Value::Number(v)) => sum.data_points.push(number(*v, start)),
        (Some(metric::Data::Gauge(gauge)), Value::Number(v)) => {
            gauge.data_points.push(number(*v, 0));
        }
        (Some(metric::Data::Histogram(histogram)), Value::Histogram(h)) => {
            let (explicit_bounds, bucket_counts) = explicit_buckets(&h.buckets);
            histogram.data_points.push(HistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count: h.count(),
                sum: Some(h.sum),
                bucket_counts,
                explicit_bounds,
                ..Default::default()
            });
        }
        _ => {}
    }
}

/// One request holding every sample of `parts` (a reading of the registry
/// and the agent's own figures, say): the agent's resource first, then one
/// per watched process in pid order.
pub fn request(parts: &[&Snapshot], origin: &Origin) -> ExportMetricsServiceRequest {
    // Keyed by pid; None (first) is the agent.
    let mut resources: BTreeMap<Option<u32>, (Option<Arc<TargetIdentity>>, Metrics)> =
        BTreeMap::new();
    for snapshot in parts {
        for (name, family) in snapshot.families() {
            for sample in &family.samples {
                let target = sample.labels.target();
                let (start, time) = match target {
                    Some(t) => (t.since, snapshot.read_time(t.pid)),
                    None => (origin.agent_since, snapshot.time),
                };
                let (_, metrics) = resources
                    .entry(target.map(|t| t.pid))
                    .or_insert_with(|| (target.cloned(), Metrics::default()));
                add_point(
                    metrics.metric(name, family),
                    sample,
                    unix_nanos(start),
                    unix_nanos(time),
                );
            }
        }
    }
    let scope = InstrumentationScope {
        name: SCOPE.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    let resource_metrics = resources
        .into_values()
        .map(|(target, metrics)| ResourceMetrics {
            resource: Some(Resource {
                attributes: match &target {
                    Some(t) => target_attributes(t, origin),
                    None => agent_attributes(origin),
                },
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope.clone()),
                metrics: metrics.0.into_values().collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message as _;

    use super::*;
    use crate::agent::snapshot::Labels;

    fn origin() -> Origin {
        Origin {
            host_name: Some("node-1".into()),
            agent_pid: 7,
            agent_exe: Some("/usr/bin/goscope".into()),
            agent_since: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
        }
    }

    fn target() -> Arc<TargetIdentity> {
        Arc::new(TargetIdentity {
            pid: 42,
            exe: "/srv/bin/checkout".into(),
            comm: "checkout".into(),
            go_version: "go1.22.10".into(),
            cgroup: "/kubepods/pod1/abc".into(),
            container_id: Some("c".repeat(64)),
            pod_uid: Some("u-1".into()),
            pod: Some("checkout-7d9f".into()),
            namespace: Some("shop".into()),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(200),
        })
    }

    fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn buckets_become_explicit_bounds_with_an_overflow_bucket() {
        assert_eq!(
            explicit_buckets(&[(8.0, 2), (16.0, 3), (f64::INFINITY, 4)]),
            (vec![8.0, 16.0], vec![2, 3, 4])
        );
        // No +Inf bucket: the overflow bucket is empty.
        assert_eq!(
            explicit_buckets(&[(8.0, 2), (16.0, 3)]),
            (vec![8.0, 16.0], vec![2, 3, 0])
        );
        // A bound repeated (a size class unknown, say) merges.
        assert_eq!(
            explicit_buckets(&[(8.0, 2), (8.0, 1), (16.0, 3)]),
            (vec![8.0, 16.0], vec![3, 3, 0])
        );
        assert_eq!(explicit_buckets(&[]), (vec![], vec![0]));
    }

    #[test]
    fn a_snapshot_becomes_one_resource_per_process_with_semantic_conventions() {
        let read = SystemTime::UNIX_EPOCH + Duration::from_secs(300);
        let taken = SystemTime::UNIX_EPOCH + Duration::from_secs(301);
        let mut s = Snapshot::new(taken);
        let labels = Labels::of_target(target());
        s.read_at(42, read);
        s.counter("goscope_gc_cycles_total", "GC cycles.", &labels, 12.0);
        s.gauge(
            "goscope_goroutines_by_state",
            "By state.",
            &labels.with("state", "waiting"),
            3.0,
        );
        s.histogram(
            "goscope_gc_pause_seconds",
            "Pauses.",
            &labels,
            &[(0.001, 5), (f64::INFINITY, 1)],
            0.004,
        );
        s.gauge("goscope_agent_targets", "Targets.", &Labels::default(), 1.0);
        let request = request(&[&s], &origin());
        // It survives the wire.
        let request = ExportMetricsServiceRequest::decode(&*request.encode_to_vec()).unwrap();
        assert_eq!(request.resource_metrics.len(), 2);

        let agent = &request.resource_metrics[0];
        let attrs = &agent.resource.as_ref().unwrap().attributes;
        assert_eq!(
            attribute(attrs, "service.name"),
            Some(&any_value::Value::StringValue("goscope-agent".into()))
        );
        assert_eq!(
            attribute(attrs, "process.pid"),
            Some(&any_value::Value::IntValue(7))
        );
        let agent_metric = &agent.scope_metrics[0].metrics[0];
        let Some(metric::Data::Gauge(g)) = &agent_metric.data else {
            panic!("not a gauge: {agent_metric:?}");
        };
        assert_eq!(g.data_points[0].time_unix_nano, 301_000_000_000);

        let process = &request.resource_metrics[1];
        let attrs = &process.resource.as_ref().unwrap().attributes;
        for (key, want) in [
            ("service.name", "checkout"),
            ("process.executable.path", "/srv/bin/checkout"),
            ("process.runtime.name", "go"),
            ("process.runtime.version", "go1.22.10"),
            ("k8s.pod.uid", "u-1"),
            ("k8s.pod.name", "checkout-7d9f"),
            ("k8s.namespace.name", "shop"),
            ("host.name", "node-1"),
        ] {
            assert_eq!(
                attribute(attrs, key),
                Some(&any_value::Value::StringValue(want.into())),
                "{key}"
            );
        }
        assert_eq!(
            attribute(attrs, "process.pid"),
            Some(&any_value::Value::IntValue(42))
        );
        assert_eq!(
            attribute(attrs, "container.id"),
            Some(&any_value::Value::StringValue("c".repeat(64)))
        );
        let scope = &process.scope_metrics[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "goscope");
        let names: Vec<&str> = scope.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "goscope_gc_cycles_total",
                "goscope_gc_pause_seconds",
                "goscope_goroutines_by_state"
            ]
        );
        let Some(metric::Data::Sum(sum)) = &scope.metrics[0].data else {
            panic!("not a sum: {:?}", scope.metrics[0]);
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let point = &sum.data_points[0];
        assert_eq!(point.start_time_unix_nano, 200_000_000_000);
        assert_eq!(point.time_unix_nano, 300_000_000_000);
        assert_eq!(point.value, Some(number_data_point::Value::AsDouble(12.0)));
        assert!(point.attributes.is_empty());

        let Some(metric::Data::Histogram(h)) = &scope.metrics[1].data else {
            panic!("not a histogram: {:?}", scope.metrics[1]);
        };
        assert_eq!(scope.metrics[1].unit, "s");
        let point = &h.data_points[0];
        assert_eq!(point.explicit_bounds, [0.001]);
        assert_eq!(point.bucket_counts, [5, 1]);
        assert_eq!((point.count, point.sum), (6, Some(0.004)));

        let Some(metric::Data::Gauge(g)) = &scope.metrics[2].data else {
            panic!("not a gauge: {:?}", scope.metrics[2]);
        };
        assert_eq!(
            attribute(&g.data_points[0].attributes, "state"),
            Some(&any_value::Value::StringValue("waiting".into()))
        );
        assert_eq!(g.data_points[0].start_time_unix_nano, 0);
    }

    #[test]
    fn units_follow_the_names() {
        assert_eq!(unit("goscope_alloc_bytes_total"), "By");
        assert_eq!(unit("goscope_heap_live_bytes"), "By");
        assert_eq!(unit("goscope_gc_cpu_seconds_total"), "s");
        assert_eq!(unit("goscope_gc_cycles_total"), "");
        assert_eq!(file_name("/srv/bin/checkout"), "checkout");
        assert_eq!(file_name("checkout"), "checkout");
    }
}
