//! Candidate generation over a large catalogue: the graph index the engine uses
//! (`attune::model::fast::Hnsw`) and the IVF index it was chosen over. Build time and
//! memory, and per search depth (HNSW) or probe count (IVF) the recall@10 against exact
//! full scoring and the search latency, with user vectors from the attention model
//! encoding 50 random items (random weights unless `ANN_MODEL` names a checkpoint: speed
//! does not depend on what the model learned; recall does, see docs/benchmarks.md).
//!
//! `cargo bench -p attune-benches --bench ann`. Environment: `ANN_ITEMS` (default
//! 1,000,000), `ANN_MODEL=DIR` (a checkpoint instead of random weights; `ANN_ITEMS` is
//! then its catalogue), `ANN_QUERIES` (default 200), `ANN_M` (links per item, default
//! 16), `ANN_EFC` (build breadth, default 100), `ANN_EFS` (comma-separated search depths,
//! default `50,100,200,400`), `ANN_PROBES` (comma-separated IVF probe counts; none by
//! default: the IVF index is built only when set), `ANN_LISTS` (IVF cells),
//! `ANN_K` (candidates a search returns, default 10; recall@10 counts the exact top 10
//! among them), `ANN_HISTORY_ITEMS` (histories draw from the first N items: a `--whole-catalogue`
//! model's items with interactions).

use std::time::Instant;

use attune::model::fast::{FastModel, Hnsw, HnswConfig, IvfConfig, IvfIndex};
use attune::model::{fresh, Config};
use attune_benches::{env_or as env, rss_kib};
use candle_core::Device;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let queries = env("ANN_QUERIES", 200);
    let t = Instant::now();
    let fast = match std::env::var_os("ANN_MODEL") {
        Some(dir) => {
            let ck = attune::model::checkpoint::Checkpoint::load(
                std::path::Path::new(&dir),
                &Device::Cpu,
                candle_core::DType::F32,
            )
            .expect("ANN_MODEL: a checkpoint");
            let f = FastModel::from_model(&ck.model).expect("fast model");
            println!(
                "model: {} ({} items, d {}), trained ({:.1} s)",
                dir.to_string_lossy(),
                f.n_items(),
                f.dim(),
                t.elapsed().as_secs_f64()
            );
            f
        }
        None => {
            let n = env("ANN_ITEMS", 1_000_000);
            let cfg = Config {
                n_items: n,
                dim: 64,
                layers: 2,
                heads: 2,
                max_len: 200,
                ..Config::default()
            };
            let (_vars, model) = fresh(&cfg, &Device::Cpu, 42).expect("random model");
            let f = FastModel::from_model(&model).expect("fast model");
            println!(
                "model: {n} items, d 64, random weights ({:.1} s)",
                t.elapsed().as_secs_f64()
            );
            f
        }
    }
    .with_gemm(false);
    let (n, dim) = (fast.n_items(), fast.dim());
    let hnsw_cfg = HnswConfig {
        m: env("ANN_M", 16),
        ef_construction: env("ANN_EFC", 100),
        ..HnswConfig::default()
    };
    let (rss0, _) = rss_kib();
    let t = Instant::now();
    let graph = Hnsw::build(fast.item_table(), n, dim, &hnsw_cfg);
    let build = t.elapsed().as_secs_f64();
    let (rss1, peak) = rss_kib();
    println!(
        "hnsw: m {}, ef_construction {}, {} layers: built in {build:.1} s ({} threads); {:.0} MiB held ({:.0} MiB RSS growth, peak RSS {:.0} MiB)",
        hnsw_cfg.m,
        hnsw_cfg.ef_construction,
        graph.layers(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        graph.bytes() as f64 / (1 << 20) as f64,
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let probes: Vec<usize> = list("ANN_PROBES", "");
    let ivf = (!probes.is_empty()).then(|| {
        let mut ivf = IvfConfig::for_items(n);
        ivf.lists = env("ANN_LISTS", ivf.lists);
        ivf.sample = (ivf.lists * 64).min(n);
        let t = Instant::now();
        let index = IvfIndex::build(fast.item_table(), n, dim, &ivf);
        println!(
            "ivf: {} lists, sample {}, {} iterations: built in {:.1} s; {:.0} MiB held",
            index.lists(),
            ivf.sample,
            ivf.iters,
            t.elapsed().as_secs_f64(),
            index.bytes() as f64 / (1 << 20) as f64,
        );
        index
    });
    // Histories draw from the first `ANN_HISTORY_ITEMS` items (default all): with
    // `--whole-catalogue` those are the items with interactions.
    let history_items = env("ANN_HISTORY_ITEMS", n).clamp(1, n);
    // User vectors: sessions of random histories encoded by the model.
    let users: Vec<Vec<f32>> = (0..queries)
        .map(|q| {
            let mut x = (q as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let hist: Vec<u32> = (0..50)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % history_items as u64) as u32
                })
                .collect();
            let s = fast.encode(&hist).expect("encode");
            s.user_vector().expect("warm").to_vec()
        })
        .collect();
    let t = Instant::now();
    let exact: Vec<Vec<u32>> = users
        .iter()
        .map(|u| fast.top_k(u, 10, &[]).into_iter().map(|p| p.0).collect())
        .collect();
    println!(
        "exact full scoring: {:.2} ms a query (one thread)",
        t.elapsed().as_secs_f64() * 1e3 / queries as f64
    );
    let report = |what: String, lat: &mut Vec<f64>, hits: usize, scored: usize| {
        lat.sort_by(f64::total_cmp);
        println!(
            "{what}: recall@10 {:.3}, {:.2}% of the items scored, p50 {:.3} ms, p99 {:.3} ms (one thread)",
            hits as f64 / (10 * queries) as f64,
            100.0 * scored as f64 / (queries * n) as f64,
            lat[lat.len() / 2],
            lat[(lat.len() * 99 / 100).min(lat.len() - 1)]
        );
    };
    // Candidates a search returns: the engine asks for the strategy's `candidates` (50 by
    // default) and ranks them; recall@10 counts the exact top 10 found among them.
    let k = env("ANN_K", 10).max(10);
    for ef in list("ANN_EFS", "50,100,200,400") {
        let mut lat = Vec::with_capacity(queries);
        let (mut hits, mut scored) = (0usize, 0usize);
        for (u, want) in users.iter().zip(&exact) {
            let t = Instant::now();
            let found = graph.search(fast.item_table(), u, k, ef, |_| true);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            scored += found.scored;
            hits += found.items.iter().filter(|p| want.contains(&p.0)).count();
        }
        report(format!("hnsw k {k} ef {ef:>4}"), &mut lat, hits, scored);
    }
    let Some(index) = ivf else { return };
    for probe in probes {
        let mut lat = Vec::with_capacity(queries);
        let (mut hits, mut scored) = (0usize, 0usize);
        for (u, want) in users.iter().zip(&exact) {
            let t = Instant::now();
            let (got, s) = index.search(u, 10, probe, &[]);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            scored += s;
            hits += got.iter().filter(|p| want.contains(&p.0)).count();
        }
        report(format!("ivf probe {probe:>4}"), &mut lat, hits, scored);
    }
}

/// A comma-separated list of numbers from the environment.
fn list(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var}: numbers"))
        })
        .collect()
}
