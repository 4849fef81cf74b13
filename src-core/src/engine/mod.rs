//! The embeddable engine: actix session actors, a dynamic-batching inference actor, an
//! online learner and live strategies over the durable store.
//!
//! [`Engine::open`] starts an actix `System` on a thread of its own (plus one arbiter
//! thread per `arbiters`), the inference compute threads and the learner thread, and
//! returns a cheap, cloneable handle. The handle's async methods only send messages to
//! actor addresses, so they can be awaited from any executor (tokio, actix, a plain
//! `block_on`); [`BlockingEngine`] wraps them for hosts without an async runtime.
//!
//! ```text
//! record ─▶ SessionActor(user) ─append─▶ Store (group commit) ─ack─▶ caller
//!                │  └──────────────▶ Learner (crossbeam): counts, feedback join, FTRL
//! recommend ─▶ SessionActor ─Job─▶ bounded queue (InferenceActor's) ─▶ compute threads
//!                ◀─────────── ranking + state ◀─── dynamic batches ◀┘
//! ```

pub mod inference;
mod inspect;
pub mod learner;
mod log;
pub mod metrics;
pub mod session;
pub mod sources;
pub mod strategy;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::prelude::*;
use arc_swap::{ArcSwap, ArcSwapOption};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use self::inference::{Batcher, InferenceActor};
pub use self::inspect::{Attention, Explanation, PreviewOf};
use self::learner::{Learner, LearnerMsg};
use self::metrics::{Metrics, MetricsSnapshot};
use self::session::{EntryStats, SessionActor, SessionInfo};
use self::sources::{OnlineCounts, SourceSnapshot};
use self::strategy::{SourceWeights, Strategy, StrategyBook, StrategyVersion, N_SOURCES};
use crate::error::{Error, Result};
use crate::event::{Action, EventKind, Item, ItemId, RawEvent};
use crate::model::train::{fine_tune, FineTuneConfig};
use crate::model::{Checkpoint, FastModel};
use crate::store::{Store, StoreConfig};

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
    /// Capacity of the learner's queue (beyond it, learner messages are dropped).
    pub learner_queue: usize,
    /// Fine-tune the model every this many interactions (0: never).
    pub finetune_every: u64,
    /// Fine-tuning settings.
    pub finetune: FineTuneConfig,
    /// Where the attention model runs: `cpu`, `cuda` (needs the `cuda` feature and a GPU)
    /// or `auto`.
    pub device: String,
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
    pub background_priority: crate::threads::BackgroundPriority,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: PathBuf::from("data/store"),
            store_config: StoreConfig::default(),
            model: None,
            strategy: Strategy::default(),
            queue_capacity: 4096,
            compute_threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            arbiters: 1,
            session_ttl_s: 600.0,
            session_budget_bytes: 1 << 30,
            sweep_every_ms: 1000,
            learner_queue: 1 << 16,
            finetune_every: 0,
            finetune: FineTuneConfig::default(),
            device: "cpu".into(),
            incremental: true,
            pop_half_life: 100_000,
            seed: 42,
            deterministic: false,
            background_priority: crate::threads::BackgroundPriority::Idle,
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

/// Per-request options of [`Engine::recommend`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Context {
    /// Only items with one of these tags (overrides the strategy's include list).
    pub include_tags: Vec<String>,
    /// Never items with these tags (added to the strategy's).
    pub exclude_tags: Vec<String>,
    /// Never these items.
    pub exclude_items: Vec<String>,
    /// Log the impression (and let the learner join feedback to it).
    pub log_impression: bool,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            exclude_items: Vec::new(),
            log_impression: true,
        }
    }
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecItem {
    /// The item's external id.
    pub item: String,
    /// Blended score (higher first).
    pub score: f32,
    /// The normalised score of each task and source that went into the blend.
    pub breakdown: SourceWeights,
    /// Put in by exploration rather than by score.
    pub explored: bool,
}

/// The answer to [`Engine::recommend`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Id of this request (feedback may name it).
    pub request_id: String,
    /// The user.
    pub user: String,
    /// Best first.
    pub items: Vec<RecItem>,
    /// Strategy version that ranked them.
    pub strategy_version: u64,
    /// Blend weights used.
    pub weights: SourceWeights,
    /// Version of the model that scored them (0: none).
    pub model_version: u64,
    /// Set when the user was cold: `popularity` or `catalogue`.
    pub fallback: Option<String>,
}

/// Feedback on a recommendation (a click, cart, purchase, rating or skip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The user.
    pub user: String,
    /// The item acted on.
    pub item: String,
    /// `click`, `view`, `cart`, `purchase`, `rating` or `skip`.
    pub kind: EventKind,
    /// Rating value, price or dwell, by kind.
    #[serde(default)]
    pub value: Option<f32>,
    /// The recommendation it answers, if known.
    #[serde(default)]
    pub request_id: Option<String>,
    /// When (ms since the epoch; default now).
    #[serde(default)]
    pub ts: Option<i64>,
}

impl Feedback {
    fn into_event(self) -> Result<(RawEvent, Option<String>)> {
        let item = self.item;
        let action = match self.kind {
            EventKind::View => Action::View {
                item,
                dwell_ms: self.value.map(|v| v as u32),
            },
            EventKind::Click => Action::Click { item },
            EventKind::Cart => Action::Cart {
                item,
                price: self.value,
            },
            EventKind::Purchase => Action::Purchase {
                item,
                price: self.value,
            },
            EventKind::Rating => Action::Rating {
                item,
                value: self
                    .value
                    .ok_or_else(|| Error::BadRequest("rating feedback needs a value".into()))?,
            },
            EventKind::Skip => Action::Skip { item },
            EventKind::Impression => {
                return Err(Error::BadRequest(
                    "impressions are logged by the engine, not sent as feedback".into(),
                ))
            }
        };
        Ok((
            RawEvent {
                user: self.user,
                ts: self.ts.unwrap_or_else(crate::store::now_ms),
                action,
            },
            self.request_id,
        ))
    }
}

/// The strategy in force and the weights the learner has set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyView {
    /// Version in force.
    pub version: u64,
    /// The strategy as set.
    pub strategy: Strategy,
    /// Blend weights now (learned, within bounds).
    pub weights: SourceWeights,
}

/// What [`Engine::model_info`] reports of the serving model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Model version (1 for the first loaded; every swap or fine-tune adds one).
    pub version: u64,
    /// The checkpoint's name (its directory's name).
    pub name: String,
    /// The checkpoint directory it came from.
    pub dir: PathBuf,
    /// The weights file serving (a fine-tuned one lies in the store's `finetuned/`).
    pub weights: PathBuf,
    /// Whether the weights come from background fine-tuning.
    pub fine_tuned: bool,
    /// Items the model knows.
    pub items: usize,
    /// Embedding width, blocks, heads and window of the model.
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_len: usize,
}

/// The attention model serving now, with its item mapping.
#[derive(Debug)]
pub(crate) struct ModelSlot {
    pub fast: FastModel,
    pub version: u64,
    /// Store item id → model item index (`u32::MAX`: unknown to the model).
    pub to_model: Vec<u32>,
    /// Model item index → store item id.
    pub from_model: Vec<ItemId>,
    pub has_task_heads: bool,
    /// The model on the engine's device, when requests are encoded in batches there
    /// rather than incrementally on the CPU.
    pub batched: Option<crate::model::SeqRec>,
    pub checkpoint: Checkpoint,
    /// The safetensors file holding these weights (fine-tuning starts from it).
    pub weights: PathBuf,
}

impl ModelSlot {
    pub fn to_model(&self, item: ItemId) -> Option<u32> {
        self.to_model
            .get(item as usize)
            .copied()
            .filter(|&i| i != u32::MAX)
    }
}

/// The strategy and weights every request reads.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub version: u64,
    pub strategy: Arc<Strategy>,
    pub weights: [f32; N_SOURCES],
    pub evidence: [f32; N_SOURCES],
    pub version_record: Arc<StrategyVersion>,
}

/// Names and tags of the catalogue, by store item id.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    names: Vec<Arc<str>>,
    tags: Vec<Arc<[String]>>,
}

impl Catalog {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn name(&self, item: ItemId) -> &str {
        self.names.get(item as usize).map_or("?", |n| n)
    }

    pub fn tags(&self, item: ItemId) -> &[String] {
        self.tags.get(item as usize).map_or(&[], |t| t)
    }

    /// This catalogue extended with the store's items it lacks.
    fn extended(&self, store: &Store) -> Catalog {
        let n = store.n_items();
        let mut names = self.names.clone();
        let mut tags = self.tags.clone();
        for id in names.len()..n {
            let id = id as ItemId;
            names.push(Arc::from(store.item_name(id).unwrap_or_default()));
            let t: Vec<String> = store
                .item(id)
                .ok()
                .flatten()
                .map(|i| i.tags)
                .unwrap_or_default();
            tags.push(t.into());
        }
        Catalog { names, tags }
    }
}

pub(crate) struct Entry {
    addr: Addr<SessionActor>,
    stats: Arc<EntryStats>,
}

/// Shards of the session registry: a request locks only its user's shard, and the
/// janitor's sweep one shard at a time, so a sweep over 100,000 sessions never holds up
/// every request at once.
const REGISTRY_SHARDS: usize = 32;

/// Where the janitor starts evicting for the session budget: 95% of it.
fn high_water(budget: u64) -> u64 {
    budget / 20 * 19
}

/// Where the janitor's evictions for the session budget stop: 90% of it.
fn low_water(budget: u64) -> u64 {
    budget / 10 * 9
}

/// Live session actors by user.
pub(crate) struct Registry {
    shards: Vec<Mutex<HashMap<Arc<str>, Entry>>>,
    pub total_bytes: AtomicU64,
    next_arbiter: AtomicUsize,
    /// Rung while the sessions' bytes are over the budget's high-water mark, so the
    /// janitor sweeps at once instead of at its next tick (see [`Registry::grow`]).
    over_budget: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
}

type Shard = HashMap<Arc<str>, Entry>;

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..REGISTRY_SHARDS).map(|_| Mutex::default()).collect(),
            total_bytes: AtomicU64::new(0),
            next_arbiter: AtomicUsize::new(0),
            over_budget: crossbeam_channel::bounded(1),
        }
    }
}

impl Registry {
    /// Counts `by` more bytes of live sessions and wakes the janitor while the total is
    /// over the high-water mark, 95% of `budget` (a full bell is not rung twice). With
    /// sweeps only on the janitor's tick, sessions started between two ticks overshot the
    /// budget: 1,927 MiB against a budget of 1,907 MiB when 20,000 users a second were
    /// cycled through. Ringing at the budget itself still left 1,918 MiB: sessions keep
    /// growing while a sweep runs and the evicted ones finish, so the sweep starts with 5%
    /// of the budget still to go.
    pub(crate) fn grow(&self, by: u64, budget: u64) {
        let before = self.total_bytes.fetch_add(by, Ordering::Relaxed);
        if before + by > high_water(budget) {
            let _ = self.over_budget.0.try_send(());
        }
    }

    /// Counts `by` fewer bytes of live sessions.
    pub(crate) fn shrink(&self, by: u64) {
        self.total_bytes.fetch_sub(by, Ordering::Relaxed);
    }

    /// The shard holding `user` (an entry holds no invariant a panic could break).
    fn lock(&self, user: &str) -> std::sync::MutexGuard<'_, Shard> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(user);
        self.lock_shard(h as usize % self.shards.len())
    }

    fn lock_shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live sessions.
    fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock_shard(i).len())
            .sum()
    }

    /// Removes every entry.
    fn drain(&self) -> Vec<Entry> {
        (0..self.shards.len())
            .flat_map(|i| {
                self.lock_shard(i)
                    .drain()
                    .map(|(_, e)| e)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// State shared by the handle, the actors and the threads.
pub(crate) struct Shared {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    book: StrategyBook,
    // What every batch reads is swapped, not locked: a reader never waits, so a writer
    // preempted mid-swap (the learner runs at background priority) cannot stall the
    // compute threads, and the old value is freed by whoever drops it last, outside any
    // lock. Writers of `live` and `catalog` take `swap_writers` to read-modify-write.
    live: ArcSwap<Live>,
    model: ArcSwapOption<ModelSlot>,
    sources: ArcSwap<SourceSnapshot>,
    catalog: ArcSwap<Catalog>,
    swap_writers: Mutex<()>,
    inference: RwLock<Option<Addr<InferenceActor>>>,
    batcher: RwLock<Option<Batcher>>,
    arbiters: Vec<ArbiterHandle>,
    /// Per arbiter, where compute threads hand a batch's answers for its sessions: one
    /// message (one wake-up of the arbiter) per batch, not one per request.
    replies: Vec<inference::ReplySender>,
    learner: crossbeam_channel::Sender<LearnerMsg>,
    pub(crate) log: crossbeam_channel::Sender<log::LogMsg>,
    started: Instant,
    start_ms: i64,
    requests: AtomicU64,
    model_versions: AtomicU64,
    pub(crate) config: EngineConfig,
    closed: AtomicBool,
    finetune: FineTuneConfig,
    /// Users being forgotten: their requests are refused meanwhile.
    forgetting: Mutex<std::collections::HashSet<Arc<str>>>,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, v: T) {
    *lock.write().unwrap_or_else(|e| e.into_inner()) = v;
}

impl Shared {
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    pub fn model(&self) -> Option<Arc<ModelSlot>> {
        self.model.load_full()
    }

    pub fn sources(&self) -> Arc<SourceSnapshot> {
        self.sources.load_full()
    }

    /// Publishes new sources and returns the old ones: the caller should keep them
    /// until the next publish, so that a compute thread still ranking with them is not the
    /// one left to free them (thousands of lists) on a request's time.
    pub fn set_sources(&self, s: SourceSnapshot) -> Arc<SourceSnapshot> {
        self.sources.swap(Arc::new(s))
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    fn swap_writers(&self) -> std::sync::MutexGuard<'_, ()> {
        self.swap_writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The catalogue, extended from the store first if it lacks `item`.
    pub fn catalog_for(&self, item: Option<ItemId>) -> Arc<Catalog> {
        let c = self.catalog();
        match item {
            Some(i) if i as usize >= c.len() => {
                let _writer = self.swap_writers();
                let now = self.catalog();
                if i as usize >= now.len() {
                    let next = Arc::new(now.extended(&self.store));
                    self.catalog.store(Arc::clone(&next));
                    next
                } else {
                    now
                }
            }
            _ => c,
        }
    }

    pub fn batcher(&self) -> Option<Batcher> {
        read(&self.batcher)
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn next_request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{n}", self.start_ms)
    }

    pub fn request_seed(&self, user: &str, n: u64) -> u64 {
        // FNV-1a over the user, mixed with the engine seed and the user's request count.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.config.seed;
        for b in user.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    pub fn learn(&self, msg: LearnerMsg) {
        if self.learner.try_send(msg).is_err() {
            Metrics::add(&self.metrics.learner_dropped, 1);
        }
    }

    /// Sets the learned weights, unless the strategy changed meanwhile.
    pub fn publish_weights(
        &self,
        version: u64,
        weights: [f32; N_SOURCES],
        evidence: [f32; N_SOURCES],
    ) {
        let _writer = self.swap_writers();
        let now = self.live();
        if now.version == version {
            let mut next = (*now).clone();
            next.weights = weights;
            next.evidence = evidence;
            self.live.store(Arc::new(next));
        }
    }

    fn set_live_version(&self, v: StrategyVersion) {
        let v = Arc::new(v);
        let _writer = self.swap_writers();
        self.live
            .store(Arc::new(learner::initial_live(Arc::clone(&v))));
        self.learn(LearnerMsg::Strategy(v));
    }

    /// Builds a serving slot for a checkpoint, interning its items into the store.
    fn model_slot(&self, ck: Checkpoint, weights: PathBuf) -> Result<ModelSlot> {
        let missing: Vec<Item> = ck
            .items
            .iter()
            .filter(|name| self.store.item_id(name).is_none())
            .map(|name| Item {
                id: name.clone(),
                title: String::new(),
                tags: Vec::new(),
                attrs: Default::default(),
            })
            .collect();
        if !missing.is_empty() {
            self.store.put_items(&missing)?;
        }
        let mut from_model = Vec::with_capacity(ck.items.len());
        let mut to_model = vec![u32::MAX; self.store.n_items()];
        for (idx, name) in ck.items.iter().enumerate() {
            let id = self.store.item_id(name).ok_or_else(|| Error::Checkpoint {
                path: ck.dir.clone(),
                message: format!("item {name} could not be added to the store"),
            })?;
            from_model.push(id);
            to_model[id as usize] = idx as u32;
        }
        let fast = FastModel::from_model(&ck.model)?.with_gemm(false);
        let tasks = &ck.config.tasks;
        Ok(ModelSlot {
            fast,
            version: self.model_versions.fetch_add(1, Ordering::Relaxed) + 1,
            to_model,
            from_model,
            has_task_heads: tasks.like > 0.0 || tasks.purchase > 0.0,
            batched: self.batched_model(&ck.config, &weights)?,
            checkpoint: ck,
            weights,
        })
    }

    /// The model on the configured device for the batched path, if that path is on.
    fn batched_model(
        &self,
        cfg: &crate::model::Config,
        weights: &std::path::Path,
    ) -> Result<Option<crate::model::SeqRec>> {
        if self.config.incremental && self.config.device == "cpu" {
            return Ok(None);
        }
        let device = crate::model::device(&self.config.device)?;
        if device.is_cpu() && self.config.incremental {
            return Ok(None);
        }
        let mut varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let model = crate::model::SeqRec::load(vb, cfg)?;
        varmap.load(weights)?;
        Ok(Some(model))
    }

    fn swap_in(&self, slot: ModelSlot) -> u64 {
        let v = slot.version;
        self.model.store(Some(Arc::new(slot)));
        Metrics::add(&self.metrics.model_swaps, 1);
        v
    }

    /// Fine-tunes a copy of `base`'s weights on `sequences`, checkpoints the result into
    /// the store's directory (`finetuned/`) and swaps it in; returns the new version.
    pub fn fine_tune_and_swap(&self, base: &ModelSlot, sequences: &[Vec<u32>]) -> Result<u64> {
        let ck = &base.checkpoint;
        let mut varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = crate::model::SeqRec::load(vb, &ck.config)?;
        varmap.load(&base.weights)?;
        let loss = fine_tune(&varmap, &model, sequences, &self.finetune)?;
        let dir = self.store.path().join("finetuned");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let version = self.model_versions.load(Ordering::Relaxed) + 1;
        let file = dir.join(format!("model-v{version}.safetensors"));
        let tmp = dir.join(format!(".model-v{version}.safetensors.tmp"));
        varmap.save(&tmp)?;
        std::fs::rename(&tmp, &file).map_err(|e| Error::io(&file, e))?;
        tracing::debug!(loss, file = %file.display(), "fine-tuning pass");
        let new_ck = Checkpoint {
            model,
            ..ck.clone()
        };
        let slot = self.model_slot(new_ck, file)?;
        let v = self.swap_in(slot);
        // Keep the two newest fine-tuned checkpoints.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut files: Vec<(u64, PathBuf)> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let n = p.file_name()?.to_str()?;
                    let v = n.strip_prefix("model-v")?.strip_suffix(".safetensors")?;
                    Some((v.parse().ok()?, p))
                })
                .collect();
            files.sort();
            let keep = files.len().saturating_sub(2);
            for (_, p) in files.into_iter().take(keep) {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(v)
    }
}

/// The janitor thread: every `sweep_every_ms`, and at once when the sessions' bytes pass
/// 95% of the budget, evicts idle sessions and keeps the live ones inside the memory
/// budget. It has a thread of its own rather than an arbiter's time: a sweep over 100,000
/// sessions (and the sort of them by last use) takes milliseconds that the inference
/// actor's batching should not wait. It runs at normal
/// priority because it holds registry shards, which requests wait for.
struct Janitor {
    stop: crossbeam_channel::Sender<()>,
    thread: JoinHandle<()>,
}

impl Janitor {
    fn start(shared: Arc<Shared>) -> Result<Janitor> {
        let (stop, rx) = crossbeam_channel::bounded::<()>(0);
        let every = Duration::from_millis(shared.config.sweep_every_ms);
        let thread = std::thread::Builder::new()
            .name("attune-janitor".into())
            .spawn(move || {
                let over_budget = shared.registry.over_budget.1.clone();
                loop {
                    crossbeam_channel::select! {
                        recv(rx) -> _ => break,
                        recv(over_budget) -> _ => {}
                        default(every) => {}
                    }
                    if shared.closed.load(Ordering::Acquire) {
                        break;
                    }
                    shared.sweep(false);
                }
            })
            .map_err(|e| Error::io("attune-janitor thread", e))?;
        Ok(Janitor { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl Shared {
    /// Evicts sessions idle past the TTL, then, if the live ones hold more than 95% of the
    /// budget, the least recently used until they fit in 90% of it (`all`: every
    /// session). Locks one registry shard at a time; the choice of least recently used is
    /// made outside the locks, and a session used meanwhile is spared.
    fn sweep(&self, all: bool) -> usize {
        let now = self.now_ms();
        let ttl = (self.config.session_ttl_s * 1000.0) as u64;
        let budget = self.config.session_budget_bytes;
        let mut evicted = 0;
        // The bytes of the sessions still registered, not `total_bytes`: that also counts
        // sessions evicted by an earlier sweep that have not stopped yet, and sweeps
        // woken one after another by the budget's bell evicted again for them, down to
        // sessions in use (whose requests then failed).
        let mut total = 0u64;
        let mut live: Vec<(u64, u64, Arc<str>)> = Vec::new();
        for i in 0..self.registry.shards.len() {
            let mut shard = self.registry.lock_shard(i);
            shard.retain(|name, e| {
                let last = e.stats.last_used_ms.load(Ordering::Relaxed);
                let bytes = e.stats.bytes.load(Ordering::Relaxed);
                let idle = all
                    || now.saturating_sub(last) > ttl
                    || !e.addr.connected()
                    || e.stats.crashed.load(Ordering::Acquire);
                if idle {
                    e.addr.do_send(session::Evict);
                    evicted += 1;
                } else {
                    total += bytes;
                    live.push((last, bytes, Arc::clone(name)));
                }
                !idle
            });
        }
        if total > high_water(budget) {
            live.sort_unstable();
            let target = low_water(budget);
            for (last, bytes, name) in live {
                if total <= target {
                    break;
                }
                let mut shard = self.registry.lock(&name);
                let unused = shard
                    .get(&name)
                    .is_some_and(|e| e.stats.last_used_ms.load(Ordering::Relaxed) == last);
                if unused {
                    if let Some(e) = shard.remove(&name) {
                        e.addr.do_send(session::Evict);
                        evicted += 1;
                        total = total.saturating_sub(bytes);
                    }
                }
            }
        }
        if evicted > 0 {
            tracing::debug!(evicted, "sessions evicted");
        }
        evicted
    }
}

/// Handles of the threads the engine runs.
struct Threads {
    system: Option<System>,
    system_thread: Option<JoinHandle<()>>,
    learner: Option<JoinHandle<()>>,
    janitor: Option<Janitor>,
    log: Option<log::LogWriter>,
}

/// The embeddable engine; clones share one runtime.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    threads: Arc<Mutex<Threads>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.shared.store.path())
            .finish()
    }
}

fn check_user(user: &str) -> Result<()> {
    crate::wire::check_id(user).map_err(|e| Error::BadRequest(format!("user: {e}")))
}

/// The store indexer's scheduling for the engine's `background_priority`: as given, except
/// that `idle` becomes `low` (nice 19). The indexer holds sled's concurrency lock (shared)
/// while it writes, and the log writer needs that lock exclusively for every batch; at
/// `SCHED_IDLE` a request thread waking on the indexer's CPU preempted it mid-write, and
/// the log writer then spun (on `sched_yield`, 7,000 calls a second at 25,000 events a
/// second) until a CPU fell idle for the indexer to finish. At nice 19 it still yields
/// to request threads but gets back within a scheduling period.
pub(crate) fn indexer_priority(
    background: crate::threads::BackgroundPriority,
) -> crate::threads::BackgroundPriority {
    match background {
        crate::threads::BackgroundPriority::Idle => crate::threads::BackgroundPriority::Low,
        other => other,
    }
}

impl Engine {
    /// Opens the store, loads the model, counts the log into the baseline sources and
    /// starts the actors. Blocks until the engine serves.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let store = Store::open(&config.store, config.store_config.clone())?;
        store.set_background_priority(indexer_priority(config.background_priority));
        let book = StrategyBook::open(store.clone(), &config.strategy)?;
        let current = book
            .current()?
            .ok_or_else(|| Error::config("strategy", "the store holds no current strategy"))?;
        let checkpoint = match &config.model {
            Some(dir) => Some(Checkpoint::load(dir, &Device::Cpu, DType::F32)?),
            None => None,
        };
        let (ltx, lrx) = crossbeam_channel::bounded(config.learner_queue);

        // The actix system and its arbiters, on their own threads.
        let (sys_tx, sys_rx) = std::sync::mpsc::channel();
        let arbiters_n = config.arbiters;
        let system_thread = std::thread::Builder::new()
            .name("attune-actix".into())
            .spawn(move || {
                let sys = System::new();
                let arbiters: Vec<Arbiter> = (0..arbiters_n).map(|_| Arbiter::new()).collect();
                let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
                let _ = sys_tx.send((System::current(), handles));
                if let Err(e) = sys.run() {
                    tracing::error!(error = %e, "the actix system stopped with an error");
                }
                for a in arbiters {
                    a.stop();
                    let _ = a.join();
                }
            })
            .map_err(|e| Error::io("attune-actix thread", e))?;
        let (system, arbiters) = sys_rx
            .recv()
            .map_err(|_| Error::ActorFailed("the actix system failed to start".into()))?;

        let replies: Vec<_> = arbiters.iter().map(inference::reply_box).collect();
        let log_writer = log::LogWriter::start(store.clone(), replies.clone())?;
        let live = learner::initial_live(Arc::new(current));
        let shared = Arc::new(Shared {
            store: store.clone(),
            metrics: Arc::default(),
            registry: Registry::default(),
            book,
            live: ArcSwap::from_pointee(live),
            model: ArcSwapOption::empty(),
            sources: ArcSwap::default(),
            catalog: ArcSwap::default(),
            swap_writers: Mutex::new(()),
            inference: RwLock::new(None),
            batcher: RwLock::new(None),
            arbiters,
            replies,
            learner: ltx,
            log: log_writer.tx.clone(),
            started: Instant::now(),
            start_ms: crate::store::now_ms(),
            requests: AtomicU64::new(0),
            model_versions: AtomicU64::new(0),
            finetune: config.finetune.clone(),
            config: config.clone(),
            closed: AtomicBool::new(false),
            forgetting: Mutex::default(),
        });
        if let Some(ck) = checkpoint {
            let weights = ck.dir.join(crate::model::checkpoint::WEIGHTS);
            let slot = shared.model_slot(ck, weights)?;
            shared.model.store(Some(Arc::new(slot)));
        }
        shared
            .catalog
            .store(Arc::new(Catalog::default().extended(&store)));
        // Sessions load their user's history on first use: let the per-user index catch
        // up with the log first, so those loads never scan the log's tail.
        store.sync_index();
        // Count the log into the sources.
        let counts = count_log(&store, config.pop_half_life)?;
        let mut counts = counts;
        counts.ensure_items(store.n_items());
        let _ = shared.set_sources(counts.snapshot(None));

        // The inference actor lives on the system's own arbiter; compute threads beside.
        let (itx, irx) = std::sync::mpsc::channel();
        let sh = Arc::clone(&shared);
        let (capacity, threads) = (config.queue_capacity, config.compute_threads);
        system.arbiter().spawn(async move {
            let (batcher, addr) = inference::start(&sh, capacity, threads);
            let _ = itx.send((batcher, addr));
        });
        let (batcher, addr) = irx
            .recv()
            .map_err(|_| Error::ActorFailed("the inference actor failed to start".into()))?;
        write(&shared.batcher, Some(batcher));
        write(&shared.inference, Some(addr));

        let learner = {
            let learner = Learner::new(Arc::clone(&shared), counts, config.finetune_every);
            let priority = config.background_priority;
            std::thread::Builder::new()
                .name("attune-learner".into())
                .spawn(move || {
                    crate::threads::set_background(0, priority);
                    learner.run(&lrx)
                })
                .map_err(|e| Error::io("attune-learner thread", e))?
        };
        let janitor = Janitor::start(Arc::clone(&shared))?;
        tracing::info!(store = %store.path().display(), model = ?config.model, "engine open");
        Ok(Engine {
            shared,
            threads: Arc::new(Mutex::new(Threads {
                system: Some(system),
                system_thread: Some(system_thread),
                learner: Some(learner),
                janitor: Some(janitor),
                log: Some(log_writer),
            })),
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(Error::ShutDown)
        } else {
            Ok(())
        }
    }

    /// The store under the engine.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The session actor of `user`, started (and restored) on first use.
    fn session(&self, user: &str) -> Result<(Addr<SessionActor>, Arc<EntryStats>)> {
        self.check_open()?;
        if self
            .shared
            .forgetting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(user)
        {
            return Err(Error::BadRequest(format!(
                "user {user} is being forgotten; try again in a moment"
            )));
        }
        let mut map = self.shared.registry.lock(user);
        if let Some(e) = map.get(user) {
            if e.addr.connected() && !e.stats.crashed.load(Ordering::Acquire) {
                return Ok((e.addr.clone(), Arc::clone(&e.stats)));
            }
        }
        let name: Arc<str> = Arc::from(user);
        let stats = Arc::new(EntryStats::default());
        let n = self.shared.arbiters.len();
        let home = self
            .shared
            .registry
            .next_arbiter
            .fetch_add(1, Ordering::Relaxed)
            % n;
        let (sh, nm, st) = (
            Arc::clone(&self.shared),
            Arc::clone(&name),
            Arc::clone(&stats),
        );
        let addr = SessionActor::start_in_arbiter(&self.shared.arbiters[home], move |_ctx| {
            SessionActor::new(nm, sh, st, home)
        });
        Metrics::add(&self.shared.metrics.sessions_started, 1);
        map.insert(
            name,
            Entry {
                addr: addr.clone(),
                stats: Arc::clone(&stats),
            },
        );
        Ok((addr, stats))
    }

    /// Sends to the user's session; a session that went away by eviction is restarted and
    /// the message sent again, one that crashed gives an error (and restarts next time).
    async fn ask<M>(&self, user: &str, make: impl Fn() -> M) -> Result<M::Result>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        SessionActor: Handler<M>,
    {
        for _ in 0..2 {
            let (addr, _) = self.session(user)?;
            match addr.send(make()).await {
                Ok(r) => return Ok(r),
                Err(_) => {
                    let mut map = self.shared.registry.lock(user);
                    let same = map.get(user).is_some_and(|e| e.addr == addr);
                    if same {
                        // Still registered, so not evicted: it crashed.
                        map.remove(user);
                        Metrics::add(&self.shared.metrics.session_crashes, 1);
                        Metrics::add(&self.shared.metrics.errors, 1);
                        return Err(Error::ActorFailed(format!(
                            "the session of user {user} crashed while handling the request; it restarts on the next request"
                        )));
                    }
                }
            }
        }
        Err(Error::ActorFailed(format!(
            "the session of user {user} stopped twice in a row"
        )))
    }

    /// Records an event; returns its sequence number once it is durable. A recommendation
    /// requested after this returns sees the event.
    pub async fn record(&self, event: RawEvent) -> Result<u64> {
        self.record_with(event, None).await
    }

    /// Records an event that answers the recommendation `request_id` (the learner joins
    /// it to that impression); [`Engine::record`] otherwise.
    pub async fn record_with(&self, event: RawEvent, request_id: Option<String>) -> Result<u64> {
        check_user(&event.user)?;
        if let Some(item) = event.action.item() {
            crate::wire::check_id(item).map_err(|e| Error::BadRequest(format!("item: {e}")))?;
        }
        if event.action.kind() == EventKind::Impression {
            return Err(Error::BadRequest(
                "impressions are logged by the engine itself".into(),
            ));
        }
        let user = event.user.clone();
        let r = self
            .ask(&user, || session::Record {
                event: event.clone(),
                request_id: request_id.clone(),
            })
            .await?;
        if r.is_err() {
            Metrics::add(&self.shared.metrics.errors, 1);
        }
        r
    }

    /// Records feedback on a recommendation (durable on return) and lets the learner
    /// join it to the impression it answers.
    pub async fn feedback(&self, feedback: Feedback) -> Result<u64> {
        let (event, request_id) = feedback.into_event()?;
        self.record_with(event, request_id).await
    }

    /// The `k` best items for `user` now.
    pub async fn recommend(
        &self,
        user: &str,
        k: usize,
        context: Context,
    ) -> Result<Recommendation> {
        check_user(user)?;
        if !(1..=1000).contains(&k) {
            return Err(Error::BadRequest(format!(
                "k must be in [1, 1000], got {k}"
            )));
        }
        let r = self
            .ask(user, || session::Recommend {
                k,
                context: context.clone(),
            })
            .await?;
        if let Err(e) = &r {
            if !matches!(e, Error::Overloaded { .. }) {
                Metrics::add(&self.shared.metrics.errors, 1);
            }
        }
        r
    }

    /// Forgets a user: stops their session without persisting it, lets the events
    /// already sent reach the log, drops what the learner holds of them, and removes
    /// their events, index, snapshot and id from the store ([`Store::forget_user`]).
    /// Requests for the user are refused while this runs; afterwards the same id is a
    /// new user. Returns `None` for a user the store does not know. Durable on return.
    pub async fn forget_user(&self, user: &str) -> Result<Option<crate::store::Forgotten>> {
        check_user(user)?;
        self.check_open()?;
        let name: Arc<str> = Arc::from(user);
        struct Unmark<'a>(&'a Shared, Arc<str>);
        impl Drop for Unmark<'_> {
            fn drop(&mut self) {
                self.0
                    .forgetting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&self.1);
            }
        }
        if !self
            .shared
            .forgetting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(Arc::clone(&name))
        {
            return Err(Error::BadRequest(format!(
                "user {user} is already being forgotten"
            )));
        }
        let _unmark = Unmark(&self.shared, Arc::clone(&name));
        let entry = self.shared.registry.lock(user).remove(user);
        if let Some(e) = entry {
            // Its handlers in flight finish first (the mailbox is ordered).
            let _ = e.addr.send(session::Forget).await;
        }
        // Events and impressions sent before are applied before the log is rewritten.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared
            .log
            .send(log::LogMsg::Barrier(tx))
            .map_err(|_| Error::ShutDown)?;
        rx.await.map_err(|_| Error::ShutDown)?;
        // Not `learn` (which drops messages when the learner lags): this one must arrive.
        self.shared
            .learner
            .send_timeout(
                LearnerMsg::Forget(Arc::clone(&name)),
                Duration::from_secs(10),
            )
            .map_err(|_| Error::ActorFailed("the learner did not take the request".into()))?;
        // One pass over the log: on a thread of its own, not the caller's executor.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = self.shared.store.clone();
        std::thread::Builder::new()
            .name("attune-forget".into())
            .spawn(move || {
                let _ = tx.send(store.forget_user(&name));
            })
            .map_err(|e| Error::io("attune-forget thread", e))?;
        rx.await
            .map_err(|_| Error::ActorFailed("forgetting the user failed".into()))?
    }

    /// What the session of `user` holds.
    pub async fn session_info(&self, user: &str) -> Result<SessionInfo> {
        check_user(user)?;
        self.ask(user, || session::Inspect).await
    }

    /// The strategy in force and the weights the learner has set.
    pub fn strategy(&self) -> StrategyView {
        let live = self.shared.live();
        StrategyView {
            version: live.version,
            strategy: (*live.strategy).clone(),
            weights: SourceWeights::from_array(live.weights),
        }
    }

    /// Validates and stores a new strategy version; the next request uses it.
    pub fn set_strategy(&self, strategy: Strategy) -> Result<StrategyVersion> {
        self.check_open()?;
        let v = self.shared.book.set(strategy)?;
        self.shared.set_live_version(v.clone());
        Ok(v)
    }

    /// [`Engine::set_strategy`] with an author, a message and a base-version check
    /// ([`Error::Conflict`] when the version in force is not `by.base_version`); `note`
    /// says what kind of change it is (`set`, or a guard's `guard revert to N: …`).
    pub fn publish_strategy(
        &self,
        strategy: Strategy,
        note: String,
        by: &strategy::Publish,
    ) -> Result<StrategyVersion> {
        self.check_open()?;
        let v = self.shared.book.publish(strategy, note, by)?;
        self.shared.set_live_version(v.clone());
        Ok(v)
    }

    /// One stored strategy version.
    pub fn strategy_version(&self, version: u64) -> Result<Option<StrategyVersion>> {
        self.shared.book.get(version)
    }

    /// Every strategy version, oldest first.
    pub fn strategy_history(&self) -> Result<Vec<StrategyVersion>> {
        self.shared.book.history()
    }

    /// Makes a copy of version `to` the current strategy.
    pub fn rollback_strategy(&self, to: u64) -> Result<StrategyVersion> {
        self.rollback_strategy_by(to, &strategy::Publish::default())
    }

    /// [`Engine::rollback_strategy`] with an author, a message and a base-version check.
    pub fn rollback_strategy_by(&self, to: u64, by: &strategy::Publish) -> Result<StrategyVersion> {
        self.check_open()?;
        let v = self.shared.book.rollback_by(to, by)?;
        self.shared.set_live_version(v.clone());
        Ok(v)
    }

    /// Adds or updates catalogue records (durable on return); the next request sees their
    /// tags.
    pub fn put_items(&self, items: &[Item]) -> Result<()> {
        self.check_open()?;
        for it in items {
            crate::wire::check_id(&it.id).map_err(|e| Error::BadRequest(format!("item: {e}")))?;
        }
        self.shared.store.put_items(items)?;
        {
            let _writer = self.shared.swap_writers();
            self.shared
                .catalog
                .store(Arc::new(Catalog::default().extended(&self.shared.store)));
        }
        Ok(())
    }

    /// A catalogue record, if the item is known.
    pub fn item(&self, id: &str) -> Result<Option<Item>> {
        match self.shared.store.item_id(id) {
            Some(dense) => Ok(self.shared.store.item(dense)?.or_else(|| {
                Some(Item {
                    id: id.to_string(),
                    title: String::new(),
                    tags: Vec::new(),
                    attrs: Default::default(),
                })
            })),
            None => Ok(None),
        }
    }

    /// The attention model serving now, if any.
    pub fn model_info(&self) -> Option<ModelInfo> {
        self.shared.model().map(|m| ModelInfo {
            version: m.version,
            name: m
                .checkpoint
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: m.checkpoint.dir.clone(),
            weights: m.weights.clone(),
            fine_tuned: !m.weights.starts_with(&m.checkpoint.dir),
            items: m.checkpoint.items.len(),
            dim: m.checkpoint.config.dim,
            layers: m.checkpoint.config.layers,
            heads: m.checkpoint.config.heads,
            max_len: m.checkpoint.config.max_len,
        })
    }

    /// Loads a checkpoint and swaps it in atomically; returns its model version.
    pub fn swap_model(&self, dir: impl AsRef<std::path::Path>) -> Result<u64> {
        self.check_open()?;
        let ck = Checkpoint::load(dir.as_ref(), &Device::Cpu, DType::F32)?;
        let weights = ck.dir.join(crate::model::checkpoint::WEIGHTS);
        let slot = self.shared.model_slot(ck, weights)?;
        Ok(self.shared.swap_in(slot))
    }

    /// Runs one fine-tuning pass on the sequences of the given users now (blocking), and
    /// swaps the result in; returns the new model version.
    pub fn fine_tune_now(&self, users: &[&str]) -> Result<u64> {
        let model = self
            .shared
            .model()
            .ok_or_else(|| Error::config("model", "the engine serves no attention model"))?;
        let mut sequences = Vec::new();
        for u in users {
            if let Some(uid) = self.shared.store.user_id(u) {
                let seq: Vec<u32> = self
                    .shared
                    .store
                    .user_history(uid)?
                    .iter()
                    .filter(|e| e.kind.is_interaction())
                    .filter_map(|e| model.to_model(e.item))
                    .collect();
                sequences.push(seq);
            }
        }
        self.shared.fine_tune_and_swap(&model, &sequences)
    }

    /// Lets the learner apply everything sent so far (sources, weights); for tests and
    /// simulations that need a consistent point.
    pub fn sync_learner(&self) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.shared
            .learner
            .send(LearnerMsg::Flush(tx))
            .map_err(|_| Error::ShutDown)?;
        rx.recv_timeout(Duration::from_secs(60))
            .map_err(|_| Error::ActorFailed("the learner did not answer".into()))
    }

    /// Evicts every session now (persisting their state), as the janitor would.
    pub fn evict_all(&self) -> usize {
        self.shared.sweep(true)
    }

    /// Live figures.
    pub fn metrics(&self) -> MetricsSnapshot {
        let m = &self.shared.metrics;
        let live = self.shared.live();
        let active = self.shared.registry.len() as u64;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            uptime_s: self.shared.started.elapsed().as_secs_f64(),
            recommendations: l(&m.recommendations),
            events: l(&m.events),
            overloaded: l(&m.overloaded),
            errors: l(&m.errors),
            active_sessions: active,
            session_bytes: l(&self.shared.registry.total_bytes),
            sessions_started: l(&m.sessions_started),
            sessions_evicted: l(&m.sessions_evicted),
            sessions_restored: l(&m.sessions_restored),
            session_crashes: l(&m.session_crashes),
            compute_restarts: l(&m.compute_restarts),
            queue_depth: self.shared.batcher().map_or(0, |b| b.depth() as u64),
            feedback_joined: l(&m.feedback_joined),
            learner_dropped: l(&m.learner_dropped),
            learned_events: l(&m.learned_events),
            reward: l(&m.reward_milli) as f64 / 1000.0,
            model_swaps: l(&m.model_swaps),
            state_encodes: l(&m.state_encodes),
            state_pushes: l(&m.state_pushes),
            model_version: self.shared.model().map_or(0, |s| s.version),
            strategy_version: live.version,
            weights: SourceWeights::from_array(live.weights),
            recommend_latency_us: m.recommend_latency.snapshot(),
            record_latency_us: m.record_latency.snapshot(),
            batch_size: m.batch_size.snapshot(),
            queue_delay_us: m.queue_delay.snapshot(),
            compute_time_us: m.compute_time.snapshot(),
        }
    }

    /// Makes the session actor of `user` panic (fault injection for supervision tests).
    #[doc(hidden)]
    pub async fn crash_session(&self, user: &str) -> Result<()> {
        let (addr, _) = self.session(user)?;
        addr.send(session::Crash)
            .await
            .map_err(|e| Error::ActorFailed(e.to_string()))
    }

    /// Stops accepting work, persists every session, lets the learner finish, stops the
    /// threads and closes the store (everything is flushed; the directory's lock is
    /// released when the last clone of the handle is dropped). Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let addrs: Vec<Addr<SessionActor>> = self
            .shared
            .registry
            .drain()
            .into_iter()
            .map(|e| e.addr)
            .collect();
        for a in addrs {
            let _ = a.send(session::Evict).await;
        }
        let shared = Arc::clone(&self.shared);
        let threads = Arc::clone(&self.threads);
        // Joining threads blocks; do it off the caller's executor.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(shutdown_threads(&shared, &threads));
        });
        rx.await
            .map_err(|_| Error::ActorFailed("shutdown thread died".into()))?
    }

    /// Blocking wrappers of the async methods.
    pub fn blocking(&self) -> BlockingEngine {
        BlockingEngine(self.clone())
    }
}

fn shutdown_threads(shared: &Shared, threads: &Mutex<Threads>) -> Result<()> {
    let mut t = threads.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(j) = t.janitor.take() {
        j.stop();
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    if shared.learner.send(LearnerMsg::Shutdown(tx)).is_ok() {
        let _ = rx.recv_timeout(Duration::from_secs(30));
    }
    if let Some(h) = t.learner.take() {
        let _ = h.join();
    }
    // Closing the queue (the last sender is the shared batcher) ends the compute threads
    // once their batch is done; the inference actor hands them over for joining.
    write(&shared.batcher, None);
    let compute = match read(&shared.inference) {
        Some(addr) => {
            futures_executor::block_on(addr.send(inference::TakeThreads)).unwrap_or_default()
        }
        None => Vec::new(),
    };
    for h in compute {
        let _ = h.join();
    }
    write(&shared.inference, None);
    if let Some(sys) = t.system.take() {
        sys.stop();
    }
    if let Some(h) = t.system_thread.take() {
        let _ = h.join();
    }
    // Every session has stopped: what they queued is written and acknowledged first.
    if let Some(w) = t.log.take() {
        w.stop();
    }
    shared.store.close()
}

/// Counts every interaction of the log, in log order, into fresh source counts.
fn count_log(store: &Store, half_life: u64) -> Result<OnlineCounts> {
    let mut counts = OnlineCounts::with_half_life(half_life);
    let mut recent: HashMap<u32, Vec<ItemId>> = HashMap::new();
    for ev in store.all_events() {
        let (_, ev) = ev?;
        if !ev.action.kind().is_interaction() {
            continue;
        }
        let Some(&item) = ev.action.item() else {
            continue;
        };
        let prev = recent.entry(ev.user).or_default();
        counts.observe(item, prev);
        prev.push(item);
        if prev.len() > 2 * sources::CO_WINDOW {
            prev.drain(..sources::CO_WINDOW);
        }
    }
    Ok(counts)
}

/// [`Engine`] for hosts without an async runtime: each call blocks until done.
#[derive(Debug, Clone)]
pub struct BlockingEngine(Engine);

impl BlockingEngine {
    /// See [`Engine::record`].
    pub fn record(&self, event: RawEvent) -> Result<u64> {
        futures_executor::block_on(self.0.record(event))
    }

    /// See [`Engine::recommend`].
    pub fn recommend(&self, user: &str, k: usize, context: Context) -> Result<Recommendation> {
        futures_executor::block_on(self.0.recommend(user, k, context))
    }

    /// See [`Engine::feedback`].
    pub fn feedback(&self, feedback: Feedback) -> Result<u64> {
        futures_executor::block_on(self.0.feedback(feedback))
    }

    /// See [`Engine::session_info`].
    pub fn session_info(&self, user: &str) -> Result<SessionInfo> {
        futures_executor::block_on(self.0.session_info(user))
    }

    /// See [`Engine::strategy`].
    pub fn strategy(&self) -> StrategyView {
        self.0.strategy()
    }

    /// See [`Engine::set_strategy`].
    pub fn set_strategy(&self, strategy: Strategy) -> Result<StrategyVersion> {
        self.0.set_strategy(strategy)
    }

    /// See [`Engine::metrics`].
    pub fn metrics(&self) -> MetricsSnapshot {
        self.0.metrics()
    }

    /// See [`Engine::shutdown`].
    pub fn shutdown(&self) -> Result<()> {
        futures_executor::block_on(self.0.shutdown())
    }

    /// The async engine behind this wrapper.
    pub fn engine(&self) -> &Engine {
        &self.0
    }
}

#[cfg(test)]
mod tests;
