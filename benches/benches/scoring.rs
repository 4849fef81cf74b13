//! Serving benchmarks of the attention model on the CPU, at ml-1m size (3,615 items,
//! d = 64, 2 layers, 2 heads, max_len 200, random weights): an incremental session push,
//! one user's catalogue scoring and top-10, a batch of 64 users, full re-encodes (the
//! plain-Rust `FastModel` against candle's `SeqRec`), and f16 / bf16 / int8 item tables
//! against f32.
//!
//! Run with `cargo bench -p attune-benches --bench scoring`. Medians (p50) are in
//! `target/criterion/<group>/<bench>/new/estimates.json`.

use std::hint::black_box;
use std::time::Duration;

use attune::model::fast::{FastModel, ScoreDtype, SessionState};
use attune::model::{fresh, Config, SeqRec};
use candle_core::{Device, IndexOp, Tensor};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const N_ITEMS: usize = 3615;
const BATCH: usize = 64;

fn config() -> Config {
    Config {
        n_items: N_ITEMS,
        dim: 64,
        layers: 2,
        heads: 2,
        max_len: 200,
        ..Config::default()
    }
}

fn models() -> (SeqRec, FastModel) {
    let (_vars, model) = fresh(&config(), &Device::Cpu, 42).expect("random model");
    let fast = FastModel::from_model(&model).expect("fast model");
    (model, fast)
}

/// A deterministic history of `len` items (a multiplicative congruential walk).
fn history(len: usize, seed: u64) -> Vec<u32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % N_ITEMS as u64) as u32
        })
        .collect()
}

fn state(fast: &FastModel, len: usize, seed: u64) -> SessionState {
    fast.encode(&history(len, seed)).expect("encode")
}

fn push(c: &mut Criterion) {
    let (_, fast) = models();
    let mut g = c.benchmark_group("session/push");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    // 199 → 200 is the last push before the window is full; at 200 every push rebases
    // (re-encodes the last 100 items), which happens once per 100 pushes. `warm`: the state
    // was cloned just before (its caches are in L2); `cold`: clones are made in batches,
    // so the pushed state's caches mostly come from L3 or memory, as for a user who has
    // not been served for a while.
    for (name, len, size) in [
        ("warm/len-20", 20, BatchSize::PerIteration),
        ("warm/len-199", 199, BatchSize::PerIteration),
        ("warm/len-200-rebase", 200, BatchSize::PerIteration),
        ("cold/len-20", 20, BatchSize::SmallInput),
        ("cold/len-199", 199, BatchSize::SmallInput),
    ] {
        let s = state(&fast, len, 1);
        g.bench_function(name, |b| {
            b.iter_batched(
                || s.clone(),
                |mut s| {
                    fast.push(&mut s, 7).expect("push");
                    s
                },
                size,
            )
        });
    }
    g.finish();
}

fn one_user(c: &mut Criterion) {
    let (model, fast) = models();
    let s = state(&fast, 200, 2);
    let user = s.user_vector().expect("warm").to_vec();
    let mut g = c.benchmark_group("score/one-user");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(N_ITEMS as u64));
    for dtype in ScoreDtype::ALL {
        let m = fast.clone().with_score_dtype(dtype);
        let mut out = vec![0.0; N_ITEMS];
        g.bench_function(BenchmarkId::new("score_all", format!("{dtype:?}")), |b| {
            b.iter(|| m.score_all(black_box(&user), &mut out))
        });
        // The serving call: all items scored, the window's items excluded, top 10.
        g.bench_function(BenchmarkId::new("top10", format!("{dtype:?}")), |b| {
            b.iter(|| m.top_k(black_box(&user), 10, s.items()))
        });
    }
    // For comparison: the same logits through candle's gemm, copied back.
    let h = Tensor::from_vec(user.clone(), (1, 64), &Device::Cpu).expect("h");
    g.bench_function("score_all/candle-matmul", |b| {
        b.iter(|| {
            model
                .next_logits(black_box(&h))
                .expect("logits")
                .flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("copy")
        })
    });
    g.finish();
}

fn batch(c: &mut Criterion) {
    let (model, fast) = models();
    let states: Vec<SessionState> = (0..BATCH)
        .map(|u| state(&fast, 20 + u, 100 + u as u64))
        .collect();
    let vecs: Vec<f32> = states
        .iter()
        .flat_map(|s| s.user_vector().expect("warm").to_vec())
        .collect();
    let excludes: Vec<&[u32]> = states.iter().map(|s| s.items()).collect();
    let mut g = c.benchmark_group("score/batch-64");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for dtype in [ScoreDtype::F32, ScoreDtype::F16, ScoreDtype::Int8] {
        let m = fast.clone().with_score_dtype(dtype);
        g.bench_function(BenchmarkId::new("top10", format!("{dtype:?}")), |b| {
            b.iter(|| m.top_k_batch(black_box(&vecs), 10, &excludes))
        });
    }
    // `FastModel::score_batch` hands f32 batches of 8 or more to candle's gemm.
    let mut out = vec![0.0; BATCH * N_ITEMS];
    g.bench_function("score_batch/F32", |b| {
        b.iter(|| fast.score_batch(black_box(&vecs), &mut out))
    });
    // The same logits through candle's gemm (runtime-dispatched SIMD), copied back.
    let h = Tensor::from_vec(vecs.clone(), (BATCH, 64), &Device::Cpu).expect("h");
    g.bench_function("score_batch/candle-matmul", |b| {
        b.iter(|| {
            model
                .next_logits(black_box(&h))
                .expect("logits")
                .flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("copy")
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let (model, fast) = models();
    let items = history(200, 3);
    let tokens: Vec<u32> = items.iter().map(|i| i + 1).collect();
    let tokens = Tensor::from_vec(tokens, (1, 200), &Device::Cpu).expect("tokens");
    let mut g = c.benchmark_group("encode/200");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    g.bench_function("fast", |b| {
        b.iter(|| fast.encode(black_box(&items)).expect("encode"))
    });
    g.bench_function("candle", |b| {
        b.iter(|| {
            let h = model.encode(black_box(&tokens), None).expect("encode");
            h.i((0, 199)).expect("last").to_vec1::<f32>().expect("copy")
        })
    });
    g.finish();
}

criterion_group!(benches, push, one_user, batch, encode);
criterion_main!(benches);
