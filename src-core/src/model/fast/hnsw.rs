//! A graph index (HNSW, hierarchical navigable small world) for maximum-inner-product
//! search over the item table: the candidate generation the engine switches to once the
//! catalogue is large (`EngineConfig::ann_min_items`), where scoring every item per
//! request no longer fits the latency budget (issue 17, point 2).
//!
//! Inner products are not a distance, and the graph is built with them all the same
//! (ip-NSW, Morozov & Babenko, NeurIPS 2018): an item is linked to the items of highest
//! inner product with it, chosen by HNSW's heuristic (a candidate is kept when its inner
//! product with the new item beats its inner product with every link kept so far, which
//! keeps the graph navigable between clusters), and a search walks towards higher inner
//! products with the query. The textbook reduction to a distance (an extra coordinate
//! `√(M² − |x|²)` per item) was tried first and measured far worse: recall@10 0.52 against
//! 0.86 at the same depth on 20,000 random-weight items, 0.15 against 0.63 at a million.
//!
//! Written here rather than taken from a crate: the maintained Rust HNSW crates search by
//! a metric distance (inner product only as `1 − cos` of normalised vectors, which ranks
//! differently from the model's logits) over their own copy of the vectors (a second
//! 256 MB at a million items), and their inserts lock per node; this one reads the
//! model's own rows and builds in parallel batches (each batch's items search the graph as it was
//! before the batch, then the links are applied), so a build is deterministic for a seed
//! whatever the threads do. The IVF index beside it (`ivf`) needs a third of a
//! random-weight catalogue scored for recall 0.93; this graph 2% for 0.88
//! (docs/benchmarks.md#a-1m-item-catalogue).

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::kernels::dot;

/// How a graph is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswConfig {
    /// Links per item on the upper layers (twice this on the bottom layer): more, better
    /// recall and a slower build. 4 to 64; default 16.
    pub m: usize,
    /// Breadth of the search that finds a new item's links (default 100).
    pub ef_construction: usize,
    /// Seed of the insertion order and of the items' layers.
    pub seed: u64,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construction: 100,
            seed: 42,
        }
    }
}

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The best items kept by the filter, with their inner products, best first (ties:
    /// lower id first).
    pub items: Vec<(u32, f32)>,
    /// The highest inner product among every item the search scored, kept or not.
    pub best_seen: f32,
    /// Items scored.
    pub scored: usize,
}

/// A search candidate: higher score first, then lower id.
#[derive(Debug, Clone, Copy)]
struct Near {
    s: f32,
    id: u32,
}

impl Ord for Near {
    fn cmp(&self, o: &Self) -> Ordering {
        self.s.total_cmp(&o.s).then(o.id.cmp(&self.id))
    }
}

impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Near {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Near {}

/// Items a search has reached, by generation stamp (no clearing between searches).
struct Visited {
    mark: Vec<u32>,
    gen: u32,
}

impl Visited {
    fn start(&mut self, n: usize) {
        if self.mark.len() < n {
            self.mark.resize(n, 0);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.mark.fill(0);
            self.gen = 1;
        }
    }

    /// Marks `i`; whether it was new.
    fn first(&mut self, i: u32) -> bool {
        let m = &mut self.mark[i as usize];
        if *m == self.gen {
            false
        } else {
            *m = self.gen;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { mark: Vec::new(), gen: 0 }) };
}

/// Highest layer an item can be drawn for.
const MAX_LEVEL: usize = 16;

/// The graph. It holds links only: the vectors are the model's item rows, passed to
/// [`Hnsw::search`] (`table`, `n × dim` row-major, the table it was built over).
#[derive(Clone)]
pub struct Hnsw {
    n: usize,
    dim: usize,
    m: usize,
    m0: usize,
    level: Vec<u8>,
    /// Bottom-layer links: item `i`'s are `layer0[i·m0..][..deg[i]]`.
    layer0: Vec<u32>,
    deg: Vec<u8>,
    /// Layer `l ≥ 1`'s links, by item (only items drawn for that layer).
    upper: Vec<HashMap<u32, Vec<u32>>>,
    entry: u32,
    top: usize,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("items", &self.n)
            .field("dim", &self.dim)
            .field("m", &self.m)
            .field("layers", &(self.top + 1))
            .finish()
    }
}

impl Hnsw {
    /// Builds the graph over `n` rows of `dim` values (row `i` is item `i`), in parallel
    /// batches on rayon's pool.
    ///
    /// # Panics
    /// If `table` does not hold `n × dim` values, or `n` exceeds `u32::MAX`.
    pub fn build(table: &[f32], n: usize, dim: usize, cfg: &HnswConfig) -> Hnsw {
        assert_eq!(table.len(), n * dim, "an item table of {n} × {dim} values");
        assert!(u32::try_from(n).is_ok(), "at most u32::MAX items");
        let m = cfg.m.clamp(2, 64);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let ml = 1.0 / (m as f64).ln();
        let level: Vec<u8> = (0..n)
            .map(|_| {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                ((-u.ln() * ml) as usize).min(MAX_LEVEL) as u8
            })
            .collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut rng);
        let mut g = Hnsw {
            n,
            dim,
            m,
            m0: 2 * m,

            layer0: vec![0; n * 2 * m],
            deg: vec![0; n],
            upper: vec![HashMap::new(); level.iter().copied().max().unwrap_or(0) as usize],
            level,
            entry: order.first().copied().unwrap_or(0),
            top: 0,
        };
        let Some(&first) = order.first() else {
            return g;
        };
        g.top = g.level[first as usize] as usize;
        for l in 1..=g.top {
            g.upper[l - 1].insert(first, Vec::new());
        }
        let ef = cfg.ef_construction.max(m);
        let mut done = 1;
        while done < n {
            // Items of a batch do not see each other, only the graph before the batch:
            // batches stay a small share of it.
            let end = (done + (done / 16).clamp(1, 8192)).min(n);
            let nodes = &order[done..end];
            let plans: Vec<Vec<Vec<u32>>> =
                nodes.par_iter().map(|&q| g.plan(table, q, ef)).collect();
            for (&q, plan) in nodes.iter().zip(&plans) {
                for l in 1..=g.level[q as usize] as usize {
                    g.upper[l - 1].insert(q, Vec::new());
                }
                for (l, links) in plan.iter().enumerate() {
                    g.set_links(q, l, links.clone());
                }
            }
            // Links back from each item reached, grouped by (layer, item), the lists that
            // overflow pruned by the same heuristic.
            let mut back: Vec<(u8, u32, u32)> = nodes
                .iter()
                .zip(&plans)
                .flat_map(|(&q, plan)| {
                    plan.iter()
                        .enumerate()
                        .flat_map(move |(l, links)| links.iter().map(move |&t| (l as u8, t, q)))
                })
                .collect();
            back.sort_unstable();
            let groups: Vec<&[(u8, u32, u32)]> =
                back.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1).collect();
            let updates: Vec<(usize, u32, Vec<u32>)> = groups
                .par_iter()
                .map(|grp| {
                    let (l, t) = (grp[0].0 as usize, grp[0].1);
                    let mut links = g.links(t, l).to_vec();
                    links.extend(grp.iter().map(|x| x.2));
                    let cap = if l == 0 { g.m0 } else { g.m };
                    if links.len() > cap {
                        links = g.shrink(table, t, &links, cap);
                    }
                    (l, t, links)
                })
                .collect();
            for (l, t, links) in updates {
                g.set_links(t, l, links);
            }
            for &q in nodes {
                if g.level[q as usize] as usize > g.top {
                    g.top = g.level[q as usize] as usize;
                    g.entry = q;
                }
            }
            done = end;
        }
        g
    }

    /// Items indexed.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the index holds no item.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Layers.
    pub fn layers(&self) -> usize {
        self.top + 1
    }

    /// Bytes the graph holds (links, degrees, layers; the upper layers' maps estimated at
    /// their entries' size).
    pub fn bytes(&self) -> usize {
        let upper: usize = self
            .upper
            .iter()
            .map(|h| h.values().map(|v| 4 * v.capacity() + 40).sum::<usize>())
            .sum();
        self.layer0.len() * 4 + self.deg.len() + self.level.len() + upper
    }

    fn row<'a>(&self, table: &'a [f32], i: u32) -> &'a [f32] {
        &table[i as usize * self.dim..][..self.dim]
    }

    fn links(&self, i: u32, l: usize) -> &[u32] {
        if l == 0 {
            &self.layer0[i as usize * self.m0..][..self.deg[i as usize] as usize]
        } else {
            self.upper[l - 1].get(&i).map_or(&[], Vec::as_slice)
        }
    }

    fn set_links(&mut self, i: u32, l: usize, links: Vec<u32>) {
        if l == 0 {
            let at = i as usize * self.m0;
            self.layer0[at..at + links.len()].copy_from_slice(&links);
            self.deg[i as usize] = links.len() as u8;
        } else {
            self.upper[l - 1].insert(i, links);
        }
    }

    /// The inner product of two items.
    fn between(&self, table: &[f32], a: u32, b: u32) -> f32 {
        dot(self.row(table, a), self.row(table, b))
    }

    /// The best `ef` items of layer `l` reachable from `entries` by `score`, among those
    /// `keep` admits (the walk crosses the others), best first.
    #[allow(clippy::too_many_arguments)]
    fn search_layer(
        &self,
        entries: &[Near],
        ef: usize,
        l: usize,
        score: &impl Fn(u32) -> f32,
        keep: &impl Fn(u32) -> bool,
        vis: &mut Visited,
        stats: &mut (usize, f32),
    ) -> Vec<Near> {
        let ef = ef.max(1);
        vis.start(self.n);
        let mut cand: BinaryHeap<Near> = BinaryHeap::new();
        let mut res: BinaryHeap<Reverse<Near>> = BinaryHeap::new();
        for &e in entries {
            if vis.first(e.id) {
                cand.push(e);
                if keep(e.id) {
                    res.push(Reverse(e));
                }
            }
        }
        while res.len() > ef {
            res.pop();
        }
        while let Some(c) = cand.pop() {
            if res.len() >= ef && res.peek().is_some_and(|w| c < w.0) {
                break;
            }
            for &nb in self.links(c.id, l) {
                if !vis.first(nb) {
                    continue;
                }
                let near = Near {
                    s: score(nb),
                    id: nb,
                };
                stats.0 += 1;
                if near.s > stats.1 {
                    stats.1 = near.s;
                }
                if res.len() < ef || res.peek().is_some_and(|w| near > w.0) {
                    cand.push(near);
                    if keep(nb) {
                        res.push(Reverse(near));
                        if res.len() > ef {
                            res.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Near> = res.into_iter().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// Down the upper layers greedily from the entry point to layer `to + 1`; the nearest
    /// item found there.
    fn descend(
        &self,
        score: &impl Fn(u32) -> f32,
        to: usize,
        vis: &mut Visited,
        stats: &mut (usize, f32),
    ) -> Vec<Near> {
        let mut ep = vec![Near {
            s: score(self.entry),
            id: self.entry,
        }];
        stats.0 += 1;
        stats.1 = stats.1.max(ep[0].s);
        for l in (to + 1..=self.top).rev() {
            ep = self.search_layer(&ep, 1, l, score, &|_| true, vis, stats);
            ep.truncate(1);
        }
        ep
    }

    /// The links a new item `q` gets on each of its layers (that exist yet).
    fn plan(&self, table: &[f32], q: u32, ef: usize) -> Vec<Vec<u32>> {
        let x = self.row(table, q);
        let score = |i: u32| dot(x, self.row(table, i));
        let lq = (self.level[q as usize] as usize).min(self.top);
        VISITED.with(|v| {
            let vis = &mut v.borrow_mut();
            let mut stats = (0, f32::NEG_INFINITY);
            let mut ep = self.descend(&score, lq, vis, &mut stats);
            let mut plan = vec![Vec::new(); lq + 1];
            for l in (0..=lq).rev() {
                let found = self.search_layer(&ep, ef, l, &score, &|_| true, vis, &mut stats);
                plan[l] = self.select(table, &found, self.m);
                ep = found;
            }
            plan
        })
    }

    /// HNSW's heuristic: from `cands` (best first, scored against the item being linked),
    /// each one nearer that item than every one kept so far, up to `cap`.
    fn select(&self, table: &[f32], cands: &[Near], cap: usize) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(cap);
        for c in cands {
            if out.len() >= cap {
                break;
            }
            if out.iter().all(|&r| self.between(table, c.id, r) < c.s) {
                out.push(c.id);
            }
        }
        out
    }

    /// `links` of item `t`, cut to `cap` by the heuristic.
    fn shrink(&self, table: &[f32], t: u32, links: &[u32], cap: usize) -> Vec<u32> {
        let mut cands: Vec<Near> = links
            .iter()
            .map(|&i| Near {
                s: self.between(table, t, i),
                id: i,
            })
            .collect();
        cands.sort_unstable_by(|a, b| b.cmp(a));
        cands.dedup_by_key(|c| c.id);
        self.select(table, &cands, cap)
    }

    /// The `k` items of highest inner product with `query` that `keep` admits, searching
    /// `ef` deep (at least `k`; more: better recall, slower). `table` is the table the
    /// graph was built over.
    ///
    /// # Panics
    /// If `query` does not hold `dim` values or `table` is not `n × dim`.
    pub fn search(
        &self,
        table: &[f32],
        query: &[f32],
        k: usize,
        ef: usize,
        keep: impl Fn(u32) -> bool,
    ) -> Found {
        assert_eq!(
            query.len(),
            self.dim,
            "a query of dim = {} values",
            self.dim
        );
        assert_eq!(
            table.len(),
            self.n * self.dim,
            "the table the graph was built over"
        );
        if self.n == 0 || k == 0 {
            return Found {
                best_seen: f32::NEG_INFINITY,
                ..Found::default()
            };
        }
        let score = |i: u32| dot(query, self.row(table, i));
        VISITED.with(|v| {
            let vis = &mut v.borrow_mut();
            let mut stats = (0, f32::NEG_INFINITY);
            let ep = self.descend(&score, 0, vis, &mut stats);
            let found = self.search_layer(&ep, ef.max(k), 0, &score, &keep, vis, &mut stats);
            Found {
                items: found.iter().take(k).map(|c| (c.id, c.s)).collect(),
                best_seen: stats.1,
                scored: stats.0,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::exact_top_k as exact;
    use super::*;

    fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    #[test]
    fn searching_as_deep_as_the_catalogue_is_the_exact_ranking() {
        let (n, dim) = (2000, 16);
        let table = random(n, dim, 1);
        let g = Hnsw::build(&table, n, dim, &HnswConfig::default());
        assert_eq!(g.len(), n);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        for _ in 0..20 {
            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let found = g.search(&table, &q, 10, n, |_| true);
            let got: Vec<u32> = found.items.iter().map(|p| p.0).collect();
            assert_eq!(got, exact(&table, dim, &q, 10, &[]));
            let best = found.items[0].1;
            assert_eq!(found.best_seen, best);
        }
    }

    #[test]
    fn a_modest_depth_finds_most_of_the_top_ten_visiting_few_items() {
        let (n, dim) = (20_000, 32);
        let table = random(n, dim, 3);
        let g = Hnsw::build(&table, n, dim, &HnswConfig::default());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let (mut hits, mut scored) = (0, 0);
        for _ in 0..100 {
            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let want = exact(&table, dim, &q, 10, &[]);
            let found = g.search(&table, &q, 10, 100, |_| true);
            scored += found.scored;
            hits += found.items.iter().filter(|p| want.contains(&p.0)).count();
        }
        let recall = hits as f64 / 1000.0;
        let share = scored as f64 / (100 * n) as f64;
        assert!(recall >= 0.9, "recall@10 {recall}");
        assert!(share < 0.2, "scored {share} of the items");
    }

    #[test]
    fn filtered_items_never_come_back_and_the_rest_fill_in() {
        let (n, dim) = (3000, 8);
        let table = random(n, dim, 5);
        let g = Hnsw::build(&table, n, dim, &HnswConfig::default());
        let q = table[..dim].to_vec();
        let all = g.search(&table, &q, 5, n, |_| true);
        let drop: Vec<u32> = all.items.iter().take(2).map(|p| p.0).collect();
        let rest = g.search(&table, &q, 5, n, |i| !drop.contains(&i));
        assert!(rest.items.iter().all(|p| !drop.contains(&p.0)));
        let got: Vec<u32> = rest.items.iter().map(|p| p.0).collect();
        assert_eq!(got, exact(&table, dim, &q, 5, &drop));
        // The best item seen counts the filtered ones too.
        assert_eq!(rest.best_seen, all.items[0].1);
    }

    #[test]
    fn builds_are_deterministic_and_tiny_catalogues_work() {
        let (n, dim) = (500, 8);
        let table = random(n, dim, 6);
        let a = Hnsw::build(&table, n, dim, &HnswConfig::default());
        let b = Hnsw::build(&table, n, dim, &HnswConfig::default());
        assert_eq!(a.layer0, b.layer0);
        assert_eq!(a.deg, b.deg);
        for n in [0, 1, 2, 7] {
            let t = random(n, 4, 7);
            let g = Hnsw::build(&t, n, 4, &HnswConfig::default());
            let found = g.search(&t, &[1.0, 0.0, 0.0, 0.0], 3, 10, |_| true);
            assert_eq!(found.items.len(), n.min(3));
        }
    }
}
