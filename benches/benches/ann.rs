//! The IVF index (`attune::model::fast::IvfIndex`) over a large catalogue: build time and
//! memory, and for several probe counts the recall@10 against exact full scoring and the
//! search latency, with user vectors from the attention model (random weights: speed does
//! not depend on what the model learned; recall does, see docs/benchmarks.md).
//!
//! `cargo bench -p attune-benches --bench ann`. Environment: `ANN_ITEMS` (default
//! 1,000,000), `ANN_LISTS` (default `IvfConfig::for_items`), `ANN_QUERIES` (default 200),
//! `ANN_PROBES` (comma-separated, default `8,32,128`).

use std::time::Instant;

use attune::model::fast::{FastModel, IvfConfig, IvfIndex};
use attune::model::{fresh, Config};
use attune_benches::{env_or as env, rss_kib};
use candle_core::Device;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n = env("ANN_ITEMS", 1_000_000);
    let queries = env("ANN_QUERIES", 200);
    let cfg = Config {
        n_items: n,
        dim: 64,
        layers: 2,
        heads: 2,
        max_len: 200,
        ..Config::default()
    };
    let t = Instant::now();
    let (_vars, model) = fresh(&cfg, &Device::Cpu, 42).expect("random model");
    let fast = FastModel::from_model(&model).expect("fast model");
    drop(model);
    println!(
        "model: {n} items, d 64, random weights ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let mut ivf = IvfConfig::for_items(n);
    ivf.lists = env("ANN_LISTS", ivf.lists);
    ivf.sample = (ivf.lists * 64).min(n);
    let (rss0, _) = rss_kib();
    let t = Instant::now();
    let index = IvfIndex::build(fast.item_table(), n, 64, &ivf);
    let build = t.elapsed().as_secs_f64();
    let (rss1, peak) = rss_kib();
    println!(
        "index: {} lists, sample {}, {} iterations: built in {build:.1} s; {:.0} MiB held ({:.0} MiB RSS growth, peak RSS {:.0} MiB)",
        index.lists(),
        ivf.sample,
        ivf.iters,
        index.bytes() as f64 / (1 << 20) as f64,
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    // User vectors: sessions of random histories encoded by the model.
    let users: Vec<Vec<f32>> = (0..queries)
        .map(|q| {
            let mut x = (q as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let hist: Vec<u32> = (0..50)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % n as u64) as u32
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
    let probes: Vec<usize> = std::env::var("ANN_PROBES")
        .unwrap_or_else(|_| "8,32,128".into())
        .split(',')
        .map(|p| p.trim().parse().expect("ANN_PROBES: numbers"))
        .collect();
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
        lat.sort_by(f64::total_cmp);
        println!(
            "probe {probe:>4}: recall@10 {:.3}, {:.1}% of the items scored, p50 {:.3} ms, p99 {:.3} ms (one thread)",
            hits as f64 / (10 * queries) as f64,
            100.0 * scored as f64 / (queries * n) as f64,
            lat[lat.len() / 2],
            lat[(lat.len() * 99 / 100).min(lat.len() - 1)]
        );
    }
}
