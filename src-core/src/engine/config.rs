//! [`EngineConfig`]: everything [`Engine::open`](super::Engine::open) needs, with units
//! and defaults on every field, checked by `validate`.

use super::*;

/// Everything [`Engine::open`] needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Store directory (created if missing).
    pub store: PathBuf,
    /// Store tuning.
    pub store_config: StoreConfig,
    /// Checkpoint directory of the attention model (none: baselines only).
    pub model: Option<PathBuf>,
    /// Checkpoint directory of the sentence encoder behind the text source (e.g.
    /// `models/minilm-l6`, fetched by `scripts/fetch-encoder.sh`); none: no text source.
    /// One that fails to load leaves the text source off (the engine still serves; `GET
    /// /v1/info` says why).
    pub encoder: Option<PathBuf>,
    /// Which parts of an item make its text.
    pub text_fields: crate::text::TextFields,
    /// Strategy written as version 1 when the store has none.
    pub strategy: Strategy,
    /// Capacity of the inference queue; beyond it requests get `Overloaded`.
    pub queue_capacity: usize,
    /// Compute threads running the batches.
    pub compute_threads: usize,
    /// Arbiter threads hosting the session actors.
    pub arbiters: usize,
    /// Idle time after which a session is evicted, in seconds.
    pub session_ttl_s: f64,
    /// Bytes the live sessions may hold before the least recently used are evicted.
    pub session_budget_bytes: u64,
    /// How often the janitor checks TTLs and the budget, in milliseconds (sessions holding
    /// more than 95% of the budget also wake it at once).
    pub sweep_every_ms: u64,
    /// Seconds after a user is forgotten before the store is compacted, so that the
    /// user's bytes leave its files (see `Store::compact`); forgets within the delay share
    /// one compaction. The bound on erasure is this plus `sweep_every_ms` plus the
    /// compaction itself. Default 10.
    pub compact_after_forget_s: f64,
    /// Capacity of the learner's queue (beyond it, learner messages are dropped).
    pub learner_queue: usize,
    /// Fine-tune the model every this many interactions (0: never).
    pub finetune_every: u64,
    /// Fine-tuning settings.
    pub finetune: FineTuneConfig,
    /// Where the attention model runs: `cpu`, `cuda` (needs the `cuda` feature and a GPU)
    /// or `auto`.
    pub device: String,
    /// Precision of the item table the CPU path scores the catalogue with: `f32` (the
    /// default), `f16`, `bf16` or `int8` (a quarter of the bytes, one scale per item).
    /// Candidate scores, the task heads and the batched (candle) path stay f32.
    pub score_dtype: crate::model::fast::ScoreDtype,
    /// Catalogues of at least this many items (in the model) take the model's candidates
    /// from a graph index over the item table (HNSW, built when the model loads or is
    /// swapped, off the request path) instead of scoring every item per request; smaller
    /// ones are scored in full. Default 200,000; 1 indexes any catalogue.
    pub ann_min_items: usize,
    /// How deep the graph index is searched (candidates kept while walking it; at least
    /// the strategy's `candidates`): more, better recall and slower. Default 64; 1 to
    /// 100,000.
    pub ann_ef: usize,
    /// Links per item in the graph index (4 to 64; default 16): more, better recall,
    /// a slower build and more memory (`8·ann_m` bytes per item).
    pub ann_m: usize,
    /// On the CPU, keep each session's KV-cached state and push new events onto it (true,
    /// the default), or re-encode every request's window in a batched candle forward pass
    /// (false; what a GPU device always does).
    pub incremental: bool,
    /// Interactions over which the popularity source halves an item's past interactions
    /// (0: all-time counts).
    pub pop_half_life: u64,
    /// Seed of exploration.
    pub seed: u64,
    /// For replays and simulations: the learner applies what it receives only at
    /// [`Engine::sync_learner`], in a canonical order (by user), and publishes only then,
    /// so a run is reproducible whatever the threads do. Off for serving.
    pub deterministic: bool,
    /// How the background threads (the learner, fine-tuning, the store's indexer) are
    /// scheduled against requests: `idle` (the default; Linux `SCHED_IDLE`: they run on
    /// what requests leave and yield as soon as a request thread wakes; the indexer, which
    /// holds a lock the log writer needs, runs at `low` instead), `low` (nice 19) or
    /// `normal`.
    pub background_priority: crate::os::BackgroundPriority,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: PathBuf::from("data/store"),
            store_config: StoreConfig::default(),
            model: None,
            encoder: None,
            text_fields: crate::text::TextFields::default(),
            strategy: Strategy::default(),
            queue_capacity: 4096,
            compute_threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            arbiters: 1,
            session_ttl_s: 600.0,
            session_budget_bytes: 1 << 30,
            sweep_every_ms: 1000,
            compact_after_forget_s: 10.0,
            learner_queue: 1 << 16,
            finetune_every: 0,
            finetune: FineTuneConfig::default(),
            device: "cpu".into(),
            score_dtype: crate::model::fast::ScoreDtype::F32,
            ann_min_items: 200_000,
            ann_ef: 64,
            ann_m: 16,
            incremental: true,
            pop_half_life: 100_000,
            seed: 42,
            deterministic: false,
            background_priority: crate::os::BackgroundPriority::Idle,
        }
    }
}

impl EngineConfig {
    /// Checks every knob.
    pub fn validate(&self) -> Result<()> {
        self.strategy.validate()?;
        self.store_config.validate()?;
        let range = |field: &str, v: u64, lo: u64, hi: u64| -> Result<()> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(Error::config(
                    field,
                    format!("must be in [{lo}, {hi}], got {v}"),
                ))
            }
        };
        range("queue_capacity", self.queue_capacity as u64, 1, 1 << 24)?;
        range("compute_threads", self.compute_threads as u64, 1, 256)?;
        range("arbiters", self.arbiters as u64, 1, 256)?;
        range("sweep_every_ms", self.sweep_every_ms, 1, 3_600_000)?;
        range("learner_queue", self.learner_queue as u64, 1, 1 << 24)?;
        range("ann_min_items", self.ann_min_items as u64, 1, u64::MAX)?;
        range("ann_ef", self.ann_ef as u64, 1, 100_000)?;
        range("ann_m", self.ann_m as u64, 4, 64)?;
        range(
            "session_budget_bytes",
            self.session_budget_bytes,
            1 << 16,
            u64::MAX,
        )?;
        if !["cpu", "cuda", "auto"].contains(&self.device.as_str()) {
            return Err(Error::config(
                "device",
                format!("must be cpu, cuda or auto, got `{}`", self.device),
            ));
        }
        if !(self.compact_after_forget_s.is_finite()
            && (0.0..=86_400.0).contains(&self.compact_after_forget_s))
        {
            return Err(Error::config(
                "compact_after_forget_s",
                format!(
                    "must be in [0, 86400] seconds, got {}",
                    self.compact_after_forget_s
                ),
            ));
        }
        if !(self.session_ttl_s.is_finite() && self.session_ttl_s > 0.0) {
            return Err(Error::config(
                "session_ttl_s",
                format!(
                    "must be a positive number of seconds, got {}",
                    self.session_ttl_s
                ),
            ));
        }
        Ok(())
    }
}
