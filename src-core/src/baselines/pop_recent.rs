//! Recency-decayed popularity: what is popular *now*, for catalogues whose tastes drift.

use super::{Scorer, TrainSet};
use crate::data::Seq;
use crate::error::{Error, Result};
use crate::event::Timestamp;

/// Default half-life of an interaction's weight: 30 days, in milliseconds.
pub const DEFAULT_HALF_LIFE_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// Scores every item by `Σ exp(-ln 2 · (t_max - t_last) / half_life)` over the distinct
/// users who had it, where `t_last` is that user's last time on the item and `t_max` the
/// latest timestamp of the training set.
#[derive(Debug, Clone)]
pub struct PopRecent {
    weights: Vec<f32>,
}

impl PopRecent {
    /// Fits on `train` with a half-life of `half_life_ms` milliseconds (must be positive).
    pub fn fit(train: &TrainSet<'_>, half_life_ms: i64) -> Result<Self> {
        if half_life_ms <= 0 {
            return Err(Error::config(
                "pop-recent half_life_ms",
                format!("must be positive, got {half_life_ms}"),
            ));
        }
        let t_max = train.max_ts().unwrap_or(0);
        let rate = std::f64::consts::LN_2 / half_life_ms as f64;
        let decay = |t: Timestamp| (-rate * t_max.saturating_sub(t) as f64).exp();

        let mut weights = vec![0f64; train.n_items];
        let mut last_user = vec![usize::MAX; train.n_items];
        for (u, seq) in train.users.iter().enumerate() {
            // Sequences are in time order, so the first sighting from the end is the last.
            for (&item, &t) in seq.items.iter().zip(seq.ts).rev() {
                let i = item as usize;
                if last_user[i] != u {
                    last_user[i] = u;
                    weights[i] += decay(t);
                }
            }
        }
        Ok(PopRecent {
            weights: weights.into_iter().map(|w| w as f32).collect(),
        })
    }
}

impl Scorer for PopRecent {
    fn name(&self) -> &str {
        "pop-recent"
    }

    fn score(&self, _history: Seq<'_>, out: &mut [f32]) {
        out.copy_from_slice(&self.weights);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighs_each_pair_by_its_last_time() {
        let hl = 10;
        // User 0 saw item 0 at t=0 and again at t=20 (its last time), item 1 at t=10.
        let (a, ta) = ([0, 1, 0], [0, 10, 20]);
        // User 1 saw item 1 at t=20 = t_max.
        let (b, tb) = ([1], [20]);
        let train = TrainSet {
            n_items: 3,
            users: vec![Seq { items: &a, ts: &ta }, Seq { items: &b, ts: &tb }],
        };
        let model = PopRecent::fit(&train, hl).expect("valid half-life");
        let mut out = vec![0.0; 3];
        model.score(train.users[0], &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert!((out[1] - 1.5).abs() < 1e-6);
        assert_eq!(out[2], 0.0);
    }

    #[test]
    fn rejects_a_non_positive_half_life() {
        let train = TrainSet {
            n_items: 1,
            users: Vec::new(),
        };
        assert!(PopRecent::fit(&train, 0).is_err());
    }
}
