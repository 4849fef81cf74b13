//! What a replay reports: ranking figures and their accumulator, time windows, blend
//! weights over time, each strategy's report and the whole replay's.

use serde::Serialize;

use super::compare;
use crate::engine::strategy::SourceWeights;
use crate::event::Timestamp;

/// Ranking figures over a span of the replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Positive events ranked.
    pub rankings: u64,
    /// Share of them whose item was in the top-k.
    pub hr: f64,
    /// Mean NDCG@k.
    pub ndcg: f64,
    /// Mean reciprocal rank (0 outside the top-k).
    pub mrr: f64,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Acc {
    pub(super) n: u64,
    hits: u64,
    ndcg: f64,
    mrr: f64,
}

impl Acc {
    pub(super) fn add(&mut self, rank: Option<usize>) {
        self.n += 1;
        if let Some(r) = rank {
            self.hits += 1;
            self.ndcg += 1.0 / ((r + 1) as f64).log2();
            self.mrr += 1.0 / r as f64;
        }
    }

    pub(super) fn figures(&self) -> Figures {
        let n = self.n.max(1) as f64;
        Figures {
            rankings: self.n,
            hr: self.hits as f64 / n,
            ndcg: self.ndcg / n,
            mrr: self.mrr / n,
        }
    }
}

/// The figures of one time window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Events replayed up to the end of the window.
    pub events_to: u64,
    /// Time of the window's last event (ms).
    pub ts_to: Timestamp,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The blend weights at a point of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsAt {
    /// Events replayed.
    pub events: u64,
    pub weights: SourceWeights,
}

/// What one strategy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    pub name: String,
    pub hr: f64,
    pub ndcg: f64,
    pub mrr: f64,
    /// Share of the catalogue recommended at least once.
    pub coverage: f64,
    /// Positive events ranked.
    pub rankings: u64,
    /// The strategy's reward of the logged feedback whose item was in the slate ranked
    /// just before it (0 when the log has no feedback).
    pub reward: f64,
    /// Recommendation latency inside the engine (µs).
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    /// Recommendation latency histogram: (upper bound µs, count).
    pub latency_buckets: Vec<(f64, u64)>,
    /// For a served log: share of its impressions that the replay reproduced exactly,
    /// and how many there were.
    pub served_agreement: Option<f64>,
    pub served_impressions: u64,
    /// The same figures per time window.
    pub windows: Vec<Window>,
    /// Blend weights at each window's end.
    pub weights: Vec<WeightsAt>,
    /// Seconds this strategy's replay took.
    pub seconds: f64,
    /// Fine-tuning passes run while replaying (`finetune_every`), and their wall time
    /// (training and swap), seconds.
    pub finetune_passes: u64,
    pub finetune_seconds: f64,
    /// Each user's sums, for the paired comparisons (not in the JSON).
    #[serde(skip)]
    pub per_user: compare::PerUser,
}

/// The result of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// What was replayed.
    pub source: String,
    /// Events replayed (per strategy).
    pub events: u64,
    /// Wall-clock seconds of the whole replay.
    pub seconds: f64,
    /// Slate size.
    pub k: usize,
    /// Whether the replay was stopped before the end (the figures cover what ran).
    pub partial: bool,
    pub strategies: Vec<StrategyReport>,
    /// Each strategy after the first against the first, with confidence intervals.
    pub comparisons: Vec<compare::Comparison>,
    /// One line: who won on what, and whether beyond noise.
    pub verdict: String,
}
