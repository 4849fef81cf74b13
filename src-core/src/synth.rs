//! Synthetic data: a catalogue and users with drifting tastes and sequential habits.
//!
//! Attune ships without a data set, so this module is its embedded default data: the demo,
//! the tests and the benchmarks all draw from it. It is deterministic (same config, same
//! events and items), scales from a handful of users to 1,000,000 users × 1,000,000 items
//! with memory in O(items), and simulates every user on their own random stream, so users
//! can be generated in any order, in parallel, or streamed.
//!
//! The data carries signal a recommender can learn, layered so that each stronger model wins:
//!
//! * **popularity** beats random: items are Zipf-popular within their category and
//!   categories are Zipf-popular across the catalogue;
//! * **taste** beats popularity: each user keeps to a few favourite categories (drifting
//!   slowly, and now and then swapping one), and engages more with items that match;
//! * **sequence** beats both: every item has a few successors (a series, a complementary
//!   product, mostly in the same category) that users move to next with probability
//!   [`SynthConfig::follow_prob`].
//!
//! Each item a user reaches yields a funnel: a view (with dwell), then maybe a click (or,
//! for off-taste items, maybe a skip), a cart, a purchase, and sometimes a rating; each step
//! is likelier the better the item matches the user's current taste. Impressions are never
//! generated: they come from the engine's own recommendations.

use crate::error::{Error, Result};
use crate::event::{Action, Event, Item, RawEvent, Timestamp};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SECOND_MS: f64 = 1_000.0;
const HOUR_MS: f64 = 3_600_000.0;
const DAY_MS: f64 = 86_400_000.0;

/// Most successors an item may have.
pub const MAX_SUCCESSORS: usize = 32;

/// Shortest gap between two sessions of a user, in ms (on top of the exponential gap).
const MIN_SESSION_GAP_MS: f64 = 30.0 * 60.0 * SECOND_MS;
/// Shortest think time between two items of a session, in ms.
const MIN_ITEM_GAP_MS: f64 = SECOND_MS;
/// Median view dwell for an item of zero affinity, in ms; it triples at full affinity.
const DWELL_MEDIAN_MS: f64 = 8_000.0;
/// Spread of the log-normal dwell (sd of its log).
const DWELL_LOG_SD: f64 = 0.7;
/// Bounds of a view's dwell, in ms.
const DWELL_RANGE_MS: (f64, f64) = (300.0, 600_000.0);
/// Mean delays between the funnel steps click→cart, cart→purchase, purchase→rating, in ms.
const CART_DELAY_MS: f64 = 20_000.0;
const PURCHASE_DELAY_MS: f64 = 60_000.0;
const RATING_DELAY_MS: f64 = 30_000.0;
/// Probability that a purchase is followed by a rating.
const RATING_PROB: f64 = 0.5;
/// Share of an item's affinity that comes from the user's taste for its category; the rest
/// is the item's own quality, the same for every user.
const TASTE_SHARE: f64 = 0.8;
/// Skew of category sizes: category `c` gets items in proportion to `1 / (c + 1)^skew`.
const CATEGORY_SIZE_SKEW: f64 = 0.5;
/// Spread of prices around their category's base price (sd of the log).
const PRICE_LOG_SD: f64 = 0.5;
/// Bound on the log-weight of a favourite category, so that long drifts stay tame.
const MAX_LOG_WEIGHT: f64 = 4.0;
/// Attempts at drawing a fresh value by rejection before falling back to a scan.
const REJECTION_TRIES: usize = 16;

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

/// Category archetypes: tag, the word that ends item titles, base price in currency units.
/// Beyond this list, names repeat with a numeric suffix (`books-2`).
const CATEGORY_ARCHETYPES: [(&str, &str, f64); 24] = [
    ("books", "Novel", 14.0),
    ("outerwear", "Jacket", 89.0),
    ("music", "Album", 11.0),
    ("footwear", "Sneaker", 69.0),
    ("films", "Film", 9.0),
    ("games", "Game", 39.0),
    ("kitchen", "Skillet", 35.0),
    ("electronics", "Headphones", 129.0),
    ("home", "Lamp", 45.0),
    ("beauty", "Serum", 22.0),
    ("sports", "Racket", 59.0),
    ("outdoor", "Tent", 149.0),
    ("toys", "Puzzle", 19.0),
    ("garden", "Planter", 24.0),
    ("office", "Notebook", 8.0),
    ("pets", "Leash", 16.0),
    ("grocery", "Coffee", 12.0),
    ("jewellery", "Ring", 79.0),
    ("bags", "Backpack", 55.0),
    ("audio", "Speaker", 99.0),
    ("art", "Print", 29.0),
    ("baby", "Blanket", 27.0),
    ("tools", "Drill", 75.0),
    ("travel", "Suitcase", 119.0),
];

const ADJECTIVES: [&str; 32] = [
    "Crimson", "Silver", "Quiet", "Golden", "Wild", "Urban", "Midnight", "Amber", "Coastal",
    "Nordic", "Velvet", "Rustic", "Bright", "Hidden", "Swift", "Lunar", "Solar", "Misty", "Copper",
    "Emerald", "Ivory", "Scarlet", "Cosmic", "Gentle", "Bold", "Classic", "Modern", "Vintage",
    "Electric", "Frosted", "Sunny", "Stormy",
];

const NOUNS: [&str; 32] = [
    "Trail", "River", "Harbor", "Summit", "Forest", "Echo", "Meadow", "Canyon", "Atlas", "Horizon",
    "Ember", "Willow", "Falcon", "Orchard", "Lantern", "Compass", "Voyage", "Garden", "Island",
    "Cascade", "Pioneer", "Quartz", "Ridge", "Saga", "Tide", "Valley", "Breeze", "Anchor",
    "Beacon", "Cedar", "Drift", "Fable",
];

const SUB_TAGS: [&str; 6] = ["new", "sale", "eco", "premium", "classic", "limited"];

/// A category of the catalogue.
struct Category {
    /// Unique tag, e.g. `books` or `books-2`.
    tag: String,
    /// The word that ends item titles, e.g. `Novel`.
    word: &'static str,
}

/// The synthetic catalogue and the simulator of its users.
///
/// Holds only per-item structure (category, price, successors, popularity order): memory is
/// O(items), about 30 bytes an item; users are simulated on demand by
/// [`Generator::user_events`] and nothing is kept about them.
pub struct Generator {
    cfg: SynthConfig,
    categories: Vec<Category>,
    /// Cumulative popularity weights of the categories.
    category_cdf: Vec<f64>,
    /// Category of each item.
    item_category: Vec<u32>,
    /// Items grouped by category (`members[offsets[c]..offsets[c + 1]]`), each group in
    /// descending popularity.
    members: Vec<u32>,
    offsets: Vec<u32>,
    /// `zipf_prefix[r]` = Σ_{k ≤ r} 1/(k+1)^item_zipf, shared by all categories.
    zipf_prefix: Vec<f64>,
    /// `successors[i * k..(i + 1) * k]` are item `i`'s successors, likeliest first.
    successors: Vec<u32>,
    /// Cumulative weights of following the 1st, 2nd, … successor.
    successor_cdf: Vec<f64>,
    /// Price of each item, in currency units (cents precision).
    prices: Vec<f32>,
    /// Salts of the per-user streams and of the per-item hashes.
    user_salt: u64,
    item_salt: u64,
}

impl Generator {
    /// Validates `cfg` and builds the catalogue: O(items) time and memory.
    pub fn new(cfg: SynthConfig) -> Result<Self> {
        cfg.validate()?;
        let started = std::time::Instant::now();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix64(cfg.seed ^ 0xCA7A_1065));
        let n_items = cfg.items;
        let n_cats = cfg.categories;

        let categories = (0..n_cats)
            .map(|c| {
                let (tag, word, _) = CATEGORY_ARCHETYPES[c % CATEGORY_ARCHETYPES.len()];
                let round = c / CATEGORY_ARCHETYPES.len();
                let tag = if round == 0 {
                    tag.to_string()
                } else {
                    format!("{tag}-{}", round + 1)
                };
                Category { tag, word }
            })
            .collect();
        let category_cdf = cumulative((0..n_cats).map(|c| zipf_weight(c, cfg.category_zipf)));

        // Every category gets one item, the rest go by size weight; then shuffle so ids say
        // nothing about categories.
        let size_cdf = cumulative((0..n_cats).map(|c| zipf_weight(c, CATEGORY_SIZE_SKEW)));
        let mut item_category: Vec<u32> = (0..n_items)
            .map(|i| {
                if i < n_cats {
                    i as u32
                } else {
                    sample_cdf(&size_cdf, &mut rng) as u32
                }
            })
            .collect();
        shuffle(&mut item_category, &mut rng);

        // Counting sort into groups, then shuffle each group: its order is popularity rank.
        let mut offsets = vec![0u32; n_cats + 1];
        for &c in &item_category {
            offsets[c as usize + 1] += 1;
        }
        for c in 0..n_cats {
            offsets[c + 1] += offsets[c];
        }
        let mut fill = offsets.clone();
        let mut members = vec![0u32; n_items];
        for (i, &c) in item_category.iter().enumerate() {
            members[fill[c as usize] as usize] = i as u32;
            fill[c as usize] += 1;
        }
        for c in 0..n_cats {
            shuffle(
                &mut members[offsets[c] as usize..offsets[c + 1] as usize],
                &mut rng,
            );
        }
        let largest = (0..n_cats)
            .map(|c| (offsets[c + 1] - offsets[c]) as usize)
            .max()
            .unwrap_or(1);
        let zipf_prefix = cumulative((0..largest).map(|r| zipf_weight(r, cfg.item_zipf)));

        let prices = item_category
            .iter()
            .map(|&c| {
                let base = CATEGORY_ARCHETYPES[c as usize % CATEGORY_ARCHETYPES.len()].2;
                let price = base * (PRICE_LOG_SD * gaussian(&mut rng)).exp();
                ((price * 100.0).round() / 100.0).max(0.99) as f32
            })
            .collect();

        let mut generator = Generator {
            categories,
            category_cdf,
            item_category,
            members,
            offsets,
            zipf_prefix,
            successors: Vec::new(),
            successor_cdf: cumulative((0..cfg.successors).map(|k| 1.0 / (k + 1) as f64)),
            prices,
            user_salt: splitmix64(cfg.seed ^ 0x05E5_5105),
            item_salt: splitmix64(cfg.seed ^ 0x17E4_5A17),
            cfg,
        };
        generator.successors = generator.draw_successors(&mut rng);
        tracing::debug!(
            items = n_items,
            categories = n_cats,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "synthetic catalogue built"
        );
        Ok(generator)
    }

    /// The configuration the generator was built from.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// The catalogue, in id order: id `i{n}`, a title such as "Crimson Trail Jacket", tags
    /// `[category, optional sub-tag]`, attrs `price` (currency units, two decimals) and
    /// `category`.
    pub fn items(&self) -> impl Iterator<Item = Item> + '_ {
        (0..self.cfg.items).map(|i| self.item(i))
    }

    /// The successors of `item` (dense index), likeliest first: the ground truth of the
    /// sequential structure, for tests and benchmarks. Panics if `item >= items`.
    pub fn successors(&self, item: usize) -> &[u32] {
        let k = self.cfg.successors;
        &self.successors[item * k..(item + 1) * k]
    }

    /// The category index (into `0..categories`) of `item`. Panics if `item >= items`.
    pub fn category_of(&self, item: usize) -> usize {
        self.item_category[item] as usize
    }

    /// All events of user `user` (id `u{user}`), in time order (timestamps in ms, strictly
    /// increasing).
    ///
    /// Depends only on the seed, the behaviour parameters and `user`, not on other users nor
    /// on [`SynthConfig::users`]: users can be generated in parallel or streamed.
    pub fn user_events(&self, user: usize) -> Vec<RawEvent> {
        let cfg = &self.cfg;
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(splitmix64(self.user_salt ^ splitmix64(user as u64)));
        let user_id = format!("u{user}");
        let mut taste = Taste::new(self, &mut rng);
        let sessions = geometric(&mut rng, cfg.sessions_per_user);
        let mut events = Vec::with_capacity(sessions * (cfg.session_len.ceil() as usize) * 3);

        let mut t = cfg
            .start_ts
            .saturating_add((rng.gen::<f64>() * cfg.span_days * DAY_MS) as i64);
        for session in 0..sessions {
            if session > 0 {
                let gap =
                    MIN_SESSION_GAP_MS + exponential(&mut rng, cfg.session_gap_hours * HOUR_MS);
                t = t.saturating_add(gap as i64);
                if rng.gen::<f64>() < cfg.favourite_switch_prob {
                    taste.switch_favourite(self, &mut rng);
                }
            }
            let mut previous: Option<u32> = None;
            for _ in 0..geometric(&mut rng, cfg.session_len) {
                let item = match previous {
                    Some(p) if rng.gen::<f64>() < cfg.follow_prob => {
                        self.pick_successor(p, &mut rng)
                    }
                    _ => self.pick_by_taste(&taste, previous, &mut rng),
                };
                let affinity = taste.affinity(self, item);
                t = self.emit_funnel(&user_id, item, affinity, t, &mut rng, &mut events);
                taste.drift(cfg.taste_drift, &mut rng);
                previous = Some(item);
            }
        }
        events
    }

    fn item(&self, i: usize) -> Item {
        let h = self.item_hash(i);
        let category = &self.categories[self.item_category[i] as usize];
        let adjective = ADJECTIVES[(h % ADJECTIVES.len() as u64) as usize];
        let noun = NOUNS[((h >> 16) % NOUNS.len() as u64) as usize];
        let mut tags = vec![category.tag.clone()];
        if (h >> 32) & 1 == 1 {
            tags.push(SUB_TAGS[((h >> 40) % SUB_TAGS.len() as u64) as usize].to_string());
        }
        let attrs = BTreeMap::from([
            ("price".to_string(), format!("{:.2}", self.prices[i])),
            ("category".to_string(), category.tag.clone()),
        ]);
        Item {
            id: format!("i{i}"),
            title: format!("{adjective} {noun} {}", category.word),
            tags,
            attrs,
        }
    }

    fn item_hash(&self, i: usize) -> u64 {
        splitmix64(self.item_salt ^ splitmix64(i as u64))
    }

    /// The item's own quality in [0, 1), the same for every user.
    pub fn quality(&self, item: u32) -> f64 {
        unit(splitmix64(self.item_hash(item as usize)))
    }

    fn category_size(&self, c: usize) -> usize {
        (self.offsets[c + 1] - self.offsets[c]) as usize
    }

    fn sample_category(&self, rng: &mut impl Rng) -> usize {
        sample_cdf(&self.category_cdf, rng)
    }

    /// A Zipf-popular item of category `c`.
    fn sample_in_category(&self, c: usize, rng: &mut impl Rng) -> u32 {
        let rank = sample_cdf(&self.zipf_prefix[..self.category_size(c)], rng);
        self.members[self.offsets[c] as usize + rank]
    }

    fn draw_successors(&self, rng: &mut impl Rng) -> Vec<u32> {
        let k = self.cfg.successors;
        let mut out = Vec::with_capacity(self.cfg.items * k);
        for i in 0..self.cfg.items as u32 {
            let start = out.len();
            let c = self.item_category[i as usize] as usize;
            for _ in 0..k {
                let taken = |x: u32, out: &[u32]| x == i || out[start..].contains(&x);
                let same = self.category_size(c) > 1
                    && rng.gen::<f64>() < self.cfg.successor_same_category;
                let mut pick = None;
                for _ in 0..REJECTION_TRIES {
                    // Uniform within the category, so successors are not just the best sellers.
                    let x = if same {
                        let group =
                            &self.members[self.offsets[c] as usize..self.offsets[c + 1] as usize];
                        group[rng.gen_range(0..group.len())]
                    } else {
                        let other = self.sample_category(rng);
                        self.sample_in_category(other, rng)
                    };
                    if !taken(x, &out) {
                        pick = Some(x);
                        break;
                    }
                }
                // Small catalogues: scan on from a random item; `successors < items` ensures a
                // free one exists.
                let x = pick.unwrap_or_else(|| {
                    let n = self.cfg.items as u32;
                    let from = rng.gen_range(0..n);
                    (0..n)
                        .map(|d| (from + d) % n)
                        .find(|&x| !taken(x, &out))
                        .unwrap_or(from)
                });
                out.push(x);
            }
        }
        out
    }

    fn pick_successor(&self, previous: u32, rng: &mut impl Rng) -> u32 {
        self.successors(previous as usize)[sample_cdf(&self.successor_cdf, rng)]
    }

    fn pick_by_taste(&self, taste: &Taste, previous: Option<u32>, rng: &mut impl Rng) -> u32 {
        let c = taste.sample_category(self, rng);
        let item = self.sample_in_category(c, rng);
        if previous == Some(item) {
            // Reaching the same item twice in a row is rare; one redraw keeps it so.
            self.sample_in_category(c, rng)
        } else {
            item
        }
    }

    /// Emits the events of one item reached at `t` and returns when the next item is reached.
    fn emit_funnel(
        &self,
        user: &str,
        item: u32,
        affinity: f64,
        t: Timestamp,
        rng: &mut impl Rng,
        out: &mut Vec<RawEvent>,
    ) -> Timestamp {
        let id = format!("i{item}");
        let price = Some(self.prices[item as usize]);
        let a = affinity;
        let mut push = |ts: Timestamp, action: Action<String>| {
            out.push(Event {
                user: user.to_string(),
                ts,
                action,
            })
        };

        let dwell = (DWELL_MEDIAN_MS * (1.0 + 2.0 * a) * (DWELL_LOG_SD * gaussian(rng)).exp())
            .clamp(DWELL_RANGE_MS.0, DWELL_RANGE_MS.1);
        push(
            t,
            Action::View {
                item: id.clone(),
                dwell_ms: Some(dwell as u32),
            },
        );
        let mut last = t;
        if rng.gen::<f64>() < 0.05 + 0.75 * a {
            last += 1 + (dwell * rng.gen_range(0.3..1.0)) as i64;
            push(last, Action::Click { item: id.clone() });
            if rng.gen::<f64>() < 0.05 + 0.45 * a {
                last += (SECOND_MS + exponential(rng, CART_DELAY_MS)) as i64;
                push(
                    last,
                    Action::Cart {
                        item: id.clone(),
                        price,
                    },
                );
                if rng.gen::<f64>() < 0.2 + 0.6 * a {
                    last += (5.0 * SECOND_MS + exponential(rng, PURCHASE_DELAY_MS)) as i64;
                    push(
                        last,
                        Action::Purchase {
                            item: id.clone(),
                            price,
                        },
                    );
                    if rng.gen::<f64>() < RATING_PROB {
                        last += (2.0 * SECOND_MS + exponential(rng, RATING_DELAY_MS)) as i64;
                        let value = (1.0 + 4.0 * a + 0.8 * gaussian(rng))
                            .round()
                            .clamp(1.0, 5.0);
                        push(
                            last,
                            Action::Rating {
                                item: id,
                                value: value as f32,
                            },
                        );
                    }
                }
            }
        } else if rng.gen::<f64>() < 0.7 * (1.0 - a) {
            last += 1 + dwell as i64;
            push(last, Action::Skip { item: id });
        }
        let gap = MIN_ITEM_GAP_MS + exponential(rng, self.cfg.item_gap_secs * SECOND_MS);
        last.max(t + dwell as i64).saturating_add(gap as i64)
    }
}

/// A user's current taste: a few favourite categories with drifting log-weights.
struct Taste {
    favourites: Vec<u32>,
    log_weights: Vec<f64>,
    /// `exp(log_weight - max log_weight)`: 1 for the top favourite.
    relative: Vec<f64>,
}

impl Taste {
    fn new(g: &Generator, rng: &mut impl Rng) -> Self {
        let mut favourites = Vec::with_capacity(g.cfg.favourites);
        while favourites.len() < g.cfg.favourites {
            match new_category(g, &favourites, rng) {
                Some(c) => favourites.push(c),
                None => break,
            }
        }
        let log_weights = favourites.iter().map(|_| gaussian(rng)).collect();
        let mut taste = Taste {
            favourites,
            log_weights,
            relative: Vec::new(),
        };
        taste.refresh();
        taste
    }

    fn refresh(&mut self) {
        let max = self.log_weights.iter().copied().fold(f64::MIN, f64::max);
        self.relative.clear();
        self.relative
            .extend(self.log_weights.iter().map(|w| (w - max).exp()));
    }

    /// A random walk step; uniform increments of the configured sd are cheaper than Gaussian
    /// ones and make the same walk over many steps.
    fn drift(&mut self, sd: f64, rng: &mut impl Rng) {
        if sd == 0.0 {
            return;
        }
        let scale = sd * 12f64.sqrt();
        for w in &mut self.log_weights {
            *w = (*w + scale * (rng.gen::<f64>() - 0.5)).clamp(-MAX_LOG_WEIGHT, MAX_LOG_WEIGHT);
        }
        self.refresh();
    }

    fn switch_favourite(&mut self, g: &Generator, rng: &mut impl Rng) {
        if let Some(c) = new_category(g, &self.favourites, rng) {
            let slot = rng.gen_range(0..self.favourites.len());
            self.favourites[slot] = c;
            self.log_weights[slot] = gaussian(rng);
            self.refresh();
        }
    }

    fn sample_category(&self, g: &Generator, rng: &mut impl Rng) -> usize {
        if rng.gen::<f64>() < g.cfg.explore_prob {
            return g.sample_category(rng);
        }
        let total: f64 = self.relative.iter().sum();
        let mut x = rng.gen::<f64>() * total;
        for (f, w) in self.favourites.iter().zip(&self.relative) {
            if x < *w {
                return *f as usize;
            }
            x -= w;
        }
        self.favourites.last().map_or(0, |&f| f as usize)
    }

    /// How well `item` suits the user now, in [0, 1].
    fn affinity(&self, g: &Generator, item: u32) -> f64 {
        let c = g.item_category[item as usize];
        let taste = self
            .favourites
            .iter()
            .position(|&f| f == c)
            .map_or(0.0, |slot| self.relative[slot]);
        TASTE_SHARE * taste + (1.0 - TASTE_SHARE) * g.quality(item)
    }
}

/// A category, by popularity, not in `exclude`; `None` if every category is.
fn new_category(g: &Generator, exclude: &[u32], rng: &mut impl Rng) -> Option<u32> {
    for _ in 0..REJECTION_TRIES {
        let c = g.sample_category(rng) as u32;
        if !exclude.contains(&c) {
            return Some(c);
        }
    }
    let n = g.cfg.categories as u32;
    let from = rng.gen_range(0..n);
    (0..n)
        .map(|d| (from + d) % n)
        .find(|c| !exclude.contains(c))
}

fn zipf_weight(rank: usize, exponent: f64) -> f64 {
    ((rank + 1) as f64).powf(-exponent)
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    weights
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// An index drawn in proportion to the increments of the non-empty cumulative `cdf`.
fn sample_cdf(cdf: &[f64], rng: &mut impl Rng) -> usize {
    let total = cdf[cdf.len() - 1];
    let x = rng.gen::<f64>() * total;
    cdf.partition_point(|&c| c <= x).min(cdf.len() - 1)
}

fn shuffle<T>(xs: &mut [T], rng: &mut impl Rng) {
    for i in (1..xs.len()).rev() {
        xs.swap(i, rng.gen_range(0..=i));
    }
}

/// A standard normal draw (Box–Muller, one of the pair).
fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An exponential draw with the given mean.
fn exponential(rng: &mut impl Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

/// A geometric count on `1, 2, …` with the given mean (≥ 1).
fn geometric(rng: &mut impl Rng, mean: f64) -> usize {
    if mean <= 1.0 {
        return 1;
    }
    let u = 1.0 - rng.gen::<f64>();
    1 + (u.ln() / (1.0 - 1.0 / mean).ln()).floor() as usize
}

/// SplitMix64's finaliser: a cheap, well-mixed hash of a `u64`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits of `h` as a number in [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use std::collections::{BTreeSet, HashMap};

    fn small() -> SynthConfig {
        SynthConfig {
            users: 200,
            items: 300,
            ..SynthConfig::default()
        }
    }

    fn generator(cfg: SynthConfig) -> Generator {
        Generator::new(cfg).expect("test config is valid")
    }

    fn item_index(id: &str) -> usize {
        id.strip_prefix('i')
            .and_then(|n| n.parse().ok())
            .expect("item ids are i{n}")
    }

    fn events_of(g: &Generator, users: std::ops::Range<usize>) -> Vec<RawEvent> {
        users.flat_map(|u| g.user_events(u)).collect()
    }

    #[test]
    fn default_config_is_valid() {
        SynthConfig::default().validate().expect("default is valid");
    }

    #[test]
    fn config_parses_from_json_with_defaults() {
        let cfg: SynthConfig =
            serde_json::from_str(r#"{"users": 7, "seed": 1, "follow_prob": 0.7}"#).expect("parses");
        assert_eq!(cfg.users, 7);
        assert_eq!(cfg.seed, 1);
        assert_eq!(cfg.follow_prob, 0.7);
        assert_eq!(cfg.items, SynthConfig::default().items);
    }

    #[test]
    fn same_seed_same_data() {
        let a = generator(small());
        let b = generator(small());
        assert!(a.items().eq(b.items()));
        for u in [0, 1, 57, 199] {
            assert_eq!(a.user_events(u), b.user_events(u));
        }
    }

    #[test]
    fn different_seed_different_data() {
        let a = generator(small());
        let b = generator(SynthConfig {
            seed: 43,
            ..small()
        });
        assert_ne!(events_of(&a, 0..20), events_of(&b, 0..20));
        let titles = |g: &Generator| g.items().map(|i| i.title).collect::<Vec<_>>();
        assert_ne!(titles(&a), titles(&b));
    }

    #[test]
    fn a_user_does_not_depend_on_the_number_of_users() {
        let few = generator(SynthConfig {
            users: 10,
            ..small()
        });
        let many = generator(SynthConfig {
            users: 10_000,
            ..small()
        });
        assert_eq!(few.user_events(3), many.user_events(3));
    }

    #[test]
    fn events_are_time_ordered_and_ids_in_range() {
        let cfg = small();
        let g = generator(cfg.clone());
        for u in 0..cfg.users {
            let events = g.user_events(u);
            assert!(!events.is_empty());
            assert!(events[0].ts >= cfg.start_ts);
            assert!(events.windows(2).all(|w| w[0].ts < w[1].ts), "user {u}");
            for e in &events {
                assert_eq!(e.user, format!("u{u}"));
                let item = e.action.item().expect("no impressions");
                assert!(item_index(item) < cfg.items);
            }
        }
    }

    #[test]
    fn catalogue_is_complete_and_well_formed() {
        let cfg = small();
        let g = generator(cfg.clone());
        let items: Vec<Item> = g.items().collect();
        assert_eq!(items.len(), cfg.items);
        let mut categories = BTreeSet::new();
        for (n, item) in items.iter().enumerate() {
            assert_eq!(item.id, format!("i{n}"));
            assert_eq!(item.title.split(' ').count(), 3, "{}", item.title);
            assert_eq!(item.tags[0], item.attrs["category"]);
            assert!(item.tags.len() <= 2);
            let price: f32 = item.attrs["price"].parse().expect("price is a number");
            assert!(price >= 0.99);
            categories.insert(item.tags[0].clone());
            let successors = g.successors(n);
            assert_eq!(successors.len(), cfg.successors);
            assert!(successors
                .iter()
                .all(|&s| s as usize != n && (s as usize) < cfg.items));
        }
        assert_eq!(categories.len(), cfg.categories);
    }

    #[test]
    fn every_kind_but_impression_appears() {
        let g = generator(small());
        let kinds: BTreeSet<EventKind> = events_of(&g, 0..200)
            .iter()
            .map(|e| e.action.kind())
            .collect();
        let expected: BTreeSet<EventKind> = EventKind::ALL
            .into_iter()
            .filter(|k| *k != EventKind::Impression)
            .collect();
        assert_eq!(kinds, expected);
    }

    #[test]
    fn ratings_are_one_to_five() {
        let g = generator(small());
        for e in events_of(&g, 0..200) {
            if let Action::Rating { value, .. } = e.action {
                assert!((1.0..=5.0).contains(&value) && value.fract() == 0.0);
            }
        }
    }

    #[test]
    fn validate_rejects_bad_configs_naming_the_field() {
        type Breaks = fn(&mut SynthConfig);
        let cases: [(&str, Breaks); 20] = [
            ("users", |c| c.users = 0),
            ("items", |c| c.items = 1),
            ("categories", |c| c.categories = 0),
            ("categories", |c| c.categories = c.items + 1),
            ("favourites", |c| c.favourites = 0),
            ("favourites", |c| c.favourites = c.categories + 1),
            ("successors", |c| c.successors = 0),
            ("successors", |c| {
                (c.items, c.categories, c.favourites, c.successors) = (3, 1, 1, 3)
            }),
            ("sessions_per_user", |c| c.sessions_per_user = 0.5),
            ("session_len", |c| c.session_len = f64::NAN),
            ("span_days", |c| c.span_days = -1.0),
            ("session_gap_hours", |c| c.session_gap_hours = f64::INFINITY),
            ("item_gap_secs", |c| c.item_gap_secs = -1.0),
            ("item_zipf", |c| c.item_zipf = -0.1),
            ("category_zipf", |c| c.category_zipf = f64::NAN),
            ("taste_drift", |c| c.taste_drift = -1.0),
            ("explore_prob", |c| c.explore_prob = 1.5),
            ("follow_prob", |c| c.follow_prob = -0.1),
            ("successor_same_category", |c| {
                c.successor_same_category = f64::NAN
            }),
            ("favourite_switch_prob", |c| c.favourite_switch_prob = 2.0),
        ];
        for (field, breaks) in cases {
            let mut cfg = SynthConfig::default();
            breaks(&mut cfg);
            let message = cfg.validate().expect_err(field).to_string();
            assert!(message.contains(field), "{field}: {message}");
            assert!(Generator::new(cfg).is_err());
        }
    }

    #[test]
    fn tiny_config_works() {
        let cfg = SynthConfig {
            users: 1,
            items: 2,
            categories: 1,
            favourites: 1,
            successors: 1,
            ..SynthConfig::default()
        };
        let g = generator(cfg);
        assert_eq!(g.successors(0), &[1]);
        assert_eq!(g.successors(1), &[0]);
        assert!(!g.user_events(0).is_empty());
    }

    /// The sequence of distinct consecutive items each user viewed.
    fn viewed_sequences(g: &Generator, users: usize) -> Vec<Vec<usize>> {
        (0..users)
            .map(|u| {
                let mut seq: Vec<usize> = Vec::new();
                for e in g.user_events(u) {
                    if let Action::View { item, .. } = &e.action {
                        seq.push(item_index(item));
                    }
                }
                seq
            })
            .collect()
    }

    #[test]
    fn next_item_is_often_a_successor() {
        let cfg = small();
        let g = generator(cfg.clone());
        let (mut hits, mut pairs) = (0usize, 0usize);
        for seq in viewed_sequences(&g, cfg.users) {
            for w in seq.windows(2) {
                pairs += 1;
                hits += g.successors(w[0]).contains(&(w[1] as u32)) as usize;
            }
        }
        let rate = hits as f64 / pairs as f64;
        let chance = cfg.successors as f64 / cfg.items as f64;
        assert!(rate > 0.3, "successor rate {rate}");
        assert!(
            rate > 20.0 * chance,
            "successor rate {rate}, chance {chance}"
        );
    }

    #[test]
    fn popularity_is_skewed() {
        let cfg = small();
        let g = generator(cfg.clone());
        let mut counts = vec![0usize; cfg.items];
        for seq in viewed_sequences(&g, cfg.users) {
            for i in seq {
                counts[i] += 1;
            }
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let total: usize = counts.iter().sum();
        let top: usize = counts[..cfg.items / 10].iter().sum();
        assert!(
            top as f64 / total as f64 > 0.3,
            "top 10% share {top}/{total}"
        );
    }

    #[test]
    fn users_keep_to_a_few_categories() {
        let cfg = small();
        let g = generator(cfg.clone());
        let mut share_sum = 0.0;
        for seq in viewed_sequences(&g, cfg.users) {
            let mut per_category: HashMap<usize, usize> = HashMap::new();
            for &i in &seq {
                *per_category.entry(g.category_of(i)).or_default() += 1;
            }
            let mut counts: Vec<usize> = per_category.into_values().collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            share_sum +=
                counts.iter().take(cfg.favourites).sum::<usize>() as f64 / seq.len() as f64;
        }
        let mean_share = share_sum / cfg.users as f64;
        assert!(
            mean_share > 0.8,
            "mean top-{} share {mean_share}",
            cfg.favourites
        );
    }

    /// Throughput, for release builds:
    /// `cargo test --release -p attune --lib synth::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run in release"]
    fn throughput() {
        let cfg = SynthConfig {
            users: 1_000_000,
            items: 1_000_000,
            categories: 200,
            ..SynthConfig::default()
        };
        let started = std::time::Instant::now();
        let g = generator(cfg);
        let build = started.elapsed();
        let started = std::time::Instant::now();
        let items = g.items().count();
        let items_time = started.elapsed();
        let started = std::time::Instant::now();
        let users = 50_000;
        let events: usize = (0..users).map(|u| g.user_events(u).len()).sum();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "build {build:?}; {items} items in {items_time:?}; {users} users, {events} events in {secs:.3} s: {:.2} M events/s single-threaded",
            events as f64 / secs / 1e6
        );
        let started = std::time::Instant::now();
        use rayon::prelude::*;
        let events: usize = (0..4 * users)
            .into_par_iter()
            .map(|u| g.user_events(u).len())
            .sum();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "parallel ({} threads): {events} events in {secs:.3} s: {:.2} M events/s",
            rayon::current_num_threads(),
            events as f64 / secs / 1e6
        );
    }
}
