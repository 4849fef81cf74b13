//! A user's taste: favourite categories with drifting weights, and how well an item
//! suits it.

use super::catalogue::Generator;
use super::random::{gaussian, REJECTION_TRIES};
use rand::Rng;

/// Share of an item's affinity that comes from the user's taste for its category; the rest
/// is the item's own quality, the same for every user.
const TASTE_SHARE: f64 = 0.8;
/// Bound on the log-weight of a favourite category, so that long drifts stay tame.
const MAX_LOG_WEIGHT: f64 = 4.0;

/// A user's current taste: a few favourite categories with drifting log-weights.
pub(super) struct Taste {
    favourites: Vec<u32>,
    log_weights: Vec<f64>,
    /// `exp(log_weight - max log_weight)`: 1 for the top favourite.
    relative: Vec<f64>,
}

impl Taste {
    pub(super) fn new(g: &Generator, rng: &mut impl Rng) -> Self {
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
    pub(super) fn drift(&mut self, sd: f64, rng: &mut impl Rng) {
        if sd == 0.0 {
            return;
        }
        let scale = sd * 12f64.sqrt();
        for w in &mut self.log_weights {
            *w = (*w + scale * (rng.gen::<f64>() - 0.5)).clamp(-MAX_LOG_WEIGHT, MAX_LOG_WEIGHT);
        }
        self.refresh();
    }

    pub(super) fn switch_favourite(&mut self, g: &Generator, rng: &mut impl Rng) {
        if let Some(c) = new_category(g, &self.favourites, rng) {
            let slot = rng.gen_range(0..self.favourites.len());
            self.favourites[slot] = c;
            self.log_weights[slot] = gaussian(rng);
            self.refresh();
        }
    }

    pub(super) fn sample_category(&self, g: &Generator, rng: &mut impl Rng) -> usize {
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
    pub(super) fn affinity(&self, g: &Generator, item: u32) -> f64 {
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
