//! The runtime's time histograms (`runtime.timeHistogram`, Go 1.21+): bucket
//! boundaries exactly as runtime/metrics reports them, window deltas and
//! percentiles.

use serde::Serialize;

const MIN_BUCKET_BITS: u32 = 9;
const MAX_BUCKET_BITS: u32 = 48;
const SUB_BUCKET_BITS: u32 = 2;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;

/// Counts laid out as runtime/metrics does: [underflow, counts..., overflow].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeHistogram {
    pub counts: Vec<u64>,
}

/// Percentiles in nanoseconds; each is the upper bound of the bucket that
/// holds the rank (the runtime's resolution, about 25% wide), so a latency
/// is never understated.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

/// "p50 12.0 µs  p99 3.40 ms  max 8.39 ms": a latency distribution in text.
impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::format::duration_ns;
        write!(
            f,
            "p50 {}  p99 {}  max {}",
            duration_ns(self.p50),
            duration_ns(self.p99),
            duration_ns(self.max)
        )
    }
}

impl TimeHistogram {
    pub fn new(underflow: u64, counts: Vec<u64>, overflow: u64) -> Self {
        let mut all = Vec::with_capacity(counts.len() + 2);
        all.push(underflow);
        all.extend(counts);
        all.push(overflow);
        Self { counts: all }
    }

    /// Events recorded between `earlier` and `self`.
    pub fn delta(&self, earlier: &TimeHistogram) -> TimeHistogram {
        TimeHistogram {
            counts: self
                .counts
                .iter()
                .zip(earlier.counts.iter().chain(std::iter::repeat(&0)))
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn percentiles(&self) -> Option<Percentiles> {
        percentiles(&self.counts, &bucket_bounds_ns(self.counts.len()))
    }
}

/// Bucket boundaries in nanoseconds (len = buckets + 1), as the runtime's
/// timeHistogramMetricsBuckets computes them (in seconds there).
pub fn bucket_bounds_ns(buckets: usize) -> Vec<f64> {
    let mut bounds = vec![0.0; buckets + 1];
    bounds[0] = f64::NEG_INFINITY;
    for j in 0..SUB_BUCKETS {
        bounds[j as usize + 1] = (j << (MIN_BUCKET_BITS - 1 - SUB_BUCKET_BITS)) as f64;
    }
    for i in MIN_BUCKET_BITS..MAX_BUCKET_BITS {
        for j in 0..SUB_BUCKETS {
            let nanos = (1u64 << (i - 1)) | (j << (i - 1 - SUB_BUCKET_BITS));
            let index = ((i - MIN_BUCKET_BITS + 1) as u64 * SUB_BUCKETS + j + 1) as usize;
            if index < bounds.len() {
                bounds[index] = nanos as f64;
            }
        }
    }
    let n = bounds.len();
    bounds[n - 2] = (1u64 << (MAX_BUCKET_BITS - 1)) as f64;
    bounds[n - 1] = f64::INFINITY;
    bounds
}

/// p50/p99/max of a bucketed distribution (`bounds.len() == counts.len()+1`):
/// the upper bound of the bucket holding each rank; for the open-ended
/// last bucket its lower bound.
pub fn percentiles(counts: &[u64], bounds: &[f64]) -> Option<Percentiles> {
    let total: u64 = counts.iter().sum();
    if total == 0 || bounds.len() != counts.len() + 1 {
        return None;
    }
    let upper = |bucket: usize| {
        let hi = bounds[bucket + 1];
        if hi.is_finite() {
            hi
        } else {
            bounds[bucket].max(0.0)
        }
    };
    let at_rank = |q: f64| {
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper(bucket);
            }
        }
        upper(counts.len() - 1)
    };
    let last = counts.iter().rposition(|&c| c > 0)?;
    Some(Percentiles {
        p50: at_rank(0.50),
        p99: at_rank(0.99),
        max: upper(last),
        count: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_runtime() {
        // From go1.21+ metrics.All: 162 bounds, first -Inf, then 0, 64ns,
        // 128ns, 192ns, 256ns, 320ns..., second-to-last 2^47 ns.
        let b = bucket_bounds_ns(162);
        assert_eq!(b.len(), 163);
        assert_eq!(b[0], f64::NEG_INFINITY);
        assert_eq!(&b[1..7], &[0.0, 64.0, 128.0, 192.0, 256.0, 320.0]);
        assert_eq!(b[161], (1u64 << 47) as f64);
        assert_eq!(b[162], f64::INFINITY);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn percentiles_take_bucket_upper_bounds() {
        let counts = [0, 50, 49, 1];
        let bounds = [f64::NEG_INFINITY, 10.0, 20.0, 30.0, f64::INFINITY];
        let p = percentiles(&counts, &bounds).unwrap();
        assert_eq!((p.p50, p.p99, p.max, p.count), (20.0, 30.0, 30.0, 100));
        assert!(percentiles(&[0, 0], &[0.0, 1.0, 2.0]).is_none());
    }
}
