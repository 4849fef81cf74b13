//! The baseline sources of the blend, kept current while serving: popularity, sequential
//! transitions and item-to-item co-occurrence (item-kNN), counted online from every
//! interaction by the learner and published to the compute threads as immutable
//! snapshots (an `Arc` swapped in whole), so scoring never waits on a lock held by an
//! update. A snapshot's per-item tables are kept in chunks shared with the snapshot
//! before it, so that publishing costs what changed, not the catalogue's size: at a
//! million items, copying the tables whole (two million row pointers, five times a
//! second) was most of the learner's time.

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

/// Entries per chunk of a [`Chunked`] table.
const CHUNK: usize = 64;

/// A per-item table in chunks of [`CHUNK`] entries, each behind its own `Arc`: a clone
/// shares every chunk, and a write copies only the chunk it lands in (when shared).
#[derive(Debug, Clone)]
pub struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> Chunked<T> {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry at `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&T> {
        if i < self.len {
            Some(&self.chunks[i / CHUNK][i % CHUNK])
        } else {
            None
        }
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Grows to `n` entries filled with `fill` (never shrinks).
    fn grow(&mut self, n: usize, fill: T) {
        while self.len < n {
            if self.len.is_multiple_of(CHUNK) {
                self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
            }
            let take = (CHUNK - self.len % CHUNK).min(n - self.len);
            let last = self.chunks.last_mut().expect("a chunk was pushed");
            Arc::make_mut(last).extend(std::iter::repeat_n(fill.clone(), take));
            self.len += take;
        }
    }

    /// Sets the entry at `i` (below `len`), copying its chunk first if it is shared.
    fn set(&mut self, i: usize, v: T) {
        Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK] = v;
    }
}

impl<T: Clone> std::ops::Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        self.get(i).expect("index within the table")
    }
}

/// What the compute threads read: immutable, replaced whole.
#[derive(Debug, Default)]
pub struct SourceSnapshot {
    /// Recency-weighted interaction counts per item, on the scale of `max_recent`.
    recent: Chunked<f64>,
    /// The largest of `recent` (0: nothing counted).
    max_recent: f64,
    /// The most popular items, best first.
    pub pop_top: Vec<ItemId>,
    /// Per item, the likeliest next items with their transition probability.
    pub successors: Chunked<Row>,
    /// Per item, the most similar items by co-occurrence cosine.
    pub neighbours: Chunked<Row>,
    /// Interactions counted so far.
    pub interactions: u64,
}

impl SourceSnapshot {
    /// Items the snapshot knows.
    pub fn n_items(&self) -> usize {
        self.recent.len()
    }

    /// Popularity of `item` scaled into `[0, 1]` (1 = most popular; 0 for an item the
    /// snapshot does not know).
    pub fn pop(&self, item: usize) -> f32 {
        match self.recent.get(item) {
            Some(&r) if self.max_recent > 0.0 => (r / self.max_recent) as f32,
            _ => 0.0,
        }
    }
}

/// The online counts (owned by the learner).
#[derive(Debug, Default)]
pub struct OnlineCounts {
    count: Vec<f32>,
    /// Recency-weighted interaction counts (scaled by `inc`), behind `pop`.
    recent: Vec<f64>,
    /// The largest of `recent`.
    max_recent: f64,
    /// Whether every `recent` changed (rescaled) since the last snapshot.
    rescaled: bool,
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
        self.max_recent = self.max_recent.max(self.recent[item as usize]);
        if self.decay < 1.0 {
            self.inc /= self.decay;
            if self.inc > 1e200 {
                self.recent.iter_mut().for_each(|r| *r /= self.inc);
                // Division is monotonic: the largest stays the largest.
                self.max_recent /= self.inc;
                self.inc = 1.0;
                self.rescaled = true;
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

    /// A snapshot reflecting every interaction so far; chunks of items untouched since
    /// `previous` (a snapshot of these counts) are shared with it. `parallel` spreads the
    /// changed rows over rayon's threads: for a caller that waits on the snapshot (a
    /// deterministic replay), not for the live learner, whose snapshots are background
    /// work.
    pub fn snapshot(
        &mut self,
        previous: Option<&SourceSnapshot>,
        parallel: bool,
    ) -> SourceSnapshot {
        let n = self.count.len();
        let reuse = previous.filter(|p| p.successors.len() <= n && !self.rescaled);
        let (mut successors, mut neighbours, mut recent, top_before) = match reuse {
            Some(p) => (
                p.successors.clone(),
                p.neighbours.clone(),
                p.recent.clone(),
                p.pop_top.as_slice(),
            ),
            None => {
                self.dirty_list = (0..n as ItemId).collect();
                (
                    Chunked::default(),
                    Chunked::default(),
                    Chunked::default(),
                    &[][..],
                )
            }
        };
        self.rescaled = false;
        let empty: Row = Arc::from(Vec::new());
        successors.grow(n, empty.clone());
        neighbours.grow(n, empty);
        recent.grow(n, 0.0);
        let dirty = std::mem::take(&mut self.dirty_list);
        // The most popular items, best first (ties: lower id first). Counts only grow, so
        // an untouched item outside the previous top cannot have passed the items in it:
        // the new top merges the previous one's untouched items (still in order) with the
        // touched ones.
        let desc = |a: &u128, b: &u128| b.cmp(a);
        let kept: Vec<u128> = top_before
            .iter()
            .filter(|&&i| !self.dirty[i as usize])
            .map(|&i| self.pop_key(i))
            .collect();
        let mut touched: Vec<u128> = dirty
            .iter()
            .filter(|&&i| self.recent[i as usize] > 0.0)
            .map(|&i| self.pop_key(i))
            .collect();
        if touched.len() > POP_TOP {
            touched.select_nth_unstable_by(POP_TOP - 1, desc);
            touched.truncate(POP_TOP);
        }
        touched.sort_unstable_by(desc);
        let pop_top = merge_top(&kept, &touched, POP_TOP);
        for &item in &dirty {
            self.dirty[item as usize] = false;
            recent.set(item as usize, self.recent[item as usize]);
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
                successors.set(item as usize, next);
                neighbours.set(item as usize, near);
            }
        } else {
            let mut buf = std::mem::take(&mut self.scratch);
            for &item in &dirty {
                let (next, near) = rows(&mut buf, item);
                successors.set(item as usize, next);
                neighbours.set(item as usize, near);
            }
            self.scratch = buf;
        }
        // The list's allocation is kept for the next round's changes.
        self.dirty_list = dirty;
        self.dirty_list.clear();
        SourceSnapshot {
            recent,
            max_recent: self.max_recent,
            pop_top,
            successors,
            neighbours,
            interactions: self.interactions,
        }
    }

    /// `item`'s popularity as one key: larger for a larger count, and for the same
    /// count, for a lower id (a positive f64's bits order as its value).
    fn pop_key(&self, item: ItemId) -> u128 {
        (u128::from(self.recent[item as usize].to_bits()) << 32) | u128::from(ItemId::MAX - item)
    }
}

/// The `m` largest of two lists of popularity keys (each largest first, no item in both),
/// largest first, as item ids.
fn merge_top(a: &[u128], b: &[u128], m: usize) -> Vec<ItemId> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(m.min(a.len() + b.len()));
    while out.len() < m && (i < a.len() || j < b.len()) {
        let k = if j == b.len() || (i < a.len() && a[i] > b[j]) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        out.push(ItemId::MAX - k as ItemId);
    }
    out
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
        assert!((s.pop(0) - 0.5).abs() < 0.01, "{}", s.pop(0));
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

    #[test]
    fn a_snapshot_copies_only_the_chunks_that_changed() {
        let mut c = OnlineCounts::default();
        c.ensure_items(3 * CHUNK);
        for i in 0..3 * CHUNK as ItemId {
            c.observe(i, &[]);
        }
        c.observe(1, &[0]);
        let s = c.snapshot(None, false);
        // An interaction in the last chunk: the others are the previous snapshot's.
        let last = 3 * CHUNK as ItemId - 1;
        c.observe(last, &[last - 1]);
        c.observe(last, &[]);
        let s2 = c.snapshot(Some(&s), false);
        for t in [&s.successors, &s.neighbours] {
            assert_eq!(t.len(), 3 * CHUNK);
        }
        assert!(Arc::ptr_eq(
            &s.successors.chunks[0],
            &s2.successors.chunks[0]
        ));
        assert!(Arc::ptr_eq(&s.recent.chunks[1], &s2.recent.chunks[1]));
        assert!(!Arc::ptr_eq(
            &s.successors.chunks[2],
            &s2.successors.chunks[2]
        ));
        assert_eq!(s2.successors[last as usize - 1][0].0, last);
        assert_eq!(s.successors[0][0].0, 1);
        // The newly most popular item leads, and the rest keep their order (all tied at
        // one interaction: lower ids first), as a snapshot from scratch has it.
        assert_eq!(s2.pop_top[0], last);
        assert_eq!(s2.pop(last as usize), 1.0);
        assert_eq!(s2.pop_top[1..4], [1, 0, 2]);
        let fresh = c.snapshot(None, false);
        assert_eq!(fresh.pop_top, s2.pop_top);
        assert_eq!(
            (0..3 * CHUNK).map(|i| s2.pop(i)).collect::<Vec<_>>(),
            (0..3 * CHUNK).map(|i| fresh.pop(i)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn snapshots_built_on_the_previous_equal_snapshots_from_scratch() {
        // Two copies of the same counts: one published round after round on its previous
        // snapshot, the other from scratch each round: the same popularity, top and
        // transitions. A short half-life rescales the counts on the way (every 664
        // half-lives), which a snapshot must notice.
        let (mut inc, mut full) = (
            OnlineCounts::with_half_life(10),
            OnlineCounts::with_half_life(10),
        );
        let mut prev: Option<SourceSnapshot> = None;
        let mut x: u64 = 7;
        let mut history: Vec<ItemId> = Vec::new();
        for round in 0..160 {
            for _ in 0..50 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Skewed towards low ids, over 3,000 items (more than `POP_TOP`).
                let item = ((x >> 33) % 3000).min((x >> 45) % 3000) as ItemId;
                let from = history.len().saturating_sub(CO_WINDOW);
                inc.observe(item, &history[from..]);
                full.observe(item, &history[from..]);
                history.push(item);
            }
            let a = inc.snapshot(prev.as_ref(), round % 2 == 0);
            let b = full.snapshot(None, false);
            assert_eq!(a.pop_top, b.pop_top, "round {round}");
            assert_eq!(a.n_items(), b.n_items());
            for i in 0..b.n_items() {
                assert_eq!(a.pop(i), b.pop(i), "round {round}, item {i}");
                assert_eq!(a.successors[i], b.successors[i]);
            }
            // (A neighbour row is recomputed when its own item is touched: its cosines
            // with items counted since are as of then, by design.)
            prev = Some(a);
        }
        assert!(
            inc.interactions() > 6640,
            "the counts were rescaled on the way"
        );
    }
}
