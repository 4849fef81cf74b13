//! The baselines' memory on a large catalogue: item-kNN neighbour lists and transitions,
//! fitted offline (`attune::baselines`) and counted online by the engine's learner
//! (`attune::engine::sources::OnlineCounts`), over synthetic data from `attune generate`'s
//! generator.
//!
//! `cargo bench -p attune-benches --bench baselines_scale`. Environment: `SCALE_ITEMS`
//! (default 1,000,000), `SCALE_USERS` (default 100,000), `SCALE_KNN_ALL=true` (also fits
//! item-kNN keeping every neighbour, which the bound exists for; needs memory),
//! `SCALE_ONLINE=false` (skips the online counts).

use std::time::Instant;

use attune::baselines::{ItemKnn, Markov, MarkovConfig, TrainSet};
use attune::data::Seq;
use attune::engine::sources::OnlineCounts;
use attune::synth::{Generator, SynthConfig};
use attune_benches::{env_or as env, rss_kib};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn rss_mib() -> f64 {
    rss_kib().0 as f64 / 1024.0
}

fn main() {
    let items = env("SCALE_ITEMS", 1_000_000);
    let users = env("SCALE_USERS", 100_000);
    let t = Instant::now();
    let gen = Generator::new(SynthConfig {
        users,
        items,
        ..SynthConfig::default()
    })
    .expect("generator");
    let seqs: Vec<Vec<u32>> = (0..users)
        .map(|u| {
            gen.user_events(u)
                .iter()
                .filter_map(|e| e.action.item())
                .map(|i| i.as_str()[1..].parse::<u32>().expect("i<n> item ids"))
                .collect()
        })
        .collect();
    let events: usize = seqs.iter().map(Vec::len).sum();
    let ts: Vec<i64> = vec![0; seqs.iter().map(Vec::len).max().unwrap_or(0)];
    println!(
        "data: {users} users, {items} items, {events} interactions ({:.1} s); RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        rss_mib()
    );
    let train = TrainSet {
        n_items: items,
        users: seqs
            .iter()
            .map(|s| Seq {
                items: s,
                ts: &ts[..s.len()],
            })
            .collect(),
    };
    let fit = |name: &str, f: &dyn Fn() -> (usize, usize)| {
        let before = rss_mib();
        let t = Instant::now();
        let (nnz, bytes) = f();
        let (_, peak) = rss_kib();
        println!(
            "{name}: {nnz} entries, {:.0} MiB ({:.1} bytes/interaction), fitted in {:.1} s; peak RSS {:.0} MiB (from {before:.0})",
            mib(bytes),
            bytes as f64 / events as f64,
            t.elapsed().as_secs_f64(),
            peak as f64 / 1024.0,
        );
    };
    fit("markov transitions", &|| {
        Markov::fit(&train, MarkovConfig::default()).footprint()
    });
    fit("itemknn (default bound)", &|| {
        ItemKnn::fit(&train).footprint()
    });
    if env("SCALE_KNN_ALL", false) {
        fit("itemknn (every neighbour)", &|| {
            ItemKnn::fit_bounded(&train, usize::MAX).footprint()
        });
    }
    if env("SCALE_ONLINE", true) {
        let before = rss_mib();
        let t = Instant::now();
        let mut counts = OnlineCounts::with_half_life(100_000);
        counts.ensure_items(items);
        for s in &seqs {
            for (k, &i) in s.iter().enumerate() {
                counts.observe(i, &s[k.saturating_sub(8)..k]);
            }
        }
        let counted = t.elapsed().as_secs_f64();
        let snap = counts.snapshot(None, true);
        let rows: usize = snap
            .successors
            .iter()
            .chain(snap.neighbours.iter())
            .map(|r| r.len())
            .sum();
        let (raw, raw_bytes) = counts.footprint();
        let (_, peak) = rss_kib();
        println!(
            "online counts: {raw} raw entries, about {:.0} MiB ({:.1} bytes/interaction), counted in {counted:.1} s; snapshot {rows} entries ({:.0} MiB) in {:.1} s; RSS {:.0} MiB (from {before:.0}), peak {:.0} MiB",
            mib(raw_bytes),
            raw_bytes as f64 / events as f64,
            mib(rows * 8),
            t.elapsed().as_secs_f64() - counted,
            rss_mib(),
            peak as f64 / 1024.0,
        );
    }
}
