//! Training settings derived from the data: what `attune train` uses for each tuning flag
//! left out, so that a first run needs no tuning. The rules come from the runs recorded
//! in docs/benchmarks.md (ml-100k, the ml-1m subset, Amazon Beauty) and what made each
//! work; every one is printed with its reason, and every flag overrides its rule.

use std::fmt::Write as _;

use crate::data::Dataset;

/// Below this many interactions a data set is small: the model sees few windows, so it
/// reads short windows with overlap (more, shorter training windows) and drops out more.
pub const SMALL_DATA: usize = 250_000;
/// From this many users on, validation (a full ranking per user) runs every other epoch.
pub const MANY_USERS: usize = 2_000;
/// When the users' validation targets are at least this share of the interactions, the
/// refit (which trains again with them) is worth its time.
pub const REFIT_SHARE: f64 = 0.05;
/// Epochs without a better validation figure before training stops.
pub const PATIENCE_EPOCHS: usize = 12;

/// What the rules look at.
#[derive(Debug, Clone, PartialEq)]
pub struct DataShape {
    pub users: usize,
    pub interactions: usize,
    /// Percentiles of the users' history lengths.
    pub p50: usize,
    pub p75: usize,
    pub p90: usize,
}

impl DataShape {
    pub fn of(data: &Dataset) -> DataShape {
        let mut lens: Vec<usize> = data.users.iter().map(|u| u.len()).collect();
        lens.sort_unstable();
        let at = |q: f64| {
            lens.get(((lens.len() as f64 * q) as usize).min(lens.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        DataShape {
            users: lens.len(),
            interactions: lens.iter().sum(),
            p50: at(0.5),
            p75: at(0.75),
            p90: at(0.9),
        }
    }

    /// Training windows per epoch with `max_len` and `stride` (as the trainer cuts them:
    /// one per user, plus one every `stride` positions back for longer users).
    fn windows(lens: impl Iterator<Item = usize>, max_len: usize, stride: usize) -> usize {
        lens.map(|n| {
            if stride == 0 || n <= max_len {
                1
            } else {
                1 + (n - max_len).div_ceil(stride)
            }
        })
        .sum()
    }
}

/// The settings the rules chose, with their reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// The data's shape the rules read.
    pub shape: DataShape,
    pub max_len: usize,
    pub window_stride: usize,
    pub dropout: f64,
    pub batch: usize,
    pub lr: f64,
    pub eval_every: usize,
    pub patience: usize,
    pub refit: bool,
    /// One line per setting: its value and why.
    pub why: Vec<String>,
}

/// The settings for `data`.
pub fn derive(data: &Dataset) -> Derived {
    let shape = DataShape::of(data);
    derive_from(&shape, data.users.iter().map(|u| u.len()))
}

/// The settings for a data set of this shape, whose users' history lengths are `lens`.
pub fn derive_from(shape: &DataShape, lens: impl Iterator<Item = usize>) -> Derived {
    let mut why = Vec::new();
    let small = shape.interactions < SMALL_DATA;
    let (max_len, window_stride, dropout) = if small {
        why.push(format!(
            "max_len 50, window stride 25, dropout 0.5: {} interactions (< {SMALL_DATA}) is small \
             data, so short overlapping windows give the model more to learn from and more dropout \
             keeps it from memorising them",
            shape.interactions
        ));
        (50, 25, 0.5)
    } else {
        let max_len = shape.p75.div_ceil(50).max(1) * 50;
        let max_len = max_len.clamp(50, 200);
        why.push(format!(
            "max_len {max_len}, window stride 0, dropout 0.2: {} interactions; a window covers \
             the history of 3 users in 4 (75th percentile length {}, rounded up to 50, at most 200)",
            shape.interactions, shape.p75
        ));
        (max_len, 0, 0.2)
    };
    let windows = DataShape::windows(lens, max_len, window_stride);
    // About a hundred steps an epoch: batches of a power of two between 32 and 128.
    let batch = (1usize << (windows / 100).max(1).ilog2()).clamp(32, 128);
    let lr = if batch <= 32 { 2e-3 } else { 1e-3 };
    why.push(format!(
        "batch {batch}, lr {lr:e}: {windows} training windows an epoch in {} steps (the power \
         of two at or below a hundredth of the windows, from 32 to 128; lr 2e-3 for batches \
         of 32, 1e-3 for larger ones)",
        windows.div_ceil(batch)
    ));
    let eval_every = if shape.users >= MANY_USERS { 2 } else { 1 };
    let patience = PATIENCE_EPOCHS.div_ceil(eval_every);
    why.push(format!(
        "validation every {eval_every} epoch(s), patience {patience}: {} users to rank \
         (every other epoch from {MANY_USERS}); training stops after {PATIENCE_EPOCHS} epochs \
         without a better validation NDCG@10",
        shape.users
    ));
    let share = shape.users as f64 / shape.interactions.max(1) as f64;
    let refit = share >= REFIT_SHARE;
    why.push(format!(
        "refit {}: the validation targets are {:.1}% of the interactions (refit from {:.0}%)",
        if refit { "on" } else { "off" },
        share * 100.0,
        REFIT_SHARE * 100.0
    ));
    Derived {
        shape: shape.clone(),
        max_len,
        window_stride,
        dropout,
        batch,
        lr,
        eval_every,
        patience,
        refit,
        why,
    }
}

impl Derived {
    /// The reasons, one per line, for people.
    pub fn explain(&self) -> String {
        let shape = &self.shape;
        let mut s = format!(
            "settings from the data ({} users, {} interactions, history length p50 {} / p75 {} / p90 {}):\n",
            shape.users, shape.interactions, shape.p50, shape.p75, shape.p90
        );
        for w in &self.why {
            let _ = writeln!(s, "  {w}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(users: usize, interactions: usize, p75: usize) -> DataShape {
        DataShape {
            users,
            interactions,
            p50: p75 / 2,
            p75,
            p90: p75 * 2,
        }
    }

    /// The settings the recorded runs were tuned to, from the shapes of their data sets
    /// (docs/benchmarks.md: ml-100k, the ml-1m subset, Amazon Beauty).
    #[test]
    fn the_rules_give_the_tuned_settings_of_the_reference_data() {
        let ml100k = derive_from(&shape(943, 100_000, 148), std::iter::repeat_n(106, 943));
        assert_eq!(
            (
                ml100k.max_len,
                ml100k.window_stride,
                ml100k.dropout,
                ml100k.batch
            ),
            (50, 25, 0.5, 32)
        );
        assert_eq!(
            (ml100k.lr, ml100k.eval_every, ml100k.refit),
            (2e-3, 1, false)
        );
        let ml1m = derive_from(&shape(2999, 487_650, 201), std::iter::repeat_n(163, 2999));
        assert_eq!(
            (ml1m.max_len, ml1m.window_stride, ml1m.dropout, ml1m.batch),
            (200, 0, 0.2, 32)
        );
        assert_eq!(
            (ml1m.lr, ml1m.eval_every, ml1m.patience, ml1m.refit),
            (2e-3, 2, 6, false)
        );
        let beauty = derive_from(&shape(22_363, 198_502, 9), std::iter::repeat_n(9, 22_363));
        assert_eq!(
            (
                beauty.max_len,
                beauty.window_stride,
                beauty.dropout,
                beauty.batch
            ),
            (50, 25, 0.5, 128)
        );
        assert_eq!(
            (beauty.lr, beauty.eval_every, beauty.patience, beauty.refit),
            (1e-3, 2, 6, true)
        );
        assert_eq!(beauty.why.len(), 4, "{:?}", beauty.why);
    }

    #[test]
    fn a_tiny_or_empty_data_set_still_gets_valid_settings() {
        for (users, inter) in [(0, 0), (1, 3), (5, 40)] {
            let d = derive_from(&shape(users, inter, 3), std::iter::repeat_n(3, users));
            assert!(d.max_len >= 50 && d.batch >= 32 && d.patience >= 1, "{d:?}");
        }
    }
}
