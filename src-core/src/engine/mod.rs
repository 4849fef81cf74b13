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

mod api;
mod blocking;
mod config;
pub mod inference;
mod inspect;
pub mod learner;
mod lifecycle;
mod log;
pub mod metrics;
mod ranking;
mod registry;
mod reply;
pub mod session;
mod shared;
pub mod sources;
pub mod strategy;
pub mod text;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use arc_swap::{ArcSwap, ArcSwapOption};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

#[allow(deprecated)]
pub use self::api::Context;
pub use self::api::{
    CandidateIndexInfo, Feedback, ModelInfo, RecItem, RecommendOptions, Recommendation,
    StrategyView,
};
pub use self::blocking::BlockingEngine;
pub use self::config::EngineConfig;
use self::inference::{Batcher, InferenceActor};
pub use self::inspect::{Attention, Explanation, PreviewOf};
use self::learner::{Learner, LearnerMsg};
use self::lifecycle::*;
use self::metrics::{Metrics, MetricsSnapshot};
use self::registry::*;
use self::session::{EntryStats, SessionActor, SessionInfo};
pub(crate) use self::shared::*;
use self::sources::{OnlineCounts, SourceSnapshot};
use self::strategy::{SourceWeights, Strategy, StrategyBook, StrategyVersion, N_SOURCES};
pub use self::text::{TextMatch, TextMatches, TextStatus};
use crate::error::{Error, Result};
use crate::event::{Action, EventKind, Item, ItemId, RawEvent};
use crate::model::train::{fine_tune, FineTuneConfig};
use crate::model::{Checkpoint, FastModel};
use crate::store::{Store, StoreConfig};

/// The embeddable engine; clones share one runtime.
///
/// ```
/// use attune::{Action, Engine, EngineConfig, RawEvent, RecommendOptions};
///
/// # fn main() -> attune::Result<()> {
/// let dir = tempfile::tempdir().expect("tempdir");
/// let engine = Engine::open(EngineConfig {
///     store: dir.path().join("store"),
///     // The shipped checkpoint (the synthetic catalogue's items i0 … i499).
///     model: Some("../models/synthetic-default".into()),
///     ..EngineConfig::default()
/// })?
/// .blocking(); // or the async calls, from an async host
/// engine.record(RawEvent {
///     user: "ann".into(),
///     ts: 1_700_000_000_000,
///     action: Action::Click { item: "i42".into() },
/// })?; // durable when it returns
/// let rec = engine.recommend("ann", 5, RecommendOptions::default())?;
/// assert_eq!(rec.items.len(), 5);
/// assert!(rec.items.iter().all(|i| i.item != "i42"), "seen items are left out");
/// engine.shutdown()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    shared: Arc<EngineCore>,
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
    background: crate::os::BackgroundPriority,
) -> crate::os::BackgroundPriority {
    match background {
        crate::os::BackgroundPriority::Idle => crate::os::BackgroundPriority::Low,
        other => other,
    }
}

impl Engine {
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
            return Err(Error::Conflict(format!(
                "user {user} is being forgotten; try again in a moment"
            )));
        }
        let mut map = self.shared.registry.lock(user);
        if let Some(e) = map.get(user) {
            if e.addr.connected() && !e.stats.crashed.load(Ordering::Acquire) {
                // Used from now: a sweep that chose it as idle spares it.
                e.stats
                    .last_used_ms
                    .store(self.shared.now_ms(), Ordering::Relaxed);
                return Ok((e.addr.clone(), Arc::clone(&e.stats)));
            }
        }
        let name: Arc<str> = Arc::from(user);
        let stats = Arc::new(EntryStats::default());
        // A new session is in use, not idle since the engine started: without this a
        // sweep before its first message evicted it as the least recently used.
        stats
            .last_used_ms
            .store(self.shared.now_ms(), Ordering::Relaxed);
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
            SessionEntry {
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
                        return Err(Error::Unavailable(format!(
                            "the session of user {user} crashed while handling the request; it restarts on the next request"
                        )));
                    }
                }
            }
        }
        Err(Error::Unavailable(format!(
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
        self.shared.store.writable()?;
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
            .ask(&user, || session::RecordEvent {
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
        context: RecommendOptions,
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
        self.shared.store.writable()?;
        let name: Arc<str> = Arc::from(user);
        struct Unmark<'a>(&'a EngineCore, Arc<str>);
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
            return Err(Error::Conflict(format!(
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
            .map_err(|_| {
                Error::Unavailable("the learner did not take the request in 10 s".into())
            })?;
        // One pass over the log: on a thread of its own, not the caller's executor.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = self.shared.store.clone();
        std::thread::Builder::new()
            .name("attune-forget".into())
            .spawn(move || {
                let _ = tx.send(store.forget_user(&name));
            })
            .map_err(|e| Error::io("attune-forget thread", e))?;
        let forgotten = rx
            .await
            .map_err(|_| Error::internal("the thread forgetting the user died"))??;
        if forgotten.is_some() {
            // The user's bytes leave the store's files with the next compaction.
            let delay = Duration::from_secs_f64(self.shared.config.compact_after_forget_s);
            self.shared
                .compact_due
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(Instant::now() + delay);
        }
        Ok(forgotten)
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
        // Their text is embedded in the background; recommendable by text once done.
        let ids: Vec<ItemId> = items
            .iter()
            .filter_map(|it| self.shared.store.item_id(&it.id))
            .collect();
        self.shared.text.enqueue(ids);
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
            score_dtype: m.fast.score_dtype(),
            scoring_bytes_per_item: m.fast.scoring_bytes_per_item(),
            candidate_index: m.fast.index().map(|(g, ef)| CandidateIndexInfo {
                kind: "hnsw".into(),
                layers: g.layers(),
                ef,
                bytes: g.bytes(),
                build_s: m.index_build_s.unwrap_or(0.0),
            }),
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

    /// Fine-tunes the attention model every `n` interactions from now on (0: stops), as
    /// `EngineConfig::finetune_every` does from the start. A replay that warms up on
    /// events it does not rank starts fine-tuning where the ranking starts.
    pub fn set_finetune_every(&self, n: u64) -> Result<()> {
        self.shared
            .learner
            .send(LearnerMsg::FineTuneEvery(n))
            .map_err(|_| Error::ShutDown)
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
            .map_err(|_| Error::Unavailable("the learner did not answer".into()))
    }

    /// Evicts every session now (persisting their state), as the janitor would.
    pub fn evict_all(&self) -> usize {
        self.shared.sweep(true)
    }

    /// The threads of the store and the engine that died, oldest first. While any is
    /// listed every write is refused with [`Error::Unhealthy`] and the service's
    /// `/healthz` answers 503; the process needs a restart (see [`crate::supervise`]).
    pub fn faults(&self) -> Vec<crate::supervise::Fault> {
        self.shared.store.supervisor().faults()
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
            compute_restarts: self.shared.store.supervisor().restarts(),
            queue_depth: self.shared.batcher().map_or(0, |b| b.depth() as u64),
            compactions: l(&m.compactions),
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
            finetune_time_us: m.finetune_time.snapshot(),
        }
    }

    /// Makes the session actor of `user` panic (fault injection for the supervision
    /// tests; compiled only for them, not part of the API).
    #[cfg(test)]
    pub(crate) async fn crash_session(&self, user: &str) -> Result<()> {
        let (addr, _) = self.session(user)?;
        addr.send(session::Crash)
            .await
            .map_err(|e| Error::internal_from("the session actor", e))
    }

    /// Blocking wrappers of the async methods.
    pub fn blocking(&self) -> BlockingEngine {
        BlockingEngine(self.clone())
    }
}

#[cfg(test)]
mod tests;
