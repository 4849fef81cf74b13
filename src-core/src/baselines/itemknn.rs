//! Item-based collaborative filtering: items liked by the same people are recommended
//! together. Cosine similarity over distinct users; every neighbour kept on catalogues
//! below [`BOUND_FROM_ITEMS`] items, the [`LARGE_CATALOGUE_NEIGHBOURS`] most similar from
//! there (a million-item catalogue's full rows would not fit in memory: see
//! docs/benchmarks.md#a-1m-item-catalogue).

use rayon::prelude::*;

use super::sparse::SparseRows;
use super::{distinct_items, Scorer, TrainSet};
use crate::data::Seq;
use crate::event::ItemId;

/// Catalogues from this many items keep only each item's most similar neighbours.
pub const BOUND_FROM_ITEMS: usize = 100_000;
/// Neighbours kept per item on those catalogues.
pub const LARGE_CATALOGUE_NEIGHBOURS: usize = 200;

/// `sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| · |U_j|)` over distinct users, and a history's
/// score for `j` is the sum of `sim(h, j)` over its distinct items `h`.
///
/// Similarities are kept as sparse rows (an item's neighbours sorted by id, itself
/// excluded), so memory follows the co-occurrences rather than the catalogue squared.
#[derive(Debug, Clone)]
pub struct ItemKnn {
    sims: SparseRows,
}

impl ItemKnn {
    /// Computes the pairwise similarities of `train`, one row per item in parallel: every
    /// neighbour below [`BOUND_FROM_ITEMS`] items, the [`LARGE_CATALOGUE_NEIGHBOURS`] most
    /// similar per item from there.
    pub fn fit(train: &TrainSet<'_>) -> Self {
        let keep = if train.n_items < BOUND_FROM_ITEMS {
            usize::MAX
        } else {
            LARGE_CATALOGUE_NEIGHBOURS
        };
        Self::fit_bounded(train, keep)
    }

    /// [`ItemKnn::fit`] keeping at most `keep` neighbours per item, the most similar
    /// (ties: lower id).
    pub fn fit_bounded(train: &TrainSet<'_>, keep: usize) -> Self {
        let n_items = train.n_items;
        let user_items: Vec<Vec<ItemId>> = train
            .users
            .iter()
            .map(|seq| distinct_items(seq.items))
            .collect();
        let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); n_items];
        for (u, items) in user_items.iter().enumerate() {
            let u = u32::try_from(u).expect("fewer than 2^32 training users");
            for &i in items {
                item_users[i as usize].push(u);
            }
        }
        let norms: Vec<f64> = item_users.iter().map(|us| us.len() as f64).collect();

        let rows: Vec<(Vec<ItemId>, Vec<f32>)> = (0..n_items)
            .into_par_iter()
            .map_init(
                || (vec![0u32; n_items], Vec::<ItemId>::new()),
                |(counts, touched), i| {
                    for &u in &item_users[i] {
                        for &j in &user_items[u as usize] {
                            let c = &mut counts[j as usize];
                            if *c == 0 {
                                touched.push(j);
                            }
                            *c += 1;
                        }
                    }
                    touched.sort_unstable();
                    let mut cols = Vec::with_capacity(touched.len());
                    let mut vals = Vec::with_capacity(touched.len());
                    for j in touched.drain(..) {
                        let common = std::mem::take(&mut counts[j as usize]);
                        if j as usize == i {
                            continue;
                        }
                        cols.push(j);
                        vals.push(
                            (f64::from(common) / (norms[i] * norms[j as usize]).sqrt()) as f32,
                        );
                    }
                    if cols.len() > keep {
                        let mut order: Vec<usize> = (0..cols.len()).collect();
                        let best =
                            |a: &usize, b: &usize| vals[*b].total_cmp(&vals[*a]).then(a.cmp(b));
                        order.select_nth_unstable_by(keep - 1, best);
                        order.truncate(keep);
                        order.sort_unstable();
                        cols = order.iter().map(|&k| cols[k]).collect();
                        vals = order.iter().map(|&k| vals[k]).collect();
                    }
                    (cols, vals)
                },
            )
            .collect();
        let sims = SparseRows::from_rows(rows);
        tracing::debug!(n_items, nnz = sims.nnz(), "itemknn similarities");
        ItemKnn { sims }
    }

    /// Neighbour entries kept, and the bytes they take.
    pub fn footprint(&self) -> (usize, usize) {
        (self.sims.nnz(), self.sims.bytes())
    }

    /// The similarity of `i` and `j` (0 for `i == j` or items never seen together).
    pub fn similarity(&self, i: ItemId, j: ItemId) -> f32 {
        let (cols, vals) = self.sims.row(i);
        cols.binary_search(&j).map_or(0.0, |k| vals[k])
    }
}

impl Scorer for ItemKnn {
    fn name(&self) -> &str {
        "itemknn"
    }

    fn score(&self, history: Seq<'_>, out: &mut [f32]) {
        out.fill(0.0);
        for h in distinct_items(history.items) {
            self.sims.add_row_into(h, 1.0, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_over_distinct_users() {
        // Item 0: users {0,1}; item 1: users {0,1,2}; item 2: user {2}; item 3: nobody.
        let (a, b, c) = ([0, 1, 0], [1, 0], [1, 2]);
        let ts = [0; 3];
        let train = TrainSet {
            n_items: 4,
            users: vec![
                Seq { items: &a, ts: &ts },
                Seq {
                    items: &b,
                    ts: &ts[..2],
                },
                Seq {
                    items: &c,
                    ts: &ts[..2],
                },
            ],
        };
        let knn = ItemKnn::fit(&train);
        let s01 = 2.0 / (2.0f32 * 3.0).sqrt();
        let s12 = 1.0 / 3.0f32.sqrt();
        assert!((knn.similarity(0, 1) - s01).abs() < 1e-6);
        assert!((knn.similarity(1, 0) - s01).abs() < 1e-6);
        assert!((knn.similarity(1, 2) - s12).abs() < 1e-6);
        assert_eq!(knn.similarity(0, 2), 0.0);
        assert_eq!(knn.similarity(0, 0), 0.0);

        // A repeated history item counts once.
        let (h, th) = ([0, 2, 0], [0; 3]);
        let mut out = vec![0.0; 4];
        knn.score(Seq { items: &h, ts: &th }, &mut out);
        assert!((out[1] - (s01 + s12)).abs() < 1e-6);
        assert_eq!(out[3], 0.0);

        // Bounded to one neighbour: item 1 keeps its most similar, item 0.
        let one = ItemKnn::fit_bounded(&train, 1);
        assert_eq!(one.footprint().0, 3);
        assert!((one.similarity(1, 0) - s01).abs() < 1e-6);
        assert_eq!(one.similarity(1, 2), 0.0);
        assert!((one.similarity(2, 1) - s12).abs() < 1e-6);
    }
}
