//! Cohorts of similar users, found by clustering (linfa k-means) random projections of
//! their item sets: a cheap taste-group model that also places brand-new users.

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

use super::{distinct_items, Scorer, TrainSet};
use crate::data::Seq;
use crate::error::{Error, Result};
use crate::event::ItemId;

/// Largest embedding width: each item's ±1 vector is the bits of one 64-bit hash.
const MAX_DIMS: usize = 64;

/// Tunables of [`Cohort`].
#[derive(Debug, Clone, PartialEq)]
pub struct CohortConfig {
    /// Width of the user embeddings, `1..=64`. Default 64.
    pub dims: usize,
    /// Number of cohorts (k-means clusters); fewer when there are fewer users. Default 16
    /// (8..32 were tried on the validation splits of ml-100k, ml-1m and Beauty).
    pub clusters: usize,
    /// Cap on k-means iterations. Default 50.
    pub max_iterations: u64,
    /// Seed of the item projections and of k-means. Default 42.
    pub seed: u64,
    /// Weight of the global distinct-user count added to the cohort's count. Default 0.05.
    pub pop_weight: f32,
}

impl Default for CohortConfig {
    fn default() -> Self {
        CohortConfig {
            dims: 64,
            clusters: 16,
            max_iterations: 50,
            seed: 42,
            pop_weight: 0.05,
        }
    }
}

/// `score(j)` = distinct users of the history's cohort who had `j`, plus `pop_weight`
/// times the global distinct-user count. A history joins the cohort whose centroid is
/// nearest to its embedding: the L2-normalised sum of its distinct items' random ±1
/// vectors (a sparse random projection of the item set).
#[derive(Debug, Clone)]
pub struct Cohort {
    dims: usize,
    seed: u64,
    /// `clusters × dims`, row-major.
    centroids: Vec<f32>,
    /// `clusters × n_items`, row-major: distinct users of each cohort per item.
    counts: Vec<f32>,
    popularity: Vec<f32>,
    pop_weight: f32,
    n_items: usize,
}

impl Cohort {
    /// Embeds every non-empty training user and clusters them.
    pub fn fit(train: &TrainSet<'_>, config: &CohortConfig) -> Result<Self> {
        if !(1..=MAX_DIMS).contains(&config.dims) {
            return Err(Error::config(
                "cohort dims",
                format!("must be in 1..={MAX_DIMS}, got {}", config.dims),
            ));
        }
        if config.clusters == 0 || config.max_iterations == 0 {
            return Err(Error::config(
                "cohort clusters/max_iterations",
                "must be positive",
            ));
        }
        let n_items = train.n_items;
        let dims = config.dims;
        let users: Vec<Vec<ItemId>> = train
            .users
            .iter()
            .map(|seq| distinct_items(seq.items))
            .filter(|items| !items.is_empty())
            .collect();
        let popularity: Vec<f32> = train.user_counts().iter().map(|&c| c as f32).collect();
        let mut model = Cohort {
            dims,
            seed: config.seed,
            centroids: Vec::new(),
            counts: Vec::new(),
            popularity,
            pop_weight: config.pop_weight,
            n_items,
        };
        if users.is_empty() {
            return Ok(model);
        }

        let mut records = Array2::<f64>::zeros((users.len(), dims));
        let mut buf = vec![0f32; dims];
        for (mut row, items) in records.rows_mut().into_iter().zip(&users) {
            model.embed(items, &mut buf);
            row.iter_mut()
                .zip(&buf)
                .for_each(|(r, &b)| *r = f64::from(b));
        }
        let clusters = config.clusters.min(users.len());
        let kmeans = KMeans::params_with_rng(clusters, Xoshiro256Plus::seed_from_u64(config.seed))
            .max_n_iterations(config.max_iterations)
            .tolerance(1e-4)
            .n_runs(1)
            .fit(&DatasetBase::from(records))
            .map_err(|e| Error::config("cohort k-means", e.to_string()))?;
        model.centroids = kmeans.centroids().iter().map(|&c| c as f32).collect();

        model.counts = vec![0f32; clusters * n_items];
        for items in &users {
            model.embed(items, &mut buf);
            let c = model.nearest(&buf);
            let row = &mut model.counts[c * n_items..(c + 1) * n_items];
            for &i in items {
                row[i as usize] += 1.0;
            }
        }
        tracing::debug!(users = users.len(), clusters, "cohort k-means");
        Ok(model)
    }

    /// Number of cohorts (0 when fitted on no data).
    pub fn n_clusters(&self) -> usize {
        self.centroids.len() / self.dims
    }

    /// The cohort of a history, `None` for an empty history or an unfitted model.
    pub fn cohort_of(&self, history: &[ItemId]) -> Option<usize> {
        let items = distinct_items(history);
        if items.is_empty() || self.n_clusters() == 0 {
            return None;
        }
        let mut buf = vec![0f32; self.dims];
        self.embed(&items, &mut buf);
        Some(self.nearest(&buf))
    }

    /// Writes the L2-normalised sum of the items' ±1 vectors into `out`.
    fn embed(&self, distinct: &[ItemId], out: &mut [f32]) {
        out.fill(0.0);
        for &item in distinct {
            let bits = splitmix64(self.seed ^ splitmix64(u64::from(item)));
            for (d, o) in out.iter_mut().enumerate() {
                *o += if bits >> d & 1 == 1 { 1.0 } else { -1.0 };
            }
        }
        let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            out.iter_mut().for_each(|x| *x /= norm);
        }
    }

    /// Index of the centroid nearest (L2) to `embedding`.
    fn nearest(&self, embedding: &[f32]) -> usize {
        self.centroids
            .chunks_exact(self.dims)
            .map(|c| {
                c.iter()
                    .zip(embedding)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
            })
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0, |(c, _)| c)
    }
}

impl Scorer for Cohort {
    fn name(&self) -> &str {
        "cohort"
    }

    fn score(&self, history: Seq<'_>, out: &mut [f32]) {
        match self.cohort_of(history.items) {
            Some(c) => {
                let counts = &self.counts[c * self.n_items..(c + 1) * self.n_items];
                for ((o, &n), &p) in out.iter_mut().zip(counts).zip(&self.popularity) {
                    *o = n + self.pop_weight * p;
                }
            }
            None => out.copy_from_slice(&self.popularity),
        }
    }
}

/// SplitMix64, a fixed, well-mixed hash of an item id into its projection signs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two taste groups over disjoint halves of an 8-item catalogue.
    fn two_groups() -> (Vec<Vec<ItemId>>, Vec<i64>) {
        let mut users = Vec::new();
        for u in 0..20u32 {
            let base = if u % 2 == 0 { 0 } else { 4 };
            users.push(vec![base + u % 3, base + (u + 1) % 3]);
        }
        (users, vec![0; 2])
    }

    #[test]
    fn groups_similar_users_and_places_new_ones() {
        let (users, ts) = two_groups();
        let train = TrainSet {
            n_items: 8,
            users: users.iter().map(|items| Seq { items, ts: &ts }).collect(),
        };
        let config = CohortConfig {
            clusters: 2,
            ..CohortConfig::default()
        };
        let model = Cohort::fit(&train, &config).expect("fits");
        assert_eq!(model.n_clusters(), 2);
        assert_eq!(model.cohort_of(&[0, 1]), model.cohort_of(&[1, 2]));
        assert_ne!(model.cohort_of(&[0, 1]), model.cohort_of(&[4, 5]));

        // A new user of the first group gets first-group items on top.
        let mut out = vec![0.0; 8];
        model.score(
            Seq {
                items: &[0],
                ts: &[0],
            },
            &mut out,
        );
        let best_other = out[4..].iter().copied().fold(f32::MIN, f32::max);
        assert!(out[1] > best_other && out[2] > best_other, "{out:?}");
    }

    #[test]
    fn is_deterministic_and_handles_empty_data() {
        let (users, ts) = two_groups();
        let train = TrainSet {
            n_items: 8,
            users: users.iter().map(|items| Seq { items, ts: &ts }).collect(),
        };
        let a = Cohort::fit(&train, &CohortConfig::default()).expect("fits");
        let b = Cohort::fit(&train, &CohortConfig::default()).expect("fits");
        assert_eq!(a.centroids, b.centroids);

        let empty = TrainSet {
            n_items: 3,
            users: vec![Seq {
                items: &[],
                ts: &[],
            }],
        };
        let model = Cohort::fit(&empty, &CohortConfig::default()).expect("fits");
        let mut out = vec![1.0; 3];
        model.score(
            Seq {
                items: &[1],
                ts: &[0],
            },
            &mut out,
        );
        assert_eq!(out, vec![0.0; 3]);
        let bad = CohortConfig {
            dims: 65,
            ..CohortConfig::default()
        };
        assert!(Cohort::fit(&empty, &bad).is_err());
    }
}
