//! Engine metrics: lock-free counters and latency histograms that every actor and compute
//! thread updates on its hot path, and the serialisable snapshot that `Engine::metrics`,
//! the service's `/metrics` and the control panel read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Buckets per doubling of a [`Histogram`] (each bucket spans a factor of `2^(1/4)`).
const SUB: usize = 4;
/// Doublings covered: 1 µs up to about 2^26 µs (67 s).
const DOUBLINGS: usize = 26;
const BUCKETS: usize = SUB * DOUBLINGS + 1;

/// A histogram of non-negative values (microseconds, batch sizes) in log-spaced buckets,
/// recorded with relaxed atomics; quantiles are accurate to a bucket (±9%).
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v <= 1 {
        return 0;
    }
    let f = (v as f64).log2() * SUB as f64;
    (f.ceil() as usize).min(BUCKETS - 1)
}

/// Upper bound of bucket `b`.
fn bucket_upper(b: usize) -> f64 {
    2f64.powf(b as f64 / SUB as f64)
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, v: u64) {
        self.buckets[bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// Records a duration in microseconds.
    pub fn record_duration(&self, d: Duration) {
        self.record(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let buckets: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, c)| (bucket_upper(b), *c))
            .collect();
        let q = |p: f64| bucket_quantile(&buckets, p);
        let sum = self.sum.load(Ordering::Relaxed);
        HistogramSnapshot {
            count,
            mean: if count == 0 {
                0.0
            } else {
                sum as f64 / count as f64
            },
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            max: self.max.load(Ordering::Relaxed) as f64,
            buckets,
        }
    }
}

/// The `q` quantile of values in sparse buckets `(upper bound, count)`, in increasing
/// order: the upper bound of the bucket that holds it (0 when there are none).
pub fn bucket_quantile(buckets: &[(f64, u64)], q: f64) -> f64 {
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (upper, c) in buckets {
        seen += c;
        if seen >= rank {
            return *upper;
        }
    }
    buckets.last().map_or(0.0, |b| b.0)
}

/// A histogram's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistogramSnapshot {
    /// Values recorded.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Median (upper bound of its bucket).
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value seen.
    pub max: f64,
    /// Non-empty buckets as `(upper bound, count)`.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub buckets: Vec<(f64, u64)>,
}

impl HistogramSnapshot {
    /// The mean of the values recorded between `earlier` (a snapshot of the same
    /// histogram) and this one; 0 when none were.
    pub fn mean_since(&self, earlier: &HistogramSnapshot) -> f64 {
        let n = self.count.saturating_sub(earlier.count);
        if n == 0 {
            return 0.0;
        }
        (self.mean * self.count as f64 - earlier.mean * earlier.count as f64) / n as f64
    }
}

/// The engine's live counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Recommendations answered.
    pub recommendations: AtomicU64,
    /// Events acknowledged (durable).
    pub events: AtomicU64,
    /// Requests refused because the inference queue was full.
    pub overloaded: AtomicU64,
    /// Requests that failed otherwise.
    pub errors: AtomicU64,
    /// Sessions created (first use or restore).
    pub sessions_started: AtomicU64,
    /// Sessions evicted (idle past the TTL or over the memory budget).
    pub sessions_evicted: AtomicU64,
    /// Sessions restored from a snapshot written at eviction.
    pub sessions_restored: AtomicU64,
    /// Session actors that crashed and were replaced.
    pub session_crashes: AtomicU64,
    /// Feedback events joined to an impression.
    pub feedback_joined: AtomicU64,
    /// Store compactions run after forgets.
    pub compactions: AtomicU64,
    /// Messages the learner's queue dropped because it was full.
    pub learner_dropped: AtomicU64,
    /// Events the learner had applied when it last published its sources.
    pub learned_events: AtomicU64,
    /// Cumulative reward, in thousandths.
    pub reward_milli: AtomicU64,
    /// Model hot swaps.
    pub model_swaps: AtomicU64,
    /// Session states encoded from the whole window (cold, restored, or after a swap).
    pub state_encodes: AtomicU64,
    /// Events pushed incrementally onto cached session states.
    pub state_pushes: AtomicU64,
    /// End-to-end latency of `recommend`, µs.
    pub recommend_latency: Histogram,
    /// Latency of `record` (until durable), µs.
    pub record_latency: Histogram,
    /// Requests per batch.
    pub batch_size: Histogram,
    /// Time from enqueue to the batch's start, µs.
    pub queue_delay: Histogram,
    /// Compute time per batch, µs.
    pub compute_time: Histogram,
    /// Wall time of each fine-tuning pass (training and swap), µs.
    pub finetune_time: Histogram,
}

impl Metrics {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What `Engine::metrics` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Stats)]
pub struct MetricsSnapshot {
    /// Seconds since the engine opened.
    pub uptime_s: f64,
    /// Recommendations answered.
    pub recommendations: u64,
    /// Events acknowledged.
    pub events: u64,
    /// Requests refused with `Overloaded`.
    pub overloaded: u64,
    /// Requests failed otherwise.
    pub errors: u64,
    /// Session actors alive now.
    pub active_sessions: u64,
    /// Estimated bytes held by live sessions.
    pub session_bytes: u64,
    /// Sessions created.
    pub sessions_started: u64,
    /// Sessions evicted.
    pub sessions_evicted: u64,
    /// Sessions restored from snapshots.
    pub sessions_restored: u64,
    /// Crashed session actors replaced.
    pub session_crashes: u64,
    /// Compute threads that died and were restarted in place (see [`crate::supervise`]).
    pub compute_restarts: u64,
    /// Requests waiting for inference now.
    pub queue_depth: u64,
    /// Store compactions run after forgets (each removes forgotten users' bytes from the
    /// files).
    pub compactions: u64,
    /// Feedback joined to impressions.
    pub feedback_joined: u64,
    /// Learner messages dropped.
    pub learner_dropped: u64,
    /// Events (interactions and feedback) counted in the sources the learner last
    /// published: how far learning has caught up with what was recorded.
    pub learned_events: u64,
    /// Cumulative reward.
    pub reward: f64,
    /// Model hot swaps so far.
    pub model_swaps: u64,
    /// Session states encoded from the whole window.
    pub state_encodes: u64,
    /// Events pushed incrementally onto cached states.
    pub state_pushes: u64,
    /// Version of the model serving now (0: none).
    pub model_version: u64,
    /// Current strategy version.
    pub strategy_version: u64,
    /// Blend weights in force, by source.
    pub weights: super::strategy::SourceWeights,
    /// `recommend` latency, µs.
    pub recommend_latency_us: HistogramSnapshot,
    /// `record` latency, µs.
    pub record_latency_us: HistogramSnapshot,
    /// Requests per inference batch.
    pub batch_size: HistogramSnapshot,
    /// Queueing delay before a batch starts, µs.
    pub queue_delay_us: HistogramSnapshot,
    /// Compute time per batch, µs.
    pub compute_time_us: HistogramSnapshot,
    /// Fine-tuning passes (`count`) and their wall time (training and swap), µs.
    #[serde(default)]
    pub finetune_time_us: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 1000);
        assert!((s.mean - 500.5).abs() < 1e-9);
        assert!(s.p50 >= 500.0 && s.p50 < 500.0 * 1.2, "{}", s.p50);
        assert!(s.p99 >= 990.0 && s.p99 < 990.0 * 1.2, "{}", s.p99);
        assert_eq!(s.max, 1000.0);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let s = Histogram::default().snapshot();
        assert_eq!((s.count, s.p50, s.p99), (0, 0.0, 0.0));
    }
}
