//! The baseline sources of the blend, kept current while serving: popularity, sequential
//! transitions and item-to-item co-occurrence (item-kNN), counted online from every
//! interaction by the learner and published to the compute threads as immutable
//! snapshots (an `Arc` swapped in whole), so scoring never waits on a lock held by an
//! update.

use std::sync::Arc;

use rayon::prelude::*;

use crate::event::ItemId;

/// Items back in a user's history that co-occur with a new interaction.
pub const CO_WINDOW: usize = 5;
/// Neighbours and successors kept per item in a snapshot.
pub const TOP_M: usize = 50;
/// Most popular items kept as popularity candidates.
pub const POP_TOP: usize = 1000;
/// Weights of the transitions out of the last three items.
pub const MARKOV_WEIGHTS: [f32; 3] = [1.0, 0.5, 0.25];
/// History items whose neighbours are item-kNN candidates.
pub const KNN_HISTORY: usize = 5;

/// Rows a parallel snapshot needs before it splits them across threads.
const PARALLEL_ROWS: usize = 16;

/// One item's counts towards other items: entries kept contiguous (a snapshot iterates
/// whole rows, hundreds per round), found by a fast hash for the counting.
type Counts = indexmap::IndexMap<ItemId, f32, rustc_hash::FxBuildHasher>;

/// A row of `(item, value)`, best first.
pub type Row = Arc<[(ItemId, f32)]>;

/// What the compute threads read: immutable, replaced whole.
#[derive(Debug, Default)]
pub struct SourceSnapshot {
    /// Popularity of each item scaled into `[0, 1]` (1 = most popular).
    pub pop: Vec<f32>,
    /// The most popular items, best first.
    pub pop_top: Vec<ItemId>,
    /// Per item, the likeliest next items with their transition probability.
    pub successors: Vec<Row>,
    /// Per item, the most similar items by co-occurrence cosine.
    pub neighbours: Vec<Row>,
    /// Interactions counted so far.
    pub interactions: u64,
}

impl SourceSnapshot {
    /// Items the snapshot knows.
    pub fn n_items(&self) -> usize {
        self.pop.len()
    }
}

/// The online counts (owned by the learner).
#[derive(Debug, Default)]
pub struct OnlineCounts {
    count: Vec<f32>,
    /// Recency-weighted interaction counts (scaled by `inc`), behind `pop`.
    recent: Vec<f64>,
    /// Weight of the next interaction; grows by `1 / decay` per interaction.
    inc: f64,
    /// Per-interaction decay factor of `recent` (1: plain counts).
    decay: f64,
    transitions: Vec<Counts>,
    co: Vec<Counts>,
    dirty: Vec<bool>,
    dirty_list: Vec<ItemId>,
    interactions: u64,
    /// A row's entries while its top is chosen, kept between snapshots: a snapshot
    /// recomputes hundreds of rows, and collecting each into a fresh, growing vector was
    /// a tenth of the learner's time in a replay.
    scratch: Vec<u64>,
}

impl OnlineCounts {
    /// Counts whose popularity halves every `half_life` interactions (0: never).
    pub fn with_half_life(half_life: u64) -> Self {
        OnlineCounts {
            inc: 1.0,
            decay: if half_life == 0 {
                1.0
            } else {
                0.5f64.powf(1.0 / half_life as f64)
            },
            ..OnlineCounts::default()
        }
    }

    fn grow(&mut self, item: ItemId) {
        let n = item as usize + 1;
        if self.count.len() < n {
            self.count.resize(n, 0.0);
            self.recent.resize(n, 0.0);
            self.transitions.resize_with(n, Counts::default);
            self.co.resize_with(n, Counts::default);
            self.dirty.resize(n, false);
        }
    }

    fn touch(&mut self, item: ItemId) {
        if !self.dirty[item as usize] {
            self.dirty[item as usize] = true;
            self.dirty_list.push(item);
        }
    }

    /// Items known (the highest id seen plus one, at least `n`).
    pub fn ensure_items(&mut self, n: usize) {
        if n > 0 {
            self.grow(n as ItemId - 1);
        }
    }

    /// Counts one interaction with `item`, given the user's previous items (oldest first).
    pub fn observe(&mut self, item: ItemId, previous: &[ItemId]) {
        self.grow(item);
        self.interactions += 1;
        self.count[item as usize] += 1.0;
        if self.inc == 0.0 {
            (self.inc, self.decay) = (1.0, 1.0);
        }
        self.recent[item as usize] += self.inc;
        if self.decay < 1.0 {
            self.inc /= self.decay;
            if self.inc > 1e200 {
                self.recent.iter_mut().for_each(|r| *r /= self.inc);
                self.inc = 1.0;
            }
        }
        self.touch(item);
        if let Some(&last) = previous.last() {
            if last != item {
                self.grow(last);
                *self.transitions[last as usize].entry(item).or_insert(0.0) += 1.0;
                self.touch(last);
            }
        }
        let start = previous.len().saturating_sub(CO_WINDOW);
        for &p in &previous[start..] {
            if p == item {
                continue;
            }
            self.grow(p);
            *self.co[p as usize].entry(item).or_insert(0.0) += 1.0;
            *self.co[item as usize].entry(p).or_insert(0.0) += 1.0;
            self.touch(p);
        }
    }

    /// Interactions counted so far.
    pub fn interactions(&self) -> u64 {
        self.interactions
    }

    /// Raw transition and co-occurrence entries held, and an estimate of their bytes
    /// (each map's entries at 16 bytes and its hash index at 9 per slot, by capacity).
    pub fn footprint(&self) -> (usize, usize) {
        let maps = self.transitions.iter().chain(&self.co);
        let entries = maps.clone().map(|m| m.len()).sum();
        let bytes = maps
            .map(|m| std::mem::size_of::<Counts>() + m.capacity() * 25)
            .sum();
        (entries, bytes)
    }

    /// A snapshot reflecting every interaction so far; rows of items untouched since
    /// `previous` are shared with it. `parallel` spreads the changed rows over rayon's
    /// threads: for a caller that waits on the snapshot (a deterministic replay), not for
    /// the live learner, whose snapshots are background work.
    pub fn snapshot(
        &mut self,
        previous: Option<&SourceSnapshot>,
        parallel: bool,
    ) -> SourceSnapshot {
        let n = self.count.len();
        let max = self.recent.iter().copied().fold(0.0f64, f64::max);
        let pop: Vec<f32> = if max > 0.0 {
            self.recent.iter().map(|c| (c / max) as f32).collect()
        } else {
            vec![0.0; n]
        };
        // The most popular items, best first (ties: lower id first), as packed keys (see
        // `top_row`).
        let mut keys: Vec<u64> = pop
            .iter()
            .enumerate()
            .filter(|(_, &p)| p > 0.0)
            .map(|(i, &p)| key(i as ItemId, p))
            .collect();
        best_keys(&mut keys, POP_TOP);
        let order: Vec<ItemId> = keys.iter().map(|&k| unkey(k).0).collect();

        let (mut successors, mut neighbours) = match previous {
            Some(p) if p.successors.len() <= n => (p.successors.clone(), p.neighbours.clone()),
            _ => {
                self.dirty_list = (0..n as ItemId).collect();
                (Vec::new(), Vec::new())
            }
        };
        let empty: Row = Arc::from(Vec::new());
        successors.resize(n, empty.clone());
        neighbours.resize(n, empty);
        let dirty = std::mem::take(&mut self.dirty_list);
        for &item in &dirty {
            self.dirty[item as usize] = false;
        }
        let (transitions, co, count) = (&self.transitions, &self.co, &self.count);
        let rows = |buf: &mut Vec<u64>, item: ItemId| -> (Row, Row) {
            let i = item as usize;
            let total: f32 = transitions[i].values().sum();
            let next = top_row(buf, transitions[i].iter().map(|(&j, &c)| (j, c / total)));
            let ci = count[i].max(1.0);
            let near = top_row(
                buf,
                co[i]
                    .iter()
                    .map(|(&j, &c)| (j, c / (ci * count[j as usize].max(1.0)).sqrt())),
            );
            (next, near)
        };
        if parallel && dirty.len() >= PARALLEL_ROWS {
            let computed: Vec<(Row, Row)> = dirty
                .par_iter()
                .map_init(Vec::new, |buf, &item| rows(buf, item))
                .collect();
            for (&item, (next, near)) in dirty.iter().zip(computed) {
                successors[item as usize] = next;
                neighbours[item as usize] = near;
            }
        } else {
            let mut buf = std::mem::take(&mut self.scratch);
            for &item in &dirty {
                (successors[item as usize], neighbours[item as usize]) = rows(&mut buf, item);
            }
            self.scratch = buf;
        }
        // The list's allocation is kept for the next round's changes.
        self.dirty_list = dirty;
        self.dirty_list.clear();
        SourceSnapshot {
            pop,
            pop_top: order,
            successors,
            neighbours,
            interactions: self.interactions,
        }
    }
}

/// The `TOP_M` highest entries, best first (ties: lower id first), chosen in `v`.
///
/// Each entry is packed into one integer key that orders exactly as (value descending, id
/// ascending) does, since positive f32 bit patterns order as the values: the selection
/// then compares integers, a third of a snapshot's time when it compared the pairs.
fn top_row(v: &mut Vec<u64>, entries: impl Iterator<Item = (ItemId, f32)>) -> Row {
    v.clear();
    v.extend(entries.filter(|e| e.1 > 0.0).map(|(j, x)| key(j, x)));
    best_keys(v, TOP_M);
    v.iter().map(|&k| unkey(k)).collect()
}

/// Keeps the `m` largest keys of `v`, largest first.
fn best_keys(v: &mut Vec<u64>, m: usize) {
    let desc = |a: &u64, b: &u64| b.cmp(a);
    if m > 0 && v.len() > m {
        v.select_nth_unstable_by(m - 1, desc);
    }
    v.truncate(m);
    v.sort_unstable_by(desc);
}

/// `(item, value)` with a positive `value` as one key: larger keys for larger values, and
/// for the same value, for lower ids.
#[inline]
fn key(item: ItemId, value: f32) -> u64 {
    (u64::from(value.to_bits()) << 32) | u64::from(ItemId::MAX - item)
}

#[inline]
fn unkey(k: u64) -> (ItemId, f32) {
    (ItemId::MAX - k as u32, f32::from_bits((k >> 32) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_decays_with_the_half_life() {
        let mut c = OnlineCounts::with_half_life(10);
        for _ in 0..10 {
            c.observe(0, &[]);
        }
        for _ in 0..10 {
            c.observe(1, &[]);
        }
        let s = c.snapshot(None, false);
        // Item 0's interactions are 10 to 20 interactions old: about half item 1's.
        assert_eq!(s.pop_top[0], 1);
        assert!((s.pop[0] - 0.5).abs() < 0.01, "{}", s.pop[0]);
    }

    #[test]
    fn counts_become_rows_and_stay_current() {
        let mut c = OnlineCounts::default();
        // A user walking 0 → 1 → 2, twice, and another 0 → 2.
        for _ in 0..2 {
            c.observe(0, &[]);
            c.observe(1, &[0]);
            c.observe(2, &[0, 1]);
        }
        c.observe(0, &[]);
        c.observe(2, &[0]);
        let s = c.snapshot(None, false);
        assert_eq!(s.n_items(), 3);
        assert_eq!(s.pop_top[0], 0); // 3 interactions, as 2; tie broken by id
        assert_eq!(s.successors[0][0].0, 1); // 0→1 twice, 0→2 once
        assert!((s.successors[0][0].1 - 2.0 / 3.0).abs() < 1e-6);
        assert!(s.neighbours[1].iter().any(|(j, _)| *j == 2));
        // A new transition shows in the next snapshot; untouched rows are shared.
        c.observe(7, &[2]);
        let s2 = c.snapshot(Some(&s), false);
        assert_eq!(s2.n_items(), 8);
        assert_eq!(s2.successors[2][0].0, 7);
        assert!(Arc::ptr_eq(&s.successors[1], &s2.successors[1]));
    }
}
