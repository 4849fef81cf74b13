//! Classic recommenders: the yardstick for every evaluation, fallbacks for cold users,
//! and scored sources in the engine's blend.
//!
//! Each is fitted on a [`TrainSet`] (every user's interactions before their held-out
//! target) and scores one history against every item of the catalogue. New model kinds
//! plug in by implementing [`Scorer`]; the evaluation harness only sees `&dyn Scorer`.

mod cohort;
mod itemknn;
mod markov;
mod pop;
mod pop_recent;
mod sparse;

pub use cohort::{Cohort, CohortConfig};
pub use itemknn::ItemKnn;
pub use markov::{Markov, MarkovConfig};
pub use pop::Pop;
pub use pop_recent::{PopRecent, DEFAULT_HALF_LIFE_MS};

use crate::data::{Dataset, Seq};
use crate::error::{Error, Result};
use crate::event::{ItemId, Timestamp};

/// The training view of a data set: each user's time-ordered prefix.
#[derive(Debug, Clone)]
pub struct TrainSet<'a> {
    /// Catalogue size; item ids are `0..n_items`.
    pub n_items: usize,
    /// One sequence per user (users may have empty sequences).
    pub users: Vec<Seq<'a>>,
}

impl<'a> TrainSet<'a> {
    /// Every interaction of every user of `dataset`, for fitting a model to serve rather
    /// than to evaluate (the evaluation builds its own, see [`crate::eval::Holdout`]).
    pub fn from_dataset(dataset: &'a Dataset) -> Self {
        TrainSet {
            n_items: dataset.n_items(),
            users: dataset.users.iter().map(|u| u.prefix(u.len())).collect(),
        }
    }

    /// The latest timestamp of any training interaction, `None` when there is none.
    pub fn max_ts(&self) -> Option<Timestamp> {
        self.users
            .iter()
            .filter_map(|s| s.ts.iter().copied().max())
            .max()
    }

    /// Number of distinct users per item (the popularity of the design brief).
    pub fn user_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.n_items];
        let mut last_user = vec![usize::MAX; self.n_items];
        for (u, seq) in self.users.iter().enumerate() {
            for &i in seq.items {
                let i = i as usize;
                if last_user[i] != u {
                    last_user[i] = u;
                    counts[i] += 1;
                }
            }
        }
        counts
    }
}

/// A fitted model that scores every item for one user's history.
pub trait Scorer: Send + Sync {
    /// The model's name as given to `attune eval --model`.
    fn name(&self) -> &str;

    /// Writes a score for every item into `out` (`out.len() == n_items`); higher is better.
    fn score(&self, history: Seq<'_>, out: &mut [f32]);

    /// Scores several histories into `out`, one row of `n_items` per history (row-major).
    /// Models that gain from batching (the attention model) override it; it is the one
    /// scoring path that can fail (a forward pass on a device).
    fn score_batch(&self, histories: &[Seq<'_>], out: &mut [f32]) -> Result<()> {
        let n = out.len() / histories.len().max(1);
        for (h, row) in histories.iter().zip(out.chunks_mut(n)) {
            self.score(*h, row);
        }
        Ok(())
    }
}

/// Names of the models [`fit`] knows.
pub const MODEL_NAMES: &[&str] = &["pop", "pop-recent", "itemknn", "markov", "cohort"];

/// Fits the model called `name` on `train`, with its default configuration.
pub fn fit(name: &str, train: &TrainSet<'_>) -> Result<Box<dyn Scorer>> {
    Ok(match name {
        "pop" => Box::new(Pop::fit(train)),
        "pop-recent" => Box::new(PopRecent::fit(train, DEFAULT_HALF_LIFE_MS)?),
        "itemknn" => Box::new(ItemKnn::fit(train)),
        "markov" => Box::new(Markov::fit(train, MarkovConfig::default())),
        "cohort" => Box::new(Cohort::fit(train, &CohortConfig::default())?),
        _ => {
            return Err(Error::UnknownModel {
                name: name.to_owned(),
                known: MODEL_NAMES.join(", "),
            })
        }
    })
}

/// The distinct items of a sequence, sorted by id.
fn distinct_items(items: &[ItemId]) -> Vec<ItemId> {
    let mut distinct = items.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
}

/// Distinct-user popularity scaled into `[0, 1]` (all zeros when nothing was seen).
fn normalized_popularity(train: &TrainSet<'_>) -> Vec<f32> {
    let counts = train.user_counts();
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f32;
    counts.iter().map(|&c| c as f32 / max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_knows_every_listed_name() {
        let items = [0, 1, 2, 1];
        let ts = [1, 2, 3, 4];
        let train = TrainSet {
            n_items: 3,
            users: vec![Seq {
                items: &items,
                ts: &ts,
            }],
        };
        for name in MODEL_NAMES {
            let model = fit(name, &train).expect("listed models fit");
            assert_eq!(model.name(), *name);
            let mut out = vec![f32::NAN; 3];
            model.score(train.users[0], &mut out);
            assert!(out.iter().all(|s| s.is_finite()), "{name}: {out:?}");
        }
    }

    #[test]
    fn fit_rejects_unknown_names() {
        let train = TrainSet {
            n_items: 0,
            users: Vec::new(),
        };
        let err = fit("nope", &train).err().expect("unknown model");
        assert!(matches!(err, Error::UnknownModel { .. }));
        assert!(err.to_string().contains("itemknn"));
    }

    #[test]
    fn user_counts_are_distinct_users() {
        let (a, b) = ([0, 1, 0], [0]);
        let ts = [0, 0, 0];
        let train = TrainSet {
            n_items: 3,
            users: vec![
                Seq { items: &a, ts: &ts },
                Seq {
                    items: &b,
                    ts: &ts[..1],
                },
            ],
        };
        assert_eq!(train.user_counts(), vec![2, 1, 0]);
        assert_eq!(train.max_ts(), Some(0));
    }
}
