//! Latency distributions the probes time (cgo calls, mark assists): the
//! kernel keeps fine buckets; here they are merged and summarised with an
//! HDR histogram. Each bucket's events are recorded at the bucket's upper
//! bound, so a percentile is never understated (the runtime's own
//! histograms keep their layout, see `runtime::histogram`).

use hdrhistogram::Histogram;

use crate::runtime::histogram::Percentiles;

/// Longest latency tracked, ns (an hour); longer ones are clamped to it.
const HIGHEST_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits of the HDR histogram.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A distribution built from kernel buckets.
pub struct Latency(Histogram<u64>);

impl Latency {
    pub fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, HIGHEST_NS, SIGNIFICANT_DIGITS)
                .expect("constant bounds are valid"),
        )
    }

    /// Adds kernel buckets: `counts[i]` events in `[bounds[i], bounds[i+1])`.
    pub fn from_buckets(counts: &[u64], bounds: &[f64]) -> Self {
        let mut latency = Self::new();
        latency.add_buckets(counts, bounds);
        latency
    }

    pub fn add_buckets(&mut self, counts: &[u64], bounds: &[f64]) {
        for (i, &n) in counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let upper = match (bounds.get(i), bounds.get(i + 1)) {
                (_, Some(hi)) if hi.is_finite() => *hi,
                (Some(lo), _) => lo.max(1.0),
                _ => continue,
            };
            let value = (upper.max(1.0) as u64).min(HIGHEST_NS);
            // Within bounds by construction; a refusal would only drop events.
            let _ = self.0.record_n(value, n);
        }
    }

    /// Merges another distribution (e.g. per-site into the whole).
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.0.add(&other.0);
    }

    /// p50, p99 and max (None when empty).
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.0.is_empty() {
            return None;
        }
        Some(Percentiles {
            p50: self.0.value_at_quantile(0.50) as f64,
            p99: self.0.value_at_quantile(0.99) as f64,
            max: self.0.max() as f64,
            count: self.0.len(),
        })
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

/// p50/p99/max of kernel buckets, through an HDR histogram.
pub fn percentiles(counts: &[u64], bounds: &[f64]) -> Option<Percentiles> {
    Latency::from_buckets(counts, bounds).percentiles()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_upper_bounds_within_hdr_precision() {
        // 90 events in [100, 200) ns, 10 in [1000, 2000) ns.
        let bounds = [0.0, 100.0, 200.0, 1000.0, 2000.0];
        let counts = [0, 90, 0, 10];
        let p = percentiles(&counts, &bounds).unwrap();
        assert_eq!(p.count, 100);
        assert!((p.p50 - 200.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99 - 2000.0).abs() <= 2.0, "{p:?}");
        assert!((p.max - 2000.0).abs() <= 2.0, "{p:?}");
        assert!(percentiles(&[0, 0], &[0.0, 1.0, 2.0]).is_none());
    }

    #[test]
    fn merged_distributions_add_up() {
        let bounds = [0.0, 10.0, 20.0];
        let mut a = Latency::from_buckets(&[5, 0], &bounds);
        let b = Latency::from_buckets(&[0, 5], &bounds);
        a.merge(&b);
        let p = a.percentiles().unwrap();
        assert_eq!(p.count, 10);
        assert!((p.max - 20.0).abs() <= 1.0);
    }
}
