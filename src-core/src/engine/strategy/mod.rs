//! Strategies: the operator's knobs (blend weights and their bounds, exploration, filters,
//! the business reward, batching), validated field by field, and versioned in the store so
//! that a change applies to the next request, every version stays in the history, and a
//! rollback is one call.
//!
//! The knobs' types are here; their validation is in `validate.rs`, the versions in the
//! store in `book.rs`.

mod book;
#[cfg(test)]
mod tests;
mod validate;

use serde::{Deserialize, Serialize};

pub use book::{Publish, StrategyBook, StrategyVersion};
pub use validate::MIN_LEARNING_RATE;

/// Names of the blended sources, in the order of [`SourceWeights::to_array`].
pub const SOURCES: [&str; N_SOURCES] = [
    "seq", "like", "purchase", "itemknn", "markov", "pop", "text",
];
/// Number of blended sources.
pub const N_SOURCES: usize = 7;
/// Index of the text source in [`SOURCES`].
pub const TEXT: usize = 6;

/// One number per blended source: the attention model's three task outputs (`seq`: the
/// next-item probability relative to the user's best item, `like`, `purchase`), the
/// baselines (`itemknn`, `markov` transitions, `pop`ularity) and `text` (the cosine of
/// the user's text profile with the item's text vector, see [`crate::text`]).
///
/// `text` may be left out of a strategy written before the text source existed: it is
/// then 0 (in `weights`, `min_weights` and `max_weights` alike), so such a strategy
/// ranks as it did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Weights)]
pub struct SourceWeights {
    /// Attention model, next item.
    #[schema(minimum = -1000, maximum = 1000)]
    pub seq: f32,
    /// Attention model, like head.
    #[schema(minimum = -1000, maximum = 1000)]
    pub like: f32,
    /// Attention model, purchase head.
    #[schema(minimum = -1000, maximum = 1000)]
    pub purchase: f32,
    /// Item-kNN collaborative filtering.
    #[schema(minimum = -1000, maximum = 1000)]
    pub itemknn: f32,
    /// Sequential transitions over the last items.
    #[schema(minimum = -1000, maximum = 1000)]
    pub markov: f32,
    /// Popularity.
    #[schema(minimum = -1000, maximum = 1000)]
    pub pop: f32,
    /// The item's text against the user's text profile (0 when absent).
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub text: f32,
}

impl Default for SourceWeights {
    fn default() -> Self {
        SourceWeights {
            seq: 1.0,
            like: 0.2,
            purchase: 0.2,
            itemknn: 0.5,
            markov: 0.5,
            pop: 0.2,
            text: crate::text::DEFAULT_WEIGHT,
        }
    }
}

impl SourceWeights {
    /// All sources at `v`.
    pub fn splat(v: f32) -> Self {
        Self::from_array([v; N_SOURCES])
    }

    /// The weights in [`SOURCES`] order.
    pub fn to_array(&self) -> [f32; N_SOURCES] {
        [
            self.seq,
            self.like,
            self.purchase,
            self.itemknn,
            self.markov,
            self.pop,
            self.text,
        ]
    }

    /// Weights from an array in [`SOURCES`] order.
    pub fn from_array(a: [f32; N_SOURCES]) -> Self {
        SourceWeights {
            seq: a[0],
            like: a[1],
            purchase: a[2],
            itemknn: a[3],
            markov: a[4],
            pop: a[5],
            text: a[6],
        }
    }
}

/// How much of each slate is spent exploring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Exploration {
    /// Always the best-scored items.
    None,
    /// Each slot is, with probability `epsilon`, a random candidate instead.
    Epsilon {
        /// Probability of a random candidate per slot, in `[0, 1]`.
        #[schema(minimum = 0, maximum = 1)]
        epsilon: f32,
    },
    /// Thompson-style: the blend weights of each request are drawn around the learned ones,
    /// with a spread of `scale / sqrt(1 + evidence)` per source.
    Thompson {
        /// Spread of the drawn weights at no evidence, in `[0, 10]`.
        #[schema(minimum = 0, maximum = 10)]
        scale: f32,
    },
}

/// Which items may be recommended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// Leave out items the user has interacted with.
    pub exclude_seen: bool,
    /// When not empty, only items with at least one of these tags.
    pub include_tags: Vec<String>,
    /// Never items with any of these tags.
    pub exclude_tags: Vec<String>,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            exclude_seen: true,
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
        }
    }
}

/// The business value of each kind of feedback; what the learner maximises.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Reward {
    /// A click (or view) on a recommended item.
    #[schema(minimum = -1000, maximum = 1000)]
    pub click: f32,
    /// Put in the cart.
    #[schema(minimum = -1000, maximum = 1000)]
    pub cart: f32,
    /// Bought.
    #[schema(minimum = -1000, maximum = 1000)]
    pub purchase: f32,
    /// Rated at or above the like threshold (4).
    #[schema(minimum = -1000, maximum = 1000)]
    pub like: f32,
    /// Explicitly skipped (usually 0 or negative).
    #[schema(minimum = -1000, maximum = 1000)]
    pub skip: f32,
}

impl Default for Reward {
    fn default() -> Self {
        Reward {
            click: 1.0,
            cart: 2.0,
            purchase: 5.0,
            like: 1.0,
            skip: 0.0,
        }
    }
}

/// Knobs of the inference actor's dynamic batcher.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Batching {
    /// Most requests in one batch (1 disables batching).
    #[schema(minimum = 1, maximum = 4096)]
    pub max_batch: usize,
    /// Longest a request waits for its batch to fill, in microseconds.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub max_queue_delay_us: u64,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_batch: 16,
            max_queue_delay_us: 100,
        }
    }
}

/// How the online learner moves the blend weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Learning {
    /// Learn the blend weights online (false: the weights stay as set).
    pub adaptive: bool,
    /// FTRL learning rate (alpha).
    #[schema(minimum = 0.0001, maximum = 10)]
    pub learning_rate: f32,
    /// Samples per FTRL update.
    #[schema(minimum = 1, maximum = 100_000)]
    pub update_every: usize,
}

impl Default for Learning {
    fn default() -> Self {
        Learning {
            adaptive: true,
            learning_rate: 1.0,
            update_every: 32,
        }
    }
}

/// A complete strategy, as operators write it (JSON or TOML). Each weight must also lie
/// within its `[min_weights, max_weights]`, which the server checks (400).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Strategy {
    /// A label for people.
    #[schema(max_length = 200)]
    pub name: String,
    /// Starting blend weights.
    pub weights: SourceWeights,
    /// Lowest weight the learner may set, per source.
    pub min_weights: SourceWeights,
    /// Highest weight the learner may set, per source.
    pub max_weights: SourceWeights,
    /// Sources whose weight the learner never moves.
    #[schema(schema_with = pinned_schema)]
    pub pinned: Vec<String>,
    /// Online learning of the weights.
    pub learning: Learning,
    /// Exploration.
    pub exploration: Exploration,
    /// Filters.
    pub filters: Filters,
    /// Business reward of feedback.
    pub reward: Reward,
    /// Candidates drawn from each source before blending.
    #[schema(minimum = 1, maximum = 10_000)]
    pub candidates: usize,
    /// Dynamic batching.
    pub batching: Batching,
}

/// `pinned`: names of sources, each one of [`SOURCES`].
fn pinned_schema() -> utoipa::openapi::schema::Array {
    let source = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(SOURCES));
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(source)
        .build()
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            name: "default".into(),
            weights: SourceWeights::default(),
            min_weights: SourceWeights::splat(0.0),
            max_weights: SourceWeights::splat(5.0),
            pinned: Vec::new(),
            learning: Learning::default(),
            exploration: Exploration::None,
            filters: Filters::default(),
            reward: Reward::default(),
            candidates: 50,
            batching: Batching::default(),
        }
    }
}

impl Strategy {
    /// Whether source `j` (index in [`SOURCES`]) is pinned.
    pub fn is_pinned(&self, j: usize) -> bool {
        self.pinned.iter().any(|p| p == SOURCES[j])
    }

    /// Whether a request ranked with source `j` at weight `current` computes that
    /// source's feature: while it counts now or as set, and also at a weight of 0 while
    /// the learner may still raise it (not pinned, a positive `max_weights`). A feature
    /// left out whenever its weight is 0 would be 0 in every impression, so the learner
    /// would never see that it helps again and the weight could never come back.
    pub fn observes(&self, j: usize, current: f32) -> bool {
        current != 0.0
            || self.weights.to_array()[j] != 0.0
            || (self.max_weights.to_array()[j] > 0.0 && !self.is_pinned(j))
    }

    /// `w` clamped into this strategy's bounds, with pinned sources at their set weight.
    pub fn bound(&self, w: [f32; N_SOURCES]) -> [f32; N_SOURCES] {
        let (set, lo, hi) = (
            self.weights.to_array(),
            self.min_weights.to_array(),
            self.max_weights.to_array(),
        );
        std::array::from_fn(|j| {
            if self.is_pinned(j) || !w[j].is_finite() {
                set[j]
            } else {
                w[j].clamp(lo[j], hi[j])
            }
        })
    }
}
