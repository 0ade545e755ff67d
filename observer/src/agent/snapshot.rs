//! One reading of everything the agent exports, as typed samples: metric
//! families (name, help, kind) of counters, gauges and histograms, each
//! sample with its labels and, for a watched process, who that process is
//! and when its figures were read. Both outputs render the same snapshot:
//! the Prometheus text (`exposition`) and the OTLP request (`otlp`), so a
//! scrape and a push of one reading never disagree.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use super::exposition::escape;

/// Who a watched process is, resolved once when the agent starts watching
/// it. Values are bounded in length, as the Prometheus labels are.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetIdentity {
    pub pid: u32,
    /// The executable's path as the process sees it.
    pub exe: String,
    pub comm: String,
    /// As the binary's build info says it (`go1.22.10`).
    pub go_version: String,
    pub cgroup: String,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// When the agent started watching it: where its cumulative series
    /// start.
    pub since: SystemTime,
}

impl TargetIdentity {
    /// The Prometheus labels every series of this process carries, in the
    /// exposition's order (the container and pod ones when known).
    pub fn label_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("pid", self.pid.to_string()),
            ("exe", self.exe.clone()),
            ("comm", self.comm.clone()),
            ("go_version", self.go_version.clone()),
            ("cgroup", self.cgroup.clone()),
        ];
        for (key, value) in [
            ("container_id", &self.container_id),
            ("pod_uid", &self.pod_uid),
            ("pod", &self.pod),
            ("namespace", &self.namespace),
        ] {
            if let Some(value) = value {
                pairs.push((key, value.clone()));
            }
        }
        pairs
    }
}

/// The labels of a series: rendered (escaped) once in the Prometheus form
/// `k="v",k2="v2"`, and kept as the process they name (an OTLP resource)
/// plus the pairs added to it (OTLP data point attributes).
#[derive(Clone, Debug, Default)]
pub struct Labels {
    prometheus: String,
    target: Option<Arc<TargetIdentity>>,
    attributes: Vec<(String, String)>,
}

impl Labels {
    /// Labels of a series that is not a watched process's (the agent's own).
    pub fn new(pairs: &[(&str, String)]) -> Self {
        let mut labels = Self::default();
        for (k, v) in pairs {
            labels.push(k, v);
        }
        labels
    }

    /// The labels of every series of a watched process.
    pub fn of_target(identity: Arc<TargetIdentity>) -> Self {
        let mut labels = Self::default();
        for (k, v) in identity.label_pairs() {
            labels.push_text(k, &v);
        }
        labels.target = Some(identity);
        labels
    }

    fn push_text(&mut self, key: &str, value: &str) {
        if !self.prometheus.is_empty() {
            self.prometheus.push(',');
        }
        self.prometheus.push_str(key);
        self.prometheus.push_str("=\"");
        self.prometheus.push_str(&escape(value));
        self.prometheus.push('"');
    }

    fn push(&mut self, key: &str, value: &str) {
        self.push_text(key, value);
        self.attributes.push((key.to_string(), value.to_string()));
    }

    /// These labels and one more.
    pub fn with(&self, key: &str, value: &str) -> Self {
        let mut labels = self.clone();
        labels.push(key, value);
        labels
    }

    /// The Prometheus form, escaped, without braces.
    pub fn prometheus(&self) -> &str {
        &self.prometheus
    }

    /// The watched process these labels name (`None`: the agent's own).
    pub fn target(&self) -> Option<&Arc<TargetIdentity>> {
        self.target.as_ref()
    }

    /// The pairs beyond the process's own labels, unescaped.
    pub fn attributes(&self) -> &[(String, String)] {
        &self.attributes
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Cumulative and monotonic.
    Counter,
    Gauge,
    /// Cumulative buckets.
    Histogram,
}

/// A histogram's per-bucket (not cumulative) counts with their upper
/// bounds `le` (the last may be +Inf), and the sum of the observations.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
}

impl Histogram {
    /// Observations in all buckets.
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .fold(0u64, |n, (_, c)| n.wrapping_add(*c))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Histogram(Histogram),
}

#[derive(Clone, Debug)]
pub struct Sample {
    pub labels: Labels,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub struct Family {
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// The samples of one reading by family name (in name order, samples in
/// the order they were added), with the reading's time and each watched
/// process's read time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When the snapshot was taken (the time of the agent's own series).
    pub time: SystemTime,
    families: BTreeMap<&'static str, Family>,
    read_times: BTreeMap<u32, SystemTime>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new(SystemTime::now())
    }
}

impl Snapshot {
    pub fn new(time: SystemTime) -> Self {
        Self {
            time,
            families: BTreeMap::new(),
            read_times: BTreeMap::new(),
        }
    }

    /// A family keeps the help and kind it was first added with.
    fn add(&mut self, name: &'static str, help: &'static str, kind: Kind, sample: Sample) {
        self.families
            .entry(name)
            .or_insert_with(|| Family {
                help,
                kind,
                samples: Vec::new(),
            })
            .samples
            .push(sample);
    }

    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: &Labels, v: f64) {
        let sample = Sample {
            labels: labels.clone(),
            value: Value::Number(v),
        };
        self.add(name, help, Kind::Counter, sample);
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &Labels, v: f64) {
        let sample = Sample {
            labels: labels.clone(),
            value: Value::Number(v),
        };
        self.add(name, help, Kind::Gauge, sample);
    }

    /// A histogram from per-bucket (not cumulative) counts with upper
    /// bounds `le` (the last may be +Inf).
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &Labels,
        buckets: &[(f64, u64)],
        sum: f64,
    ) {
        let sample = Sample {
            labels: labels.clone(),
            value: Value::Histogram(Histogram {
                buckets: buckets.to_vec(),
                sum,
            }),
        };
        self.add(name, help, Kind::Histogram, sample);
    }

    /// Records when the figures of process `pid` were read.
    pub fn read_at(&mut self, pid: u32, time: SystemTime) {
        self.read_times.insert(pid, time);
    }

    /// When the figures of `pid` were read (the snapshot's time if unsaid).
    pub fn read_time(&self, pid: u32) -> SystemTime {
        self.read_times.get(&pid).copied().unwrap_or(self.time)
    }

    /// Families in name order.
    pub fn families(&self) -> impl Iterator<Item = (&'static str, &Family)> {
        self.families.iter().map(|(name, family)| (*name, family))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> TargetIdentity {
        TargetIdentity {
            pid: 42,
            exe: "/srv/a\"b".into(),
            comm: "ab".into(),
            go_version: "go1.22.10".into(),
            cgroup: "/".into(),
            container_id: None,
            pod_uid: Some("u".into()),
            pod: None,
            namespace: None,
            since: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn target_labels_render_in_order_and_added_pairs_are_attributes() {
        let labels = Labels::of_target(Arc::new(identity())).with("size", "8");
        assert_eq!(
            labels.prometheus(),
            "pid=\"42\",exe=\"/srv/a\\\"b\",comm=\"ab\",go_version=\"go1.22.10\",cgroup=\"/\",pod_uid=\"u\",size=\"8\""
        );
        assert_eq!(labels.target().map(|t| t.pid), Some(42));
        assert_eq!(labels.attributes(), &[("size".into(), "8".into())]);
    }

    #[test]
    fn families_keep_their_first_kind_and_read_times_default_to_the_snapshot() {
        let mut s = Snapshot::new(SystemTime::UNIX_EPOCH);
        s.counter("c", "h", &Labels::default(), 1.0);
        s.gauge("c", "other", &Labels::default(), 2.0);
        let (_, family) = s.families().next().unwrap();
        assert_eq!(
            (family.kind, family.help, family.samples.len()),
            (Kind::Counter, "h", 2)
        );
        assert_eq!(s.read_time(7), SystemTime::UNIX_EPOCH);
        let later = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(3);
        s.read_at(7, later);
        assert_eq!(s.read_time(7), later);
    }
}
