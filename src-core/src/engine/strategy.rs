//! Strategies: the operator's knobs (blend weights and their bounds, exploration, filters,
//! the business reward, batching), validated field by field, and versioned in the store so
//! that a change applies to the next request, every version stays in the history, and a
//! rollback is one call.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{RecordSpace, Store};

/// Names of the blended sources, in the order of [`SourceWeights::to_array`].
pub const SOURCES: [&str; N_SOURCES] = ["seq", "like", "purchase", "itemknn", "markov", "pop"];
/// Number of blended sources.
pub const N_SOURCES: usize = 6;

/// One number per blended source: the attention model's three task outputs (`seq`: the
/// next-item probability relative to the user's best item, `like`, `purchase`) and the
/// baselines (`itemknn`, `markov` transitions, `pop`ularity).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceWeights {
    /// Attention model, next item.
    pub seq: f32,
    /// Attention model, like head.
    pub like: f32,
    /// Attention model, purchase head.
    pub purchase: f32,
    /// Item-kNN collaborative filtering.
    pub itemknn: f32,
    /// Sequential transitions over the last items.
    pub markov: f32,
    /// Popularity.
    pub pop: f32,
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
        }
    }
}

/// How much of each slate is spent exploring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Exploration {
    /// Always the best-scored items.
    None,
    /// Each slot is, with probability `epsilon`, a random candidate instead.
    Epsilon {
        /// Probability of a random candidate per slot, in `[0, 1]`.
        epsilon: f32,
    },
    /// Thompson-style: the blend weights of each request are drawn around the learned ones,
    /// with a spread of `scale / sqrt(1 + evidence)` per source.
    Thompson {
        /// Spread of the drawn weights at no evidence, in `[0, 10]`.
        scale: f32,
    },
}

/// Which items may be recommended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reward {
    /// A click (or view) on a recommended item.
    pub click: f32,
    /// Put in the cart.
    pub cart: f32,
    /// Bought.
    pub purchase: f32,
    /// Rated at or above the like threshold (4).
    pub like: f32,
    /// Explicitly skipped (usually 0 or negative).
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Batching {
    /// Most requests in one batch (1 disables batching).
    pub max_batch: usize,
    /// Longest a request waits for its batch to fill, in microseconds.
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Learning {
    /// Learn the blend weights online (false: the weights stay as set).
    pub adaptive: bool,
    /// FTRL learning rate (alpha).
    pub learning_rate: f32,
    /// Samples per FTRL update.
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

/// A complete strategy, as operators write it (JSON or TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Strategy {
    /// A label for people.
    pub name: String,
    /// Starting blend weights.
    pub weights: SourceWeights,
    /// Lowest weight the learner may set, per source.
    pub min_weights: SourceWeights,
    /// Highest weight the learner may set, per source.
    pub max_weights: SourceWeights,
    /// Sources whose weight the learner never moves.
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
    pub candidates: usize,
    /// Dynamic batching.
    pub batching: Batching,
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

fn finite(field: &str, v: f32) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be a finite number, got {v}"),
        ))
    }
}

/// The smallest FTRL learning rate a strategy may set: below it the learner's state
/// (weights divided by the rate) would leave the f32 range, and nothing would move.
pub const MIN_LEARNING_RATE: f32 = 1e-4;

impl Strategy {
    /// Parses a strategy from JSON, naming the offending field on error.
    pub fn from_json(text: &str) -> Result<Strategy> {
        let s: Strategy = serde_json::from_str(text)
            .map_err(|e| Error::config("strategy", format!("not a valid strategy: {e}")))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks every knob; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let (w, lo, hi) = (
            self.weights.to_array(),
            self.min_weights.to_array(),
            self.max_weights.to_array(),
        );
        for (j, name) in SOURCES.iter().enumerate() {
            finite(&format!("weights.{name}"), w[j])?;
            finite(&format!("min_weights.{name}"), lo[j])?;
            finite(&format!("max_weights.{name}"), hi[j])?;
            if lo[j] > hi[j] {
                return Err(Error::config(
                    format!("min_weights.{name}"),
                    format!("{} is above max_weights.{name} = {}", lo[j], hi[j]),
                ));
            }
            if w[j] < lo[j] || w[j] > hi[j] {
                return Err(Error::config(
                    format!("weights.{name}"),
                    format!("{} is outside its bounds [{}, {}]", w[j], lo[j], hi[j]),
                ));
            }
            if w[j].abs() > 1000.0 {
                return Err(Error::config(
                    format!("weights.{name}"),
                    "must be within [-1000, 1000]",
                ));
            }
        }
        for p in &self.pinned {
            if !SOURCES.contains(&p.as_str()) {
                return Err(Error::config(
                    "pinned",
                    format!("unknown source `{p}`; sources are {}", SOURCES.join(", ")),
                ));
            }
        }
        let l = &self.learning;
        if !(l.learning_rate.is_finite() && (MIN_LEARNING_RATE..=10.0).contains(&l.learning_rate)) {
            return Err(Error::config(
                "learning.learning_rate",
                format!(
                    "must be in [{MIN_LEARNING_RATE}, 10], got {}",
                    l.learning_rate
                ),
            ));
        }
        if !(1..=100_000).contains(&l.update_every) {
            return Err(Error::config(
                "learning.update_every",
                format!("must be in [1, 100000], got {}", l.update_every),
            ));
        }
        match self.exploration {
            Exploration::None => {}
            Exploration::Epsilon { epsilon } => {
                if !(0.0..=1.0).contains(&epsilon) {
                    return Err(Error::config(
                        "exploration.epsilon",
                        format!("must be in [0, 1], got {epsilon}"),
                    ));
                }
            }
            Exploration::Thompson { scale } => {
                if !(0.0..=10.0).contains(&scale) {
                    return Err(Error::config(
                        "exploration.scale",
                        format!("must be in [0, 10], got {scale}"),
                    ));
                }
            }
        }
        let r = &self.reward;
        for (name, v) in [
            ("click", r.click),
            ("cart", r.cart),
            ("purchase", r.purchase),
            ("like", r.like),
            ("skip", r.skip),
        ] {
            finite(&format!("reward.{name}"), v)?;
            if !(-1000.0..=1000.0).contains(&v) {
                return Err(Error::config(
                    format!("reward.{name}"),
                    format!("must be within [-1000, 1000], got {v}"),
                ));
            }
        }
        if !(1..=10_000).contains(&self.candidates) {
            return Err(Error::config(
                "candidates",
                format!("must be in [1, 10000], got {}", self.candidates),
            ));
        }
        if !(1..=4096).contains(&self.batching.max_batch) {
            return Err(Error::config(
                "batching.max_batch",
                format!("must be in [1, 4096], got {}", self.batching.max_batch),
            ));
        }
        if self.batching.max_queue_delay_us > 1_000_000 {
            return Err(Error::config(
                "batching.max_queue_delay_us",
                format!(
                    "must be at most 1000000 (1 s), got {}",
                    self.batching.max_queue_delay_us
                ),
            ));
        }
        if self.name.len() > 200 {
            return Err(Error::config("name", "must be at most 200 bytes"));
        }
        Ok(())
    }

    /// Whether source `j` (index in [`SOURCES`]) is pinned.
    pub fn is_pinned(&self, j: usize) -> bool {
        self.pinned.iter().any(|p| p == SOURCES[j])
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

/// One stored version of the strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyVersion {
    /// Version number, from 1, increasing.
    pub version: u64,
    /// When it was set (ms since the epoch).
    pub created_ms: i64,
    /// Why: `initial`, `set`, `rollback to N`, or `guard revert to N: <reason>`.
    pub note: String,
    /// Who set it: the name of the token that published it (`guard` for a guard's
    /// revert; empty for versions set by a host program or before tokens had names).
    #[serde(default)]
    pub author: String,
    /// The publisher's message.
    #[serde(default)]
    pub message: String,
    /// The version in force when this one was published (what the publisher edited).
    #[serde(default)]
    pub based_on: Option<u64>,
    /// The strategy.
    pub strategy: Strategy,
}

/// Who publishes a strategy version, why, and from which version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Publish {
    /// The publisher (a token's name).
    pub author: String,
    /// Why.
    pub message: String,
    /// The version the publisher edited; when set and no longer the version in force, the
    /// publish is refused with [`Error::Conflict`].
    pub base_version: Option<u64>,
}

const CURRENT: &[u8] = b"current";

fn version_key(v: u64) -> Vec<u8> {
    let mut k = b"v".to_vec();
    k.extend_from_slice(&v.to_be_bytes());
    k
}

/// The versioned strategies of a store.
#[derive(Debug)]
pub struct StrategyBook {
    store: Store,
    /// Serialises writers so versions are dense.
    lock: Mutex<()>,
}

impl StrategyBook {
    /// The book of `store`; writes `initial` as version 1 if the store has none.
    pub fn open(store: Store, initial: &Strategy) -> Result<StrategyBook> {
        let book = StrategyBook {
            store,
            lock: Mutex::new(()),
        };
        if book.current()?.is_none() {
            initial.validate()?;
            book.write(initial.clone(), "initial".into(), &Publish::default())?;
        }
        Ok(book)
    }

    /// The version in force, if any.
    pub fn current(&self) -> Result<Option<StrategyVersion>> {
        match self.current_version()? {
            Some(v) => self.get(v),
            None => Ok(None),
        }
    }

    /// The number of the version in force, if any.
    fn current_version(&self) -> Result<Option<u64>> {
        let Some(bytes) = self.store.get_record(RecordSpace::Strategy, CURRENT)? else {
            return Ok(None);
        };
        Ok(Some(u64::from_be_bytes(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| Error::config("strategy", "corrupt current-version record"))?,
        )))
    }

    /// One version.
    pub fn get(&self, version: u64) -> Result<Option<StrategyVersion>> {
        match self
            .store
            .get_record(RecordSpace::Strategy, &version_key(version))?
        {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// Every version, oldest first.
    pub fn history(&self) -> Result<Vec<StrategyVersion>> {
        self.store
            .records(RecordSpace::Strategy)?
            .into_iter()
            .filter(|(k, _)| k.first() == Some(&b'v'))
            .map(|(_, v)| Ok(serde_json::from_slice(&v)?))
            .collect()
    }

    /// Validates and stores `strategy` as the new current version (durable on return).
    pub fn set(&self, strategy: Strategy) -> Result<StrategyVersion> {
        self.publish(strategy, "set".into(), &Publish::default())
    }

    /// Validates and stores `strategy` as the new current version with its author and
    /// message, unless `by.base_version` is set and no longer current
    /// ([`Error::Conflict`], nothing written). `note` says what kind of change it is.
    pub fn publish(
        &self,
        strategy: Strategy,
        note: String,
        by: &Publish,
    ) -> Result<StrategyVersion> {
        strategy.validate()?;
        self.write(strategy, note, by)
    }

    /// Makes a copy of version `to` the new current version.
    pub fn rollback(&self, to: u64) -> Result<StrategyVersion> {
        self.rollback_by(to, &Publish::default())
    }

    /// [`StrategyBook::rollback`] with an author, a message and a base-version check.
    pub fn rollback_by(&self, to: u64, by: &Publish) -> Result<StrategyVersion> {
        let old = self.get(to)?.ok_or_else(|| {
            Error::config("version", format!("there is no strategy version {to}"))
        })?;
        self.write(old.strategy, format!("rollback to {to}"), by)
    }

    fn write(&self, strategy: Strategy, note: String, by: &Publish) -> Result<StrategyVersion> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let last = self
            .store
            .records(RecordSpace::Strategy)?
            .iter()
            .filter(|(k, _)| k.first() == Some(&b'v') && k.len() == 9)
            .filter_map(|(k, _)| k[1..].try_into().ok().map(u64::from_be_bytes))
            .max()
            .unwrap_or(0);
        let current = self.current_version()?;
        if let Some(base) = by.base_version {
            if current != Some(base) {
                return Err(Error::Conflict(format!(
                    "the change was based on strategy version {base}, but version {} is in force now; rebase it on the current version",
                    current.map_or_else(|| "none".into(), |v| v.to_string())
                )));
            }
        }
        let v = StrategyVersion {
            version: last + 1,
            created_ms: crate::store::now_ms(),
            note,
            author: by.author.clone(),
            message: by.message.clone(),
            based_on: current,
            strategy,
        };
        self.store.put_record(
            RecordSpace::Strategy,
            &version_key(v.version),
            &serde_json::to_vec(&v)?,
        )?;
        self.store
            .put_record_durable(RecordSpace::Strategy, CURRENT, &v.version.to_be_bytes())?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips() {
        let s = Strategy::default();
        s.validate().expect("valid");
        let json = serde_json::to_string(&s).expect("json");
        assert_eq!(Strategy::from_json(&json).expect("parse"), s);
    }

    #[test]
    fn bad_knobs_name_their_field() {
        let cases = [
            (
                r#"{"weights": {"seq": 1, "like": 0, "purchase": 0, "itemknn": 0, "markov": 0, "pop": 9}}"#,
                "weights.pop",
            ),
            (
                r#"{"exploration": {"mode": "epsilon", "epsilon": 1.5}}"#,
                "exploration.epsilon",
            ),
            (r#"{"batching": {"max_batch": 0}}"#, "batching.max_batch"),
            (r#"{"pinned": ["nope"]}"#, "pinned"),
            (r#"{"candidates": 0}"#, "candidates"),
            (
                r#"{"learning": {"learning_rate": -1}}"#,
                "learning.learning_rate",
            ),
            // Found by the service fuzzer: a subnormal rate overflowed the learner's state.
            (
                r#"{"learning": {"learning_rate": 1e-40}}"#,
                "learning.learning_rate",
            ),
            (r#"{"weightz": {}}"#, "weightz"),
            (r#"{"weights": {"seq": 1, "sneq": 2}}"#, "sneq"),
        ];
        for (json, field) in cases {
            let e = Strategy::from_json(json).expect_err(json).to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
    }

    #[test]
    fn bounds_clamp_and_pins_hold() {
        let s = Strategy {
            pinned: vec!["pop".into()],
            ..Strategy::default()
        };
        let b = s.bound([9.0, -1.0, 0.3, 0.4, 0.5, 3.0]);
        assert_eq!(b, [5.0, 0.0, 0.3, 0.4, 0.5, s.weights.pop]);
    }

    #[test]
    fn versions_history_and_rollback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Default::default()).expect("store");
        let book = StrategyBook::open(store.clone(), &Strategy::default()).expect("book");
        assert_eq!(book.current().expect("c").expect("some").version, 1);
        let mut s = Strategy::default();
        s.weights.pop = 1.0;
        let v2 = book.set(s.clone()).expect("set");
        assert_eq!(v2.version, 2);
        let bad = Strategy {
            candidates: 0,
            ..Strategy::default()
        };
        assert!(book.set(bad).is_err());
        assert_eq!(book.current().expect("c").expect("some").version, 2);
        let v3 = book.rollback(1).expect("rollback");
        assert_eq!(v3.version, 3);
        assert_eq!(v3.strategy, Strategy::default());
        assert!(book.rollback(99).is_err());
        assert_eq!(book.history().expect("h").len(), 3);
        drop(book);
        store.close().expect("close");
        drop(store);
        let store = Store::open(dir.path(), Default::default()).expect("reopen");
        let book = StrategyBook::open(store, &Strategy::default()).expect("book");
        assert_eq!(book.current().expect("c").expect("some").version, 3);
    }
}
