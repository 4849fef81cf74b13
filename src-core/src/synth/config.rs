//! `SynthConfig`: the parameters of the synthetic data set, their defaults and their
//! validation.

use crate::error::{Error, Result};
use crate::event::Timestamp;
use serde::{Deserialize, Serialize};

/// Most successors an item may have.
pub const MAX_SUCCESSORS: usize = 32;

/// Parameters of the synthetic data set; `SynthConfig::default()` is the demo data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    /// Number of users, ids `u0..u{users-1}`. Default 1,000.
    pub users: usize,
    /// Number of catalogue items, ids `i0..i{items-1}`; at least 2, at most `u32::MAX`.
    /// Default 500.
    pub items: usize,
    /// Seed of every random draw. Default 42.
    pub seed: u64,
    /// Number of categories, in `1..=items`. Default 12.
    pub categories: usize,
    /// Mean number of sessions per user (geometric, at least 1). Default 4.
    pub sessions_per_user: f64,
    /// Mean number of items a user reaches per session (geometric, at least 1). Default 6.
    pub session_len: f64,
    /// Start of the data, in ms since the Unix epoch. Default 2024-01-01T00:00:00Z.
    pub start_ts: Timestamp,
    /// Users' first sessions start uniformly within this many days after `start_ts`; later
    /// sessions may run past it. Default 30.
    pub span_days: f64,
    /// Mean gap between two sessions of a user, in hours (exponential, plus 30 minutes).
    /// Default 36.
    pub session_gap_hours: f64,
    /// Mean think time between two items of a session, in seconds (exponential, plus one
    /// second, after the previous item's dwell and funnel). Default 40.
    pub item_gap_secs: f64,
    /// Number of favourite categories per user, in `1..=categories`. Default 3.
    pub favourites: usize,
    /// Probability (per item, 0–1) that a user browses outside their favourites, picking a
    /// category by global popularity. Default 0.1.
    pub explore_prob: f64,
    /// Probability (per item after a session's first, 0–1) that the user goes on to one of
    /// the previous item's successors instead of picking by taste. Default 0.5.
    pub follow_prob: f64,
    /// Successors per item, in `1..items` and at most [`MAX_SUCCESSORS`]; the first is the
    /// most likely to be followed (weights `1/1, 1/2, 1/3, …`). Default 3.
    pub successors: usize,
    /// Probability (0–1) that a successor is in the same category as its item. Default 0.8.
    pub successor_same_category: f64,
    /// Zipf exponent of item popularity within a category (0 = uniform). Default 1.0.
    pub item_zipf: f64,
    /// Zipf exponent of category popularity (0 = uniform). Default 0.8.
    pub category_zipf: f64,
    /// Standard deviation of the random walk of a user's log-weights on their favourite
    /// categories, per item reached. Default 0.05.
    pub taste_drift: f64,
    /// Probability (per session after the first, 0–1) that a user swaps one favourite
    /// category for a new one. Default 0.1.
    pub favourite_switch_prob: f64,
    /// Whether a cart becomes a purchase by the item's own conversion rate
    /// ([`Generator::conversion`], hidden, the same for every user and unrelated to what
    /// draws clicks) instead of by the user's affinity, as clicks do. Default false. The
    /// purchase world: only a model's purchase head can tell what sells from what is
    /// clicked.
    ///
    /// [`Generator::conversion`]: super::Generator::conversion
    #[serde(default)]
    pub purchase_by_item: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            users: 1_000,
            items: 500,
            seed: 42,
            categories: 12,
            sessions_per_user: 4.0,
            session_len: 6.0,
            start_ts: 1_704_067_200_000,
            span_days: 30.0,
            session_gap_hours: 36.0,
            item_gap_secs: 40.0,
            favourites: 3,
            explore_prob: 0.1,
            follow_prob: 0.5,
            successors: 3,
            successor_same_category: 0.8,
            item_zipf: 1.0,
            category_zipf: 0.8,
            taste_drift: 0.05,
            favourite_switch_prob: 0.1,
            purchase_by_item: false,
        }
    }
}

impl SynthConfig {
    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        if self.users == 0 {
            return Err(Error::config("users", "must be at least 1"));
        }
        if self.items < 2 {
            return Err(Error::config(
                "items",
                format!("must be at least 2, got {}", self.items),
            ));
        }
        if self.items > u32::MAX as usize {
            return Err(Error::config(
                "items",
                format!(
                    "must be at most {} (dense u32 ids), got {}",
                    u32::MAX,
                    self.items
                ),
            ));
        }
        if self.categories == 0 || self.categories > self.items {
            return Err(Error::config(
                "categories",
                format!(
                    "must be in 1..={} (the number of items), got {}",
                    self.items, self.categories
                ),
            ));
        }
        if self.favourites == 0 || self.favourites > self.categories {
            return Err(Error::config(
                "favourites",
                format!(
                    "must be in 1..={} (the number of categories), got {}",
                    self.categories, self.favourites
                ),
            ));
        }
        let max_successors = MAX_SUCCESSORS.min(self.items - 1);
        if self.successors == 0 || self.successors > max_successors {
            return Err(Error::config(
                "successors",
                format!(
                    "must be in 1..={max_successors} (fewer than the items, at most {MAX_SUCCESSORS}), got {}",
                    self.successors
                ),
            ));
        }
        at_least("sessions_per_user", self.sessions_per_user, 1.0)?;
        at_least("session_len", self.session_len, 1.0)?;
        at_least("span_days", self.span_days, 0.0)?;
        at_least("session_gap_hours", self.session_gap_hours, 0.0)?;
        at_least("item_gap_secs", self.item_gap_secs, 0.0)?;
        at_least("item_zipf", self.item_zipf, 0.0)?;
        at_least("category_zipf", self.category_zipf, 0.0)?;
        at_least("taste_drift", self.taste_drift, 0.0)?;
        probability("explore_prob", self.explore_prob)?;
        probability("follow_prob", self.follow_prob)?;
        probability("successor_same_category", self.successor_same_category)?;
        probability("favourite_switch_prob", self.favourite_switch_prob)?;
        Ok(())
    }
}

fn at_least(field: &str, value: f64, min: f64) -> Result<()> {
    if value.is_finite() && value >= min {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be a finite number at least {min}, got {value}"),
        ))
    }
}

fn probability(field: &str, value: f64) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be a probability in 0..=1, got {value}"),
        ))
    }
}
