//! Classic recommenders: the yardstick for every evaluation, fallbacks for cold users,
//! and scored sources in the engine's blend.
//!
//! Each is fitted on a [`TrainSet`] (every user's interactions before their held-out
//! target) and scores one history against every item of the catalogue.

use crate::data::Seq;
use crate::error::{Error, Result};

/// The training view of a data set: each user's time-ordered prefix.
#[derive(Debug, Clone)]
pub struct TrainSet<'a> {
    /// Catalogue size; item ids are `0..n_items`.
    pub n_items: usize,
    /// One sequence per user (users may have empty sequences).
    pub users: Vec<Seq<'a>>,
}

/// A fitted model that scores every item for one user's history.
pub trait Scorer: Send + Sync {
    /// The model's name as given to `attune eval --model`.
    fn name(&self) -> &str;

    /// Writes a score for every item into `out` (`out.len() == n_items`); higher is better.
    fn score(&self, history: Seq<'_>, out: &mut [f32]);
}

/// Names of the models [`fit`] knows.
pub const MODEL_NAMES: &[&str] = &[];

/// Fits the model called `name` on `train`.
pub fn fit(name: &str, _train: &TrainSet<'_>) -> Result<Box<dyn Scorer>> {
    Err(Error::UnknownModel {
        name: name.to_owned(),
        known: MODEL_NAMES.join(", "),
    })
}
