//! Learning the blend weights: feedback joined to the impression it answers, reward
//! samples, FTRL-proximal fits warm-started from the strategy's weights, and the
//! coefficients published as weights.

use std::sync::Arc;

use linfa::prelude::*;
use linfa_ftrl::Ftrl;
use ndarray::{Array1, Array2};

use super::{Learner, Shown};
use crate::engine::metrics::Metrics;
use crate::engine::strategy::N_SOURCES;
use crate::event::{EventKind, ItemId};

/// Largest number of samples one reward adds (a purchase worth 5 adds 5 positives).
const MAX_REPEAT: usize = 10;
/// Features of an FTRL sample: the sources and a constant (the intercept).
pub(super) const N_FEATURES: usize = N_SOURCES + 1;
/// FTRL beta.
pub(super) const BETA: f32 = 1.0;

/// An FTRL model whose coefficients start at `weights` (intercept 0).
///
/// Never panics: the state is clamped to finite values (a strategy's knobs are
/// validated, but the learner must outlive whatever reaches it), and if linfa still
/// refuses it the model starts from linfa's own initial state (`Ftrl::new`).
pub(super) fn warm_ftrl(weights: [f32; N_SOURCES], alpha: f32) -> Ftrl<f32> {
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

impl Learner {
    /// Publishes the FTRL coefficients as the blend weights (adaptive strategies only).
    pub(super) fn publish_weights(&self) {
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
    /// Unengaged items of an impression that leaves the window are negatives.
    pub(super) fn expire(&mut self, shown: Shown) {
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

    pub(super) fn join(
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
    pub(super) fn fit(&mut self) {
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
}
