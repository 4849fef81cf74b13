//! Global popularity: the simplest yardstick and the fallback for users with no history.

use super::{Scorer, TrainSet};
use crate::data::Seq;

/// Scores every item by the number of distinct training users who interacted with it.
#[derive(Debug, Clone)]
pub struct Pop {
    counts: Vec<f32>,
}

impl Pop {
    /// Counts distinct users per item in `train`.
    pub fn fit(train: &TrainSet<'_>) -> Self {
        Pop {
            counts: train.user_counts().into_iter().map(|c| c as f32).collect(),
        }
    }

    /// The distinct-user count of every item.
    pub fn counts(&self) -> &[f32] {
        &self.counts
    }
}

impl Scorer for Pop {
    fn name(&self) -> &str {
        "pop"
    }

    fn score(&self, _history: Seq<'_>, out: &mut [f32]) {
        out.copy_from_slice(&self.counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_user_once_per_item() {
        let (a, b) = ([2, 0, 2, 2], [2, 1]);
        let ts = [0; 4];
        let train = TrainSet {
            n_items: 4,
            users: vec![
                Seq { items: &a, ts: &ts },
                Seq {
                    items: &b,
                    ts: &ts[..2],
                },
            ],
        };
        let pop = Pop::fit(&train);
        let mut out = vec![0.0; 4];
        pop.score(train.users[1], &mut out);
        assert_eq!(out, vec![1.0, 1.0, 2.0, 0.0]);
    }
}
