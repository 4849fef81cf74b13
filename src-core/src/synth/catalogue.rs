//! The synthetic catalogue: the `Generator` and what it holds per item (category, price,
//! popularity order, successors), item titles and tags, and the draws over it.

use super::config::SynthConfig;
use super::random::{
    cumulative, gaussian, sample_cdf, shuffle, splitmix64, unit, zipf_weight, REJECTION_TRIES,
};
use crate::error::Result;
use crate::event::Item;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;

/// Skew of category sizes: category `c` gets items in proportion to `1 / (c + 1)^skew`.
const CATEGORY_SIZE_SKEW: f64 = 0.5;
/// Spread of prices around their category's base price (sd of the log).
const PRICE_LOG_SD: f64 = 0.5;

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
    pub(super) cfg: SynthConfig,
    categories: Vec<Category>,
    /// Cumulative popularity weights of the categories.
    category_cdf: Vec<f64>,
    /// Category of each item.
    pub(super) item_category: Vec<u32>,
    /// Items grouped by category (`members[offsets[c]..offsets[c + 1]]`), each group in
    /// descending popularity.
    members: Vec<u32>,
    offsets: Vec<u32>,
    /// `zipf_prefix[r]` = Σ_{k ≤ r} 1/(k+1)^item_zipf, shared by all categories.
    zipf_prefix: Vec<f64>,
    /// `successors[i * k..(i + 1) * k]` are item `i`'s successors, likeliest first.
    successors: Vec<u32>,
    /// Cumulative weights of following the 1st, 2nd, … successor.
    pub(super) successor_cdf: Vec<f64>,
    /// Price of each item, in currency units (cents precision).
    pub(super) prices: Vec<f32>,
    /// Salts of the per-user streams and of the per-item hashes.
    pub(super) user_salt: u64,
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

    /// The item's own conversion rate in [0, 1): the chance that a cart of it becomes a
    /// purchase in the purchase world (`purchase_by_item`), the same for every user and
    /// independent of the item's quality, category and popularity.
    pub fn conversion(&self, item: u32) -> f64 {
        unit(splitmix64(self.item_hash(item as usize) ^ 0x636f_6e76))
    }

    /// Whether this is the purchase world (`SynthConfig::purchase_by_item`).
    pub fn purchase_by_item(&self) -> bool {
        self.cfg.purchase_by_item
    }

    fn category_size(&self, c: usize) -> usize {
        (self.offsets[c + 1] - self.offsets[c]) as usize
    }

    pub(super) fn sample_category(&self, rng: &mut impl Rng) -> usize {
        sample_cdf(&self.category_cdf, rng)
    }

    /// A Zipf-popular item of category `c`.
    pub(super) fn sample_in_category(&self, c: usize, rng: &mut impl Rng) -> u32 {
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
}
