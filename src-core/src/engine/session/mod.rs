//! Session actors: one actix actor per active user, holding the user's recent sequence,
//! the items they have seen and the model's incremental state.
//!
//! An actor is created on the user's first request (restoring what an earlier eviction
//! persisted). An event is applied to the session once durable and before its caller is
//! acknowledged, so a recommendation requested after an acknowledged event always sees
//! it; the mailbox does not wait for the disk meanwhile. A recommendation
//! moves the model state into the inference request and takes it back with the answer;
//! requests of one user run one after the other, so the state is always at home.
//! Idle actors are evicted by the janitor (TTL, memory budget); they persist their model
//! window so that a restored session scores exactly as before.
//!
//! The actor and its state are here; the messages it handles, in `messages.rs`.

mod messages;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::inference::Job;
use super::learner::LearnerMsg;
use super::sources::CO_WINDOW;
use super::{EngineCore, LiveStrategy, RecommendOptions};
use crate::error::{Error, Result};
use crate::event::{EventKind, ItemId};
use crate::model::SessionState;
use crate::store::RecordSpace;

#[cfg(test)]
pub(crate) use messages::Crash;
pub use messages::SessionInfo;
pub(crate) use messages::{Evict, Forget, Inspect, Preview, Recommend, RecordEvent};

/// Most recent interactions a session keeps (the model reads at most its `max_len`).
pub const HISTORY_CAP: usize = 200;

/// Per-session figures the registry reads without messaging the actor.
#[derive(Debug, Default)]
pub(crate) struct EntryStats {
    /// Engine-relative milliseconds of the last message.
    pub last_used_ms: AtomicU64,
    /// Estimated bytes held.
    pub bytes: AtomicU64,
    /// Set while a handler of the actor unwinds from a panic: the actor is dead even if
    /// its mailbox has not closed yet.
    pub crashed: std::sync::atomic::AtomicBool,
}

/// Marks the session crashed if dropped while panicking (held by every handler).
struct CrashGuard(Arc<EntryStats>);

impl Drop for CrashGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.crashed.store(true, Ordering::Release);
        }
    }
}

/// What an eviction persists.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSession {
    /// Interactions the state covers.
    covers: u64,
    /// The model window (restored cold, re-encoded exactly on first use).
    state: SessionState,
}

/// A user's session.
pub(crate) struct SessionActor {
    name: Arc<str>,
    shared: Arc<EngineCore>,
    stats: Arc<EntryStats>,
    history: VecDeque<ItemId>,
    /// Every item interacted with, sorted (the exclude-seen filter's list).
    seen: Vec<ItemId>,
    interactions: u64,
    state: Option<(Box<SessionState>, u64)>,
    /// Index of the arbiter the actor runs on (where its answers are delivered).
    home: usize,
    requests: u64,
    bytes: u64,
    /// Events sent to the log, and the answers applied, counted in sending order: an
    /// event's answer is applied only after those of every event sent before it.
    sent: u64,
    applied: u64,
    /// Answers that came back before an earlier event's was applied (`None`: it failed).
    answered: std::collections::BTreeMap<u64, Option<Applied>>,
}

/// What applying an acknowledged event needs.
struct Applied {
    item: Option<ItemId>,
    kind: EventKind,
    value: f32,
    request_id: Option<String>,
}

impl SessionActor {
    pub fn new(
        name: Arc<str>,
        shared: Arc<EngineCore>,
        stats: Arc<EntryStats>,
        home: usize,
    ) -> Self {
        SessionActor {
            home,
            name,
            shared,
            stats,
            history: VecDeque::new(),
            seen: Vec::new(),
            interactions: 0,
            state: None,
            requests: 0,
            bytes: 0,
            sent: 0,
            applied: 0,
            answered: std::collections::BTreeMap::new(),
        }
    }

    /// Takes the answer of the `n`-th event sent, then applies, in sending order, every
    /// answer no earlier one still waits for. Answers that complete together are polled
    /// by actix in no fixed order (its context swap-removes finished futures: four
    /// events of one request were applied as a, d, c, b), so the order is restored here.
    fn answer(&mut self, n: u64, applied: Option<Applied>) {
        self.answered.insert(n, applied);
        while let Some(next) = self.answered.remove(&self.applied) {
            self.applied += 1;
            if let Some(a) = next {
                self.apply(a.item, a.kind, a.value, a.request_id);
            }
        }
    }

    fn load(&mut self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let store = &shared.store;
        let Some(uid) = store.user_id(&self.name) else {
            return Ok(());
        };
        for e in store.user_history(uid)? {
            if e.kind.is_interaction() {
                self.push_history(e.item);
            }
        }
        if let Some(bytes) = store.get_record(RecordSpace::Session, self.name.as_bytes())? {
            match bincode::deserialize::<StoredSession>(&bytes) {
                Ok(s) if s.covers == self.interactions => {
                    self.state = Some((Box::new(s.state), s.covers));
                    super::metrics::Metrics::add(&self.shared.metrics.sessions_restored, 1);
                }
                Ok(_) => {} // older than the log: re-encoded from the history instead
                Err(e) => {
                    tracing::warn!(user = %self.name, error = %e, "unreadable session snapshot; re-encoding")
                }
            }
        }
        Ok(())
    }

    /// Adds an interaction to the sequence. Consecutive interactions with one item (view,
    /// click, cart, purchase of the same thing) are one step of the sequence, as in
    /// training; `interactions` counts steps.
    fn push_history(&mut self, item: ItemId) {
        if let Err(at) = self.seen.binary_search(&item) {
            self.seen.insert(at, item);
        }
        if self.history.back() == Some(&item) {
            return;
        }
        if self.history.len() == HISTORY_CAP {
            self.history.pop_front();
        }
        self.history.push_back(item);
        self.interactions += 1;
    }

    fn guard(&self) -> CrashGuard {
        CrashGuard(Arc::clone(&self.stats))
    }

    fn touch(&self) {
        self.stats
            .last_used_ms
            .store(self.shared.now_ms(), Ordering::Relaxed);
    }

    fn update_bytes(&mut self) {
        let state = self.state.as_ref().map_or(0, |(s, _)| s.approx_bytes()) as u64;
        let b = 256
            + self.name.len() as u64
            + 4 * self.history.capacity() as u64
            + 4 * self.seen.capacity() as u64
            + state;
        let old = std::mem::replace(&mut self.bytes, b);
        self.stats.bytes.store(b, Ordering::Relaxed);
        let registry = &self.shared.registry;
        if b >= old {
            registry.grow(b - old, self.shared.config.session_budget_bytes);
        } else {
            registry.shrink(old - b);
        }
    }

    fn persist(&self) {
        let Some((state, covers)) = &self.state else {
            return;
        };
        let snap = StoredSession {
            covers: *covers,
            state: (**state).clone(),
        };
        let result = bincode::serialize(&snap)
            .map_err(|e| Error::internal_from("encoding a session snapshot", e))
            .and_then(|b| {
                self.shared
                    .store
                    .put_record(RecordSpace::Session, self.name.as_bytes(), &b)
            });
        if let Err(e) = result {
            tracing::warn!(user = %self.name, error = %e, "could not persist the session");
        }
    }

    /// Applies an acknowledged event to the session and tells the learner.
    fn apply(
        &mut self,
        item: Option<ItemId>,
        kind: EventKind,
        value: f32,
        request_id: Option<String>,
    ) {
        let Some(item) = item else { return };
        let previous: Vec<ItemId> = self
            .history
            .iter()
            .rev()
            .take(CO_WINDOW)
            .rev()
            .copied()
            .collect();
        if kind.is_interaction() {
            self.push_history(item);
        }
        self.shared.learn(LearnerMsg::Interaction {
            user: Arc::clone(&self.name),
            item,
            kind,
            value,
            previous,
            request_id,
        });
        self.update_bytes();
    }

    /// A scoring request for this session. A preview (`preview` set: the strategy and
    /// weights to rank under) leaves the session as it is: its model state stays here
    /// (the request encodes the history afresh) and its request count does not move.
    fn job(&mut self, k: usize, ctx: &RecommendOptions, preview: Option<Arc<LiveStrategy>>) -> Job {
        let live = preview.clone().unwrap_or_else(|| self.shared.live());
        let strategy = &live.strategy;
        let mut exclude: Vec<ItemId> = if strategy.filters.exclude_seen {
            self.seen.clone()
        } else {
            Vec::new()
        };
        for name in &ctx.exclude_items {
            if let Some(id) = self.shared.store.item_id(name) {
                exclude.push(id);
            }
        }
        let include_tags: Arc<[String]> = if ctx.include_tags.is_empty() {
            strategy.filters.include_tags.clone().into()
        } else {
            ctx.include_tags.clone().into()
        };
        let mut ex_tags = strategy.filters.exclude_tags.clone();
        ex_tags.extend(ctx.exclude_tags.iter().cloned());
        let history: Vec<ItemId> = self.history.iter().copied().collect();
        let cached = if preview.is_some() {
            None
        } else {
            self.state.take()
        };
        let (state, pending) = match cached {
            Some((s, covers)) => {
                let behind = (self.interactions - covers) as usize;
                if behind <= history.len() {
                    (Some(s), history[history.len() - behind..].to_vec())
                } else {
                    (None, Vec::new())
                }
            }
            None => (None, Vec::new()),
        };
        let n = if preview.is_some() {
            self.requests + 1
        } else {
            self.requests += 1;
            self.requests
        };
        let seed = self.shared.request_seed(&self.name, n);
        let (reply, _) = tokio::sync::oneshot::channel();
        Job {
            history,
            exclude,
            state,
            pending,
            k,
            include_tags,
            exclude_tags: ex_tags.into(),
            seed,
            enqueued: std::time::Instant::now(),
            reply,
            home: self.home,
            live: preview,
        }
    }

    fn take_back(&mut self, state: Option<Box<SessionState>>, covers: u64) {
        if let Some(s) = state {
            let fresher = self.state.as_ref().is_none_or(|(_, c)| *c < covers);
            if fresher && !s.is_empty() {
                self.state = Some((s, covers));
            }
        }
        self.update_bytes();
    }
}

impl Actor for SessionActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        if let Err(e) = self.load() {
            tracing::warn!(user = %self.name, error = %e, "could not load the session; starting empty");
        }
        self.touch();
        self.update_bytes();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.shared.registry.shrink(self.bytes);
        self.bytes = 0;
    }
}
