//! First-order sequential transitions: what people do *next* after the last few items,
//! the strongest simple signal on session-like data.

use super::sparse::SparseRows;
use super::{normalized_popularity, Scorer, TrainSet};
use crate::data::Seq;
use crate::event::ItemId;

/// Tunables of [`Markov`].
#[derive(Debug, Clone, PartialEq)]
pub struct MarkovConfig {
    /// Weight of the transitions out of the last, second-to-last and third-to-last
    /// history items. Default `[1.0, 0.5, 0.25]`.
    pub weights: [f32; 3],
    /// Weight of the distinct-user popularity, scaled into `[0, 1]`, added to every
    /// score: mostly a tie-breaker among items the transitions do not reach. Default
    /// `0.01` (best of 1e-6..0.03 on the validation splits of ml-100k, ml-1m, Beauty).
    pub pop_weight: f32,
}

impl Default for MarkovConfig {
    fn default() -> Self {
        MarkovConfig {
            weights: [1.0, 0.5, 0.25],
            pop_weight: 0.01,
        }
    }
}

/// `T[i][j]` = how often `i` was immediately followed by `j` in the training sequences,
/// row-normalised; `score(j) = Σ_k w_k · T[h_{n-k}][j] + pop_weight · pop(j)`.
#[derive(Debug, Clone)]
pub struct Markov {
    transitions: SparseRows,
    popularity: Vec<f32>,
    config: MarkovConfig,
}

impl Markov {
    /// Counts the consecutive pairs of every training sequence.
    pub fn fit(train: &TrainSet<'_>, config: MarkovConfig) -> Self {
        let mut pairs: Vec<(ItemId, ItemId)> = train
            .users
            .iter()
            .flat_map(|seq| seq.items.windows(2).map(|w| (w[0], w[1])))
            .collect();
        pairs.sort_unstable();

        let mut rows: Vec<(Vec<ItemId>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); train.n_items];
        for run in pairs.chunk_by(|a, b| a == b) {
            let (from, to) = run[0];
            let (cols, vals) = &mut rows[from as usize];
            cols.push(to);
            vals.push(run.len() as f32);
        }
        for (_, vals) in &mut rows {
            let total: f32 = vals.iter().sum();
            vals.iter_mut().for_each(|v| *v /= total);
        }
        let transitions = SparseRows::from_rows(rows);
        tracing::debug!(
            pairs = pairs.len(),
            nnz = transitions.nnz(),
            "markov transitions"
        );
        Markov {
            transitions,
            popularity: normalized_popularity(train),
            config,
        }
    }

    /// Transition entries kept, and the bytes they take.
    pub fn footprint(&self) -> (usize, usize) {
        (self.transitions.nnz(), self.transitions.bytes())
    }
}

impl Scorer for Markov {
    fn name(&self) -> &str {
        "markov"
    }

    fn score(&self, history: Seq<'_>, out: &mut [f32]) {
        for (o, &p) in out.iter_mut().zip(&self.popularity) {
            *o = self.config.pop_weight * p;
        }
        for (&item, &w) in history.items.iter().rev().zip(&self.config.weights) {
            self.transitions.add_row_into(item, w, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_weighted_transitions_of_the_last_items() {
        // 0→1 twice, 0→2 once, 1→2 once, 2→3 once.
        let (a, b, ts) = ([0, 1, 2, 3], [0, 1, 0, 2], [0; 4]);
        let train = TrainSet {
            n_items: 5,
            users: vec![Seq { items: &a, ts: &ts }, Seq { items: &b, ts: &ts }],
        };
        let config = MarkovConfig {
            weights: [1.0, 0.5, 0.25],
            pop_weight: 0.0,
        };
        let model = Markov::fit(&train, config);
        let (h, th) = ([3, 1, 0], [0; 3]);
        let mut out = vec![0.0; 5];
        model.score(Seq { items: &h, ts: &th }, &mut out);
        // Last item 0: T[0] = {1: 2/3, 2: 1/3}; then 1 (w 0.5): T[1] = {0: 1/2, 2: 1/2};
        // then 3 (w 0.25): no transitions.
        let expected = [0.25, 2.0 / 3.0, 1.0 / 3.0 + 0.25, 0.0, 0.0];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn popularity_breaks_ties() {
        let (a, b, ts) = ([0, 1], [2, 1], [0; 2]);
        let train = TrainSet {
            n_items: 3,
            users: vec![Seq { items: &a, ts: &ts }, Seq { items: &b, ts: &ts }],
        };
        let model = Markov::fit(&train, MarkovConfig::default());
        let mut out = vec![0.0; 3];
        model.score(
            Seq {
                items: &[],
                ts: &[],
            },
            &mut out,
        );
        assert!(out[1] > out[0] && out[0] > 0.0);
    }
}
