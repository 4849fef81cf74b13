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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use linfa::prelude::*;
use linfa_ftrl::Ftrl;
use ndarray::{Array1, Array2};

use super::metrics::Metrics;
use super::sources::OnlineCounts;
use super::strategy::{StrategyVersion, N_SOURCES};
use super::{EngineCore, LiveStrategy};
use crate::event::{EventKind, ItemId};

/// Impressions remembered per user for joining feedback.
const IMPRESSIONS_PER_USER: usize = 3;
/// Users whose impressions are remembered.
const IMPRESSION_USERS: usize = 200_000;
/// Largest number of samples one reward adds (a purchase worth 5 adds 5 positives).
const MAX_REPEAT: usize = 10;
/// Features of an FTRL sample: the sources and a constant (the intercept).
const N_FEATURES: usize = N_SOURCES + 1;
/// FTRL beta.
const BETA: f32 = 1.0;

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

/// An FTRL model whose coefficients start at `weights` (intercept 0).
///
/// Never panics: the state is clamped to finite values (a strategy's knobs are
/// validated, but the learner must outlive whatever reaches it), and if linfa still
/// refuses it the model starts from linfa's own initial state (`Ftrl::new`).
fn warm_ftrl(weights: [f32; N_SOURCES], alpha: f32) -> Ftrl<f32> {
    let alpha = if alpha.is_finite() && alpha > 0.0 {
        alpha.max(crate::engine::strategy::MIN_LEARNING_RATE)
    } else {
        1.0
    };
    // With n = 0 and l1 = l2 = 0, FTRL's weight is -z·alpha/beta.
    let z: Vec<f32> = weights
        .iter()
        .chain(std::iter::once(&0.0))
        .map(|w| {
            let z = -w * BETA / alpha;
            if z.is_finite() {
                z
            } else {
                0.0
            }
        })
        .collect();
    let json = serde_json::json!({
        "alpha": alpha, "beta": BETA, "l1_ratio": 0.0, "l2_ratio": 0.0,
        "z": {"v": 1, "dim": [N_FEATURES], "data": z},
        "n": {"v": 1, "dim": [N_FEATURES], "data": vec![0.0f32; N_FEATURES]},
    });
    serde_json::from_value(json).unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not warm-start FTRL; starting afresh");
        let params = Ftrl::params()
            .alpha(alpha)
            .beta(BETA)
            .l1_ratio(0.0)
            .l2_ratio(0.0);
        Ftrl::new(linfa::ParamGuard::check_unwrap(params), N_FEATURES)
    })
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
            .filter(|c| c.strategy_version == strategy.version);
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

    /// Publishes the FTRL coefficients as the blend weights (adaptive strategies only).
    fn publish_weights(&self) {
        if !self.strategy.strategy.learning.adaptive {
            return;
        }
        let w = self.ftrl.get_weights();
        let n = self.ftrl.n();
        let learned: [f32; N_SOURCES] = std::array::from_fn(|j| w[j]);
        let evidence: [f32; N_SOURCES] = std::array::from_fn(|j| n[j]);
        let weights = self.strategy.strategy.bound(learned);
        if weights.iter().all(|w| *w <= 0.0) {
            // Every source judged useless (typically right after tastes changed, before
            // any source has caught up): a blend of zeros ranks by nothing, so the last
            // weights stay until the evidence points somewhere.
            tracing::debug!("learned weights all zero; keeping the previous ones");
            return;
        }
        self.shared
            .publish_weights(self.strategy.version, weights, evidence);
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
            LearnerMsg::Flush(_) | LearnerMsg::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    /// Unengaged items of an impression that leaves the window are negatives.
    fn expire(&mut self, shown: Shown) {
        for ((_, f), engaged) in shown.items.iter().zip(&shown.engaged) {
            if !engaged {
                self.sample(f, false, 1);
            }
        }
    }

    fn reward_of(&self, kind: EventKind, value: f32) -> f32 {
        let r = &self.strategy.strategy.reward;
        match kind {
            EventKind::Click | EventKind::View => r.click,
            EventKind::Cart => r.cart,
            EventKind::Purchase => r.purchase,
            EventKind::Rating if value >= 4.0 => r.like,
            EventKind::Rating => 0.0,
            EventKind::Skip => r.skip,
            EventKind::Impression => 0.0,
        }
    }

    fn join(
        &mut self,
        user: &Arc<str>,
        item: ItemId,
        kind: EventKind,
        value: f32,
        request_id: Option<&str>,
    ) {
        let reward = self.reward_of(kind, value);
        let Some(list) = self.impressions.get_mut(user) else {
            return;
        };
        let found = list.iter_mut().rev().find_map(|s| {
            if request_id.is_some_and(|r| r != s.request_id) {
                return None;
            }
            let pos = s.items.iter().position(|(i, _)| *i == item)?;
            Some((s, pos))
        });
        let Some((shown, pos)) = found else { return };
        let features = shown.items[pos].1;
        let first = !shown.engaged[pos];
        shown.engaged[pos] = true;
        Metrics::add(&self.shared.metrics.feedback_joined, 1);
        if reward > 0.0 {
            Metrics::add(
                &self.shared.metrics.reward_milli,
                (reward * 1000.0).round() as u64,
            );
        }
        if reward > 0.0 {
            let repeat = (reward.round() as usize).clamp(1, MAX_REPEAT);
            self.sample(&features, true, repeat);
        } else if first {
            self.sample(&features, false, 1);
        }
    }

    fn sample(&mut self, f: &[f32; N_SOURCES], positive: bool, repeat: usize) {
        let mut x = [1.0f32; N_FEATURES];
        x[..N_SOURCES].copy_from_slice(f);
        for _ in 0..repeat {
            self.samples.push((x, positive));
        }
        if self.samples.len() >= self.strategy.strategy.learning.update_every {
            self.fit();
        }
    }

    /// One FTRL update over the buffered samples; publishes the weights if adaptive.
    fn fit(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let n = self.samples.len();
        let x = Array2::from_shape_fn((n, N_FEATURES), |(i, j)| self.samples[i].0[j]);
        let y = Array1::from_iter(self.samples.iter().map(|s| s.1));
        self.samples.clear();
        let data = linfa::Dataset::new(x, y);
        let alpha = self.strategy.strategy.learning.learning_rate;
        let params = Ftrl::params()
            .alpha(alpha)
            .beta(BETA)
            .l1_ratio(0.0)
            .l2_ratio(0.0);
        let model = std::mem::replace(&mut self.ftrl, warm_ftrl([0.0; N_SOURCES], alpha));
        match params.fit_with(Some(model), &data) {
            Ok(m) => self.ftrl = m,
            Err(e) => {
                tracing::warn!(error = %e, "FTRL update failed; restarting from the strategy");
                self.ftrl = warm_ftrl(self.strategy.strategy.weights.to_array(), alpha);
            }
        }
        self.publish_weights();
    }

    fn remember(&mut self, user: &Arc<str>, item: ItemId) {
        if self.finetune_every == 0 {
            return;
        }
        self.recent.push_back((Arc::clone(user), item));
        while self.recent.len() > 50_000 {
            self.recent.pop_front();
        }
        self.since_finetune += 1;
        if self.since_finetune >= self.finetune_every
            && !self
                .finetune_running
                .load(std::sync::atomic::Ordering::Acquire)
        {
            self.since_finetune = 0;
            self.start_finetune();
        }
    }

    fn start_finetune(&mut self) {
        let Some(model) = self.shared.model() else {
            return;
        };
        let mut by_user: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (u, item) in &self.recent {
            if let Some(idx) = model.to_model(*item) {
                by_user.entry(Arc::clone(u)).or_default().push(idx);
            }
        }
        let mut sequences: Vec<Vec<u32>> = by_user.into_values().filter(|s| s.len() >= 2).collect();
        sequences.sort();
        if sequences.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let running = Arc::clone(&self.finetune_running);
        running.store(true, std::sync::atomic::Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("attune-finetune".into())
            .spawn(move || {
                crate::os::set_background(0, shared.config.background_priority);
                match shared.fine_tune_and_swap(&model, &sequences) {
                    Ok(v) => tracing::info!(
                        version = v,
                        users = sequences.len(),
                        "fine-tuned model swapped in"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "fine-tuning failed; the serving model stays")
                    }
                }
                running.store(false, std::sync::atomic::Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start fine-tuning");
            self.finetune_running
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }

    fn publish_sources(&mut self) {
        let prev = self.shared.sources();
        let next = self.counts.snapshot(Some(&prev));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_start_gives_the_strategy_weights() {
        let w = [1.0, 0.2, 0.0, 0.5, 2.0, 0.1];
        let f = warm_ftrl(w, 0.1);
        let got = f.get_weights();
        for j in 0..N_SOURCES {
            assert!((got[j] - w[j]).abs() < 1e-5, "{j}: {} vs {}", got[j], w[j]);
        }
        assert!(got[N_SOURCES].abs() < 1e-6);
    }

    #[test]
    fn warm_start_never_panics_on_extreme_knobs() {
        for alpha in [1e-40, 0.0, -1.0, f32::NAN, f32::INFINITY] {
            let f = warm_ftrl([1000.0, -1000.0, 0.0, 1.0, 2.0, 3.0], alpha);
            assert!(
                f.get_weights().iter().all(|w| w.is_finite()),
                "alpha {alpha}"
            );
        }
    }

    #[test]
    fn ftrl_moves_weight_to_the_informative_source() {
        let alpha = 0.5;
        let mut m = warm_ftrl([0.5; N_SOURCES], alpha);
        let params = Ftrl::params()
            .alpha(alpha)
            .beta(BETA)
            .l1_ratio(0.0)
            .l2_ratio(0.0);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        use rand::{Rng, SeedableRng};
        for _ in 0..200 {
            let mut x = Array2::zeros((32, N_FEATURES));
            let mut y = Array1::from_elem(32, false);
            for i in 0..32 {
                for j in 0..N_SOURCES {
                    x[[i, j]] = rng.gen::<f32>();
                }
                x[[i, N_SOURCES]] = 1.0;
                // Only source 4 (markov) predicts the reward.
                y[i] = rng.gen::<f32>() < x[[i, 4]] * 0.8;
            }
            m = params
                .fit_with(Some(m), &linfa::Dataset::new(x, y))
                .expect("fit");
        }
        let w = m.get_weights();
        for j in [0, 1, 2, 3, 5] {
            assert!(w[4] > w[j] + 0.5, "markov {} vs source {j} {}", w[4], w[j]);
        }
    }
}
