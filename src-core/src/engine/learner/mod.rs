//! The online learner: an actor on its own thread, fed by a crossbeam channel.
//!
//! It keeps the baseline sources current (every interaction updates the popularity,
//! transition and co-occurrence counts, published as a fresh snapshot a few times a
//! second), joins feedback to the impression it answers, and fits linfa's FTRL-proximal
//! online on the shown items' per-source scores against the observed reward. With an
//! adaptive strategy its coefficients become the blend weights, within the operator's
//! bounds (pinned sources stay put). FTRL starts from the strategy's weights: its `z`
//! state is set so that the initial coefficients equal them, and evidence then moves them.
//! Every `finetune_every` interactions it fine-tunes the attention model on recent
//! sequences on a background thread and swaps the new weights in atomically.
//!
//! The actor, its messages and its loop are here; learning the blend weights (feedback,
//! FTRL) is in `ftrl.rs`, the fine-tuning trigger in `finetune.rs`.

mod finetune;
mod ftrl;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use linfa_ftrl::Ftrl;

use self::ftrl::{warm_ftrl, N_FEATURES};
use super::sources::OnlineCounts;
use super::strategy::{StrategyVersion, N_SOURCES};
use super::{EngineCore, LiveStrategy};
use crate::event::{EventKind, ItemId};

/// Impressions remembered per user for joining feedback.
const IMPRESSIONS_PER_USER: usize = 3;
/// Users whose impressions are remembered.
const IMPRESSION_USERS: usize = 200_000;

/// What the learner is told.
#[derive(Debug)]
pub(crate) enum LearnerMsg {
    /// An acknowledged event (interaction or skip) of a user.
    Interaction {
        user: Arc<str>,
        item: ItemId,
        kind: EventKind,
        value: f32,
        /// The user's previous interactions, oldest first (a few).
        previous: Vec<ItemId>,
        /// The recommendation it answers, when the caller said so.
        request_id: Option<String>,
    },
    /// A slate that was shown, with each item's source scores.
    Impression {
        user: Arc<str>,
        request_id: String,
        items: Vec<(ItemId, [f32; N_SOURCES])>,
    },
    /// A new strategy version: restart the weights from it.
    Strategy(Arc<StrategyVersion>),
    /// Publish the sources now and answer (the weights move only by `update_every`).
    Flush(crossbeam_channel::Sender<()>),
    /// Drop what is held of a user (pending slates, recent items for fine-tuning).
    Forget(Arc<str>),
    /// Fine-tune every this many interactions from now on (0: stop).
    FineTuneEvery(u64),
    /// Publish, checkpoint and stop.
    Shutdown(crossbeam_channel::Sender<()>),
}

struct Shown {
    request_id: String,
    items: Vec<(ItemId, [f32; N_SOURCES])>,
    engaged: Vec<bool>,
}

pub(crate) struct Learner {
    shared: Arc<EngineCore>,
    counts: OnlineCounts,
    last_publish: Instant,
    publish_every: Duration,
    impressions: HashMap<Arc<str>, VecDeque<Shown>>,
    impression_order: VecDeque<Arc<str>>,
    samples: Vec<([f32; N_FEATURES], bool)>,
    ftrl: Ftrl<f32>,
    strategy: Arc<StrategyVersion>,
    since_finetune: u64,
    finetune_every: u64,
    finetune_running: Arc<std::sync::atomic::AtomicBool>,
    recent: VecDeque<(Arc<str>, ItemId)>,
    /// Deterministic mode (replays): messages wait here until the next `Flush`, which
    /// applies them in a canonical order; nothing is published on the wall clock.
    deterministic: bool,
    held: Vec<LearnerMsg>,
    /// The sources replaced by the last publish, kept until the next one.
    retired: Option<Arc<crate::engine::sources::SourceSnapshot>>,
    /// Interaction messages applied so far.
    applied: u64,
}

/// Key of the learner's checkpoint in the store's blob space.
const CHECKPOINT: &[u8] = b"learner.json";

/// What the learner persists at shutdown: its FTRL state, for the strategy version it
/// learned under.
#[derive(serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    strategy_version: u64,
    ftrl: Ftrl<f32>,
}

impl Learner {
    pub fn new(shared: Arc<EngineCore>, counts: OnlineCounts, finetune_every: u64) -> Self {
        let strategy = Arc::clone(&shared.live().version_record);
        let restored = shared
            .store
            .get_record(crate::store::RecordSpace::Blob, CHECKPOINT)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok())
            .filter(|c| c.strategy_version == strategy.version)
            // A state saved with another number of sources (before the text source)
            // starts afresh from the strategy's weights.
            .filter(|c| c.ftrl.get_weights().len() == ftrl::N_FEATURES);
        let ftrl = match restored {
            Some(c) => {
                tracing::info!(version = c.strategy_version, "learner state restored");
                c.ftrl
            }
            None => warm_ftrl(
                strategy.strategy.weights.to_array(),
                strategy.strategy.learning.learning_rate,
            ),
        };
        let deterministic = shared.config.deterministic;
        let learner = Learner {
            shared,
            counts,
            last_publish: Instant::now(),
            publish_every: Duration::from_millis(200),
            impressions: HashMap::new(),
            impression_order: VecDeque::new(),
            samples: Vec::new(),
            ftrl,
            strategy,
            since_finetune: 0,
            finetune_every,
            finetune_running: Arc::default(),
            recent: VecDeque::new(),
            deterministic,
            held: Vec::new(),
            retired: None,
            applied: 0,
        };
        learner.publish_weights();
        learner
    }

    /// Writes the FTRL state into the store (restored by the next engine on this store
    /// while the strategy version is the same).
    fn checkpoint(&self) {
        let c = Checkpoint {
            strategy_version: self.strategy.version,
            ftrl: self.ftrl.clone(),
        };
        let written = serde_json::to_vec(&c)
            .map_err(crate::error::Error::from)
            .and_then(|b| {
                self.shared
                    .store
                    .put_record(crate::store::RecordSpace::Blob, CHECKPOINT, &b)
            });
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not checkpoint the learner");
        }
    }

    pub fn run(mut self, rx: &Receiver<LearnerMsg>) {
        loop {
            crate::supervise::checkpoint();
            let timeout = self
                .publish_every
                .saturating_sub(self.last_publish.elapsed());
            match rx.recv_timeout(timeout) {
                Ok(LearnerMsg::Shutdown(done)) => {
                    self.apply_held();
                    self.fit();
                    self.publish_sources();
                    self.checkpoint();
                    let _ = done.send(());
                    return;
                }
                Ok(LearnerMsg::Flush(done)) => {
                    self.apply_held();
                    self.publish_sources();
                    let _ = done.send(());
                }
                Ok(msg @ (LearnerMsg::Interaction { .. } | LearnerMsg::Impression { .. }))
                    if self.deterministic =>
                {
                    self.held.push(msg)
                }
                Ok(msg) => self.handle_supervised(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if !self.deterministic && self.last_publish.elapsed() >= self.publish_every {
                self.publish_sources();
            }
        }
    }

    /// Applies the held messages by user (each user's in the order they came: a user's
    /// messages come from one actor, in order), impressions of a user before their
    /// interactions; the order across users, which threads decide, does not matter then.
    fn apply_held(&mut self) {
        let mut held = std::mem::take(&mut self.held);
        held.sort_by(|a, b| key(a).cmp(&key(b)));
        for msg in held {
            self.handle_supervised(msg);
        }
        fn key(m: &LearnerMsg) -> (&str, u8) {
            match m {
                LearnerMsg::Impression { user, .. } => (user, 0),
                LearnerMsg::Interaction { user, .. } => (user, 1),
                _ => ("", 2),
            }
        }
    }

    /// Handles one message; a panic inside is caught, logged and answered by restarting
    /// the learner's model from the live strategy, so that one bad message costs the
    /// learned state since the last fit, never the learner (callers would hang on it).
    fn handle_supervised(&mut self, msg: LearnerMsg) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(msg)));
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::error!(panic = %what, "the learner panicked; restarting it from the strategy");
            self.samples.clear();
            self.held.clear();
            self.ftrl = warm_ftrl(
                self.strategy.strategy.weights.to_array(),
                self.strategy.strategy.learning.learning_rate,
            );
            self.publish_weights();
        }
    }

    fn handle(&mut self, msg: LearnerMsg) {
        match msg {
            LearnerMsg::Interaction {
                user,
                item,
                kind,
                value,
                previous,
                request_id,
            } => {
                self.applied += 1;
                if kind.is_interaction() {
                    self.counts.observe(item, &previous);
                    self.remember(&user, item);
                }
                self.join(&user, item, kind, value, request_id.as_deref());
            }
            LearnerMsg::Impression {
                user,
                request_id,
                items,
            } => {
                let n = items.len();
                let list = self.impressions.entry(Arc::clone(&user)).or_default();
                if list.is_empty() {
                    self.impression_order.push_back(Arc::clone(&user));
                }
                list.push_back(Shown {
                    request_id,
                    items,
                    engaged: vec![false; n],
                });
                if list.len() > IMPRESSIONS_PER_USER {
                    if let Some(old) = list.pop_front() {
                        self.expire(old);
                    }
                }
                while self.impression_order.len() > IMPRESSION_USERS {
                    if let Some(u) = self.impression_order.pop_front() {
                        if let Some(list) = self.impressions.remove(&u) {
                            for s in list {
                                self.expire(s);
                            }
                        }
                    }
                }
            }
            LearnerMsg::Strategy(v) => {
                self.fit();
                self.ftrl = warm_ftrl(
                    v.strategy.weights.to_array(),
                    v.strategy.learning.learning_rate,
                );
                self.strategy = v;
            }
            LearnerMsg::Forget(user) => {
                self.impressions.remove(&user);
                self.impression_order.retain(|u| *u != user);
                self.recent.retain(|(u, _)| *u != user);
            }
            LearnerMsg::FineTuneEvery(n) => {
                self.finetune_every = n;
                self.since_finetune = 0;
                if n == 0 {
                    self.recent.clear();
                }
            }
            LearnerMsg::Flush(_) | LearnerMsg::Shutdown(_) => unreachable!("handled in run"),
        }
    }
    fn publish_sources(&mut self) {
        let prev = self.shared.sources();
        let next = self.counts.snapshot(Some(&prev), self.deterministic);
        drop(prev);
        // The sources before the last are freed here, not by a compute thread.
        self.retired = Some(self.shared.set_sources(next));
        self.shared
            .metrics
            .learned_events
            .store(self.applied, std::sync::atomic::Ordering::Release);
        self.last_publish = Instant::now();
    }
}

/// The live weights a fresh strategy version starts with.
pub(crate) fn initial_live(v: Arc<StrategyVersion>) -> LiveStrategy {
    LiveStrategy {
        version: v.version,
        weights: v.strategy.weights.to_array(),
        evidence: [0.0; N_SOURCES],
        strategy: Arc::new(v.strategy.clone()),
        version_record: v,
    }
}
