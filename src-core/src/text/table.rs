//! The text vectors of a catalogue, one row per item id, and the scoring of a user's text
//! profile against all of them (a matrix-vector product of unit vectors: cosines).

use crate::event::ItemId;
use crate::model::fast::quantise_i8 as quantise;
pub use crate::model::ops::dot;

/// Items of a history the profile reads, most recent first.
pub const PROFILE_LEN: usize = 50;
/// Weight of each step back in a history: the item before the last counts 0.85 of it.
pub const PROFILE_DECAY: f32 = 0.85;
/// Score of an item without a vector: below any cosine.
pub const NO_TEXT: f32 = -2.0;

/// A user's text profile: a unit vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile(pub Vec<f32>);

/// Unit vectors by item id; rows of items without text are absent.
///
/// Beside the f32 rows the table keeps an int8 copy (per-row symmetric quantisation:
/// `row ≈ scale · q`), a quarter of the bytes, which [`TextTable::score_all_i8`] scans for
/// serving: the full scan is bound by memory traffic, and 384 f32 per item made it the
/// largest cost of a recommendation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextTable {
    dim: usize,
    rows: Vec<f32>,
    present: Vec<bool>,
    count: usize,
    q: Vec<i8>,
    q_scale: Vec<f32>,
}

/// The dot product of two int8 vectors, accumulated in i32 (exact).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    const L: usize = 32;
    let mut acc = [0i32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            *s += i32::from(p) * i32::from(q);
        }
    }
    acc.iter().sum::<i32>() + tail
}

impl TextTable {
    /// An empty table of `dim`-wide vectors.
    pub fn new(dim: usize) -> Self {
        TextTable {
            dim,
            ..TextTable::default()
        }
    }

    /// Width of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Item ids covered (the highest with a vector, plus one).
    pub fn len(&self) -> usize {
        self.present.len()
    }

    /// Whether no item has a vector.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Items with a vector.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Sets the vector of `item` (`vector` must be `dim` wide).
    pub fn set(&mut self, item: ItemId, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        let i = item as usize;
        if i >= self.present.len() {
            self.present.resize(i + 1, false);
            self.rows.resize((i + 1) * self.dim, 0.0);
            self.q.resize((i + 1) * self.dim, 0);
            self.q_scale.resize(i + 1, 0.0);
        }
        if !self.present[i] {
            self.count += 1;
        }
        self.present[i] = true;
        self.rows[i * self.dim..(i + 1) * self.dim].copy_from_slice(vector);
        self.q_scale[i] = quantise(vector, &mut self.q[i * self.dim..(i + 1) * self.dim]);
    }

    /// Removes the vector of `item`.
    pub fn clear(&mut self, item: ItemId) {
        let i = item as usize;
        if self.present.get(i) == Some(&true) {
            self.present[i] = false;
            self.count -= 1;
            self.rows[i * self.dim..(i + 1) * self.dim].fill(0.0);
            self.q[i * self.dim..(i + 1) * self.dim].fill(0);
            self.q_scale[i] = 0.0;
        }
    }

    /// The vector of `item`, if it has one.
    pub fn get(&self, item: ItemId) -> Option<&[f32]> {
        let i = item as usize;
        (self.present.get(i) == Some(&true)).then(|| &self.rows[i * self.dim..(i + 1) * self.dim])
    }

    /// The profile of a history (oldest first): the mean of the last [`PROFILE_LEN`] items'
    /// vectors, each step back weighted by [`PROFILE_DECAY`], at unit length. None when no
    /// item of the history has a vector.
    pub fn profile(&self, history: &[ItemId]) -> Option<Profile> {
        let mut acc = vec![0f32; self.dim];
        let mut w = 1.0f32;
        let mut any = false;
        for &item in history.iter().rev().take(PROFILE_LEN) {
            if let Some(v) = self.get(item) {
                for (a, x) in acc.iter_mut().zip(v) {
                    *a += w * x;
                }
                any = true;
            }
            w *= PROFILE_DECAY;
        }
        Profile::unit(acc).filter(|_| any)
    }

    /// The cosine of `profile` with every item in `out` (items without a vector, and ids
    /// past the table, get [`NO_TEXT`]).
    pub fn score_all(&self, profile: &Profile, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = if self.present.get(i) == Some(&true) {
                dot(&profile.0, &self.rows[i * self.dim..(i + 1) * self.dim])
            } else {
                NO_TEXT
            };
        }
    }

    /// [`TextTable::score_all`] on the int8 copy: the profile is quantised too and each
    /// cosine comes from an exact i32 dot product times the two scales. Within about 0.01
    /// of the f32 cosine (1/254 of each vector's largest entry per element); what serving
    /// scans, while evaluation and [`TextTable::nearest`] use the f32 rows.
    pub fn score_all_i8(&self, profile: &Profile, out: &mut [f32]) {
        let mut pq = vec![0i8; self.dim];
        let ps = quantise(&profile.0, &mut pq);
        for (i, o) in out.iter_mut().enumerate() {
            *o = if self.present.get(i) == Some(&true) {
                dot_i8(&pq, &self.q[i * self.dim..(i + 1) * self.dim]) as f32
                    * (ps * self.q_scale[i])
            } else {
                NO_TEXT
            };
        }
    }

    /// The cosine of `profile` with `item` ([`NO_TEXT`] without a vector).
    pub fn score(&self, profile: &Profile, item: ItemId) -> f32 {
        self.get(item).map_or(NO_TEXT, |v| dot(&profile.0, v))
    }

    /// The `k` items nearest to `query` by cosine, best first (ties by lower id), leaving
    /// out those `skip` refuses.
    pub fn nearest(
        &self,
        query: &[f32],
        k: usize,
        skip: impl Fn(ItemId) -> bool,
    ) -> Vec<(ItemId, f32)> {
        let mut all: Vec<(ItemId, f32)> = (0..self.present.len())
            .filter(|&i| self.present[i] && !skip(i as ItemId))
            .map(|i| {
                (
                    i as ItemId,
                    dot(query, &self.rows[i * self.dim..(i + 1) * self.dim]),
                )
            })
            .collect();
        let better = |a: &(ItemId, f32), b: &(ItemId, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = k.min(all.len());
        if k > 0 && k < all.len() {
            all.select_nth_unstable_by(k - 1, better);
        }
        all.truncate(k);
        all.sort_unstable_by(better);
        all
    }

    /// Bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.rows.capacity() * 4 + self.present.capacity()
    }
}

impl Profile {
    /// `v` scaled to unit length; None for a zero vector.
    pub fn unit(mut v: Vec<f32>) -> Option<Profile> {
        let norm = dot(&v, &v).sqrt();
        if norm.is_nan() || norm <= 1e-12 {
            return None;
        }
        for x in &mut v {
            *x /= norm;
        }
        Some(Profile(v))
    }
}
