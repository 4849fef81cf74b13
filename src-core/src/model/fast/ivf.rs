//! An inverted-file (IVF) index for maximum-inner-product search over an item table: the
//! candidate generation a catalogue of a million items needs, where scoring every item
//! for every request no longer fits the latency budget (issue 17, point 2).
//!
//! The items are split into `lists` cells by k-means with inner-product assignment (each
//! item goes to the centroid its vector scores highest against, as a query would); a
//! query scores the centroids, then scores exactly the items of the `probe` best cells.
//! The vectors are kept in cell order, so a probe reads contiguous memory. Written here
//! rather than taken from a crate: the maintained HNSW crates search by a distance, which
//! needs the inner product turned into one (an extra coordinate per item), and their
//! builds at a million items take minutes on two cores; an IVF build is a few passes of
//! the panel kernels the scorer already has.
//!
//! Not yet wired into the engine's ranking: `FastModel::top_k` still scores the whole
//! table. The engine switch (by catalogue size), the rebuild on model swap and the
//! 1M-item figures are the rest of that point.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::kernels::{dot, panel_mul, Panels};
use super::P;

/// How an index is built and searched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IvfConfig {
    /// Cells (k-means centroids). About `4·√n` is the usual start.
    pub lists: usize,
    /// Cells a query scores exactly (more: better recall, slower).
    pub probe: usize,
    /// Items k-means trains on (a random sample; every item is assigned after).
    pub sample: usize,
    /// k-means iterations.
    pub iters: usize,
    /// Seed of the sample and of the first centroids.
    pub seed: u64,
}

impl IvfConfig {
    /// Settings for `n` items: `4·√n` cells (at least 1), 8 of them probed per 1,000, a
    /// sample of 64 items per cell, 10 iterations.
    pub fn for_items(n: usize) -> IvfConfig {
        let lists = ((4.0 * (n as f64).sqrt()) as usize).clamp(1, n.max(1));
        IvfConfig {
            lists,
            probe: (lists * 8).div_ceil(1000).max(1),
            sample: (lists * 64).min(n),
            iters: 10,
            seed: 42,
        }
    }
}

/// The index: centroids, and the items' ids and vectors grouped by cell.
#[derive(Clone)]
pub struct IvfIndex {
    dim: usize,
    lists: usize,
    /// The centroids as panels, for scoring them against a query.
    centroids: Panels<f32>,
    /// Cell `c` holds `ids[offsets[c]..offsets[c + 1]]`.
    offsets: Vec<usize>,
    ids: Vec<u32>,
    /// `vectors[i·dim..]` is the vector of `ids[i]`.
    vectors: Vec<f32>,
}

impl std::fmt::Debug for IvfIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvfIndex")
            .field("items", &self.ids.len())
            .field("dim", &self.dim)
            .field("lists", &self.lists)
            .finish()
    }
}

/// For each row of `rows` (`dim` values each), the index of the centroid it scores highest
/// against (ties: the lower index).
fn assign(rows: &[f32], dim: usize, centroids: &Panels<f32>, lists: usize) -> Vec<u32> {
    rows.par_chunks(dim * 256)
        .flat_map_iter(|chunk| {
            chunk.chunks_exact(dim).map(|x| {
                let (mut best, mut at) = (f32::NEG_INFINITY, 0u32);
                for (p, panel) in centroids.panels().enumerate() {
                    let s = panel_mul(x, panel);
                    for (j, &v) in s.iter().enumerate().take(lists.saturating_sub(p * P)) {
                        if v > best {
                            (best, at) = (v, (p * P + j) as u32);
                        }
                    }
                }
                at
            })
        })
        .collect()
}

impl IvfIndex {
    /// Builds the index over `n` rows of `dim` values (row `i` is item `i`).
    ///
    /// # Panics
    /// If `table` does not hold `n × dim` values.
    pub fn build(table: &[f32], n: usize, dim: usize, cfg: &IvfConfig) -> IvfIndex {
        assert_eq!(table.len(), n * dim, "an item table of {n} × {dim} values");
        let lists = cfg.lists.clamp(1, n.max(1));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let sample: Vec<f32> = order[..cfg.sample.clamp(lists.min(n), n)]
            .iter()
            .flat_map(|&i| table[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        // The first centroids: the first `lists` sampled items.
        let mut cents: Vec<f32> = sample[..lists.min(n) * dim].to_vec();
        cents.resize(lists * dim, 0.0);
        let iters = if sample.is_empty() { 0 } else { cfg.iters };
        for _ in 0..iters {
            let panels = Panels::from_rows(&cents, lists, dim, |v| v);
            let cell = assign(&sample, dim, &panels, lists);
            let mut sums = vec![0.0f64; lists * dim];
            let mut counts = vec![0usize; lists];
            for (x, &c) in sample.chunks_exact(dim).zip(&cell) {
                counts[c as usize] += 1;
                for (s, &v) in sums[c as usize * dim..][..dim].iter_mut().zip(x) {
                    *s += f64::from(v);
                }
            }
            // An empty cell restarts at a random sampled item.
            for c in 0..lists {
                let dst = &mut cents[c * dim..(c + 1) * dim];
                if counts[c] == 0 {
                    let pick = rand::Rng::gen_range(&mut rng, 0..sample.len() / dim);
                    dst.copy_from_slice(&sample[pick * dim..(pick + 1) * dim]);
                } else {
                    for (d, &s) in dst.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                        *d = (s / counts[c] as f64) as f32;
                    }
                }
            }
        }
        let centroids = Panels::from_rows(&cents, lists, dim, |v| v);
        let cell = assign(table, dim, &centroids, lists);
        let mut offsets = vec![0usize; lists + 1];
        for &c in &cell {
            offsets[c as usize + 1] += 1;
        }
        for c in 0..lists {
            offsets[c + 1] += offsets[c];
        }
        let mut next = offsets.clone();
        let mut ids = vec![0u32; n];
        let mut vectors = vec![0.0f32; n * dim];
        for (i, &c) in cell.iter().enumerate() {
            let at = next[c as usize];
            next[c as usize] += 1;
            ids[at] = i as u32;
            vectors[at * dim..(at + 1) * dim].copy_from_slice(&table[i * dim..(i + 1) * dim]);
        }
        IvfIndex {
            dim,
            lists,
            centroids,
            offsets,
            ids,
            vectors,
        }
    }

    /// Items indexed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index holds no item.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Cells.
    pub fn lists(&self) -> usize {
        self.lists
    }

    /// Bytes the index holds (centroids, ids, the vectors' copy and the offsets).
    pub fn bytes(&self) -> usize {
        self.centroids.data.len() * P * 4
            + self.ids.len() * 4
            + self.vectors.len() * 4
            + self.offsets.len() * std::mem::size_of::<usize>()
    }

    /// The `k` items of the `probe` best cells that score highest against `query`, best
    /// first (ties: lower id first), leaving out `exclude`. Returns the items and how many
    /// were scored.
    ///
    /// # Panics
    /// If `query` does not hold `dim` values.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        probe: usize,
        exclude: &[u32],
    ) -> (Vec<(u32, f32)>, usize) {
        assert_eq!(
            query.len(),
            self.dim,
            "a query of dim = {} values",
            self.dim
        );
        let probe = probe.clamp(1, self.lists);
        // The cells' scores, then the `probe` best.
        let mut cells: Vec<(f32, u32)> = Vec::with_capacity(self.lists);
        for (p, panel) in self.centroids.panels().enumerate() {
            let s = panel_mul(query, panel);
            let width = (self.lists - p * P).min(P);
            cells.extend(
                s[..width]
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| (v, (p * P + j) as u32)),
            );
        }
        let by = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if probe < cells.len() {
            cells.select_nth_unstable_by(probe - 1, by);
            cells.truncate(probe);
        }
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
        let mut floor = f32::NEG_INFINITY;
        let mut scored = 0;
        for &(_, c) in &cells {
            let (lo, hi) = (self.offsets[c as usize], self.offsets[c as usize + 1]);
            scored += hi - lo;
            for (at, v) in
                (lo..hi).zip(self.vectors[lo * self.dim..hi * self.dim].chunks_exact(self.dim))
            {
                let s = dot(query, v);
                if s < floor || k == 0 {
                    continue;
                }
                let id = self.ids[at];
                if exclude.contains(&id) {
                    continue;
                }
                // Equal scores: the lower id first, as a full ranking orders them.
                let pos = best.partition_point(|&(i, b)| b > s || (b == s && i < id));
                best.insert(pos, (id, s));
                if best.len() > k {
                    best.pop();
                }
                if best.len() == k {
                    floor = best[k - 1].1;
                }
            }
        }
        (best, scored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// `n` vectors around `clusters` centres (a catalogue with structure, as trained item
    /// tables have), and their exact top-k for some queries.
    fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres: Vec<f32> = (0..clusters * dim)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        (0..n)
            .flat_map(|_| {
                let c = rng.gen_range(0..clusters);
                let centre = centres[c * dim..(c + 1) * dim].to_vec();
                let mut r = Xoshiro256PlusPlus::seed_from_u64(rng.gen());
                centre.into_iter().map(move |v| v + r.gen_range(-0.3..0.3))
            })
            .collect()
    }

    fn exact(table: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<u32> {
        super::super::tests::exact_top_k(table, dim, q, k, &[])
    }

    #[test]
    fn probing_every_cell_is_the_exact_ranking() {
        let (n, dim) = (3000, 16);
        let table = clustered(n, dim, 20, 1);
        let idx = IvfIndex::build(&table, n, dim, &IvfConfig::for_items(n));
        assert_eq!(idx.len(), n);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        for _ in 0..20 {
            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let (got, scored) = idx.search(&q, 10, idx.lists(), &[]);
            assert_eq!(scored, n);
            let got: Vec<u32> = got.iter().map(|p| p.0).collect();
            assert_eq!(got, exact(&table, dim, &q, 10));
        }
    }

    #[test]
    fn a_few_cells_find_most_of_the_top_ten_on_clustered_data() {
        let (n, dim) = (20_000, 32);
        let table = clustered(n, dim, 64, 3);
        let cfg = IvfConfig::for_items(n);
        let idx = IvfIndex::build(&table, n, dim, &cfg);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let (mut hits, mut total, mut scored_all) = (0, 0, 0);
        for _ in 0..100 {
            // Queries like user vectors: near some item.
            let i = rng.gen_range(0..n);
            let q: Vec<f32> = table[i * dim..(i + 1) * dim]
                .iter()
                .map(|v| v + rng.gen_range(-0.2..0.2))
                .collect();
            let want = exact(&table, dim, &q, 10);
            let (got, scored) = idx.search(&q, 10, cfg.probe * 4, &[]);
            scored_all += scored;
            hits += got.iter().filter(|p| want.contains(&p.0)).count();
            total += 10;
        }
        let recall = hits as f64 / total as f64;
        let share = scored_all as f64 / (100 * n) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
        assert!(share < 0.25, "scored {share} of the items");
    }

    #[test]
    fn excluded_items_never_come_back() {
        let (n, dim) = (500, 8);
        let table = clustered(n, dim, 5, 5);
        let idx = IvfIndex::build(&table, n, dim, &IvfConfig::for_items(n));
        let q = table[..dim].to_vec();
        let (all, _) = idx.search(&q, 5, idx.lists(), &[]);
        let drop: Vec<u32> = all.iter().take(2).map(|p| p.0).collect();
        let (rest, _) = idx.search(&q, 5, idx.lists(), &drop);
        assert!(rest.iter().all(|p| !drop.contains(&p.0)));
        assert_eq!(rest[0].0, all[2].0);
    }
}
