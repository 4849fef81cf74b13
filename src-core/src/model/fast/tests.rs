//! The fast model against candle's: bit-for-bit or 1e-4 agreement of encodes, pushes,
//! rebases, scores and heads; snapshots; the kernels and conversions.

use super::*;
use candle_core::{Device, IndexOp};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::model::seqrec::fresh;

/// The exact `k` best rows of `table` (`dim` values each) for query `q`, leaving out
/// `exclude`: what the indices (`hnsw`, `ivf`) are measured against.
pub(super) fn exact_top_k(
    table: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    exclude: &[u32],
) -> Vec<u32> {
    let mut scores: Vec<f32> = table.chunks_exact(dim).map(|v| dot(q, v)).collect();
    top_k_of(&mut scores, k, exclude)
        .into_iter()
        .map(|p| p.0)
        .collect()
}

fn small_config(n_items: usize, max_len: usize) -> Config {
    Config {
        n_items,
        dim: 32,
        layers: 2,
        heads: 2,
        max_len,
        ..Config::default()
    }
}

/// A seeded random model whose biases, offsets and LayerNorm gains are random too, so
/// that every parameter takes part in the comparisons.
fn random_model(cfg: &Config, seed: u64) -> SeqRec {
    let (varmap, model) = fresh(cfg, &Device::Cpu, seed).expect("fresh model");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed);
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let is_gain = name.contains("ln") && name.ends_with("weight");
        if !(name.ends_with("bias") || name.ends_with("offset") || is_gain) {
            continue;
        }
        let base = if is_gain { 1.0 } else { 0.0 };
        let n = var.shape().elem_count();
        let vals: Vec<f32> = (0..n).map(|_| base + rng.gen_range(-0.3f32..0.3)).collect();
        var.set(&Tensor::from_vec(vals, var.shape().clone(), &Device::Cpu).expect("tensor"))
            .expect("set");
    }
    drop(data);
    model
}

fn history(rng: &mut impl Rng, len: usize, n_items: usize) -> Vec<u32> {
    (0..len).map(|_| rng.gen_range(0..n_items as u32)).collect()
}

/// The candle model's hidden state at the last position of `window`.
fn candle_user_vec(model: &SeqRec, window: &[u32]) -> Tensor {
    let tokens: Vec<u32> = window.iter().map(|i| i + 1).collect();
    let t = Tensor::from_vec(tokens, (1, window.len()), &Device::Cpu).expect("tokens");
    let h = model.encode(&t, None).expect("encode");
    h.i((0, window.len() - 1))
        .expect("last")
        .unsqueeze(0)
        .expect("row")
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn incremental_push_matches_a_full_candle_encode_at_every_prefix() {
    let cfg = small_config(300, 64);
    let model = random_model(&cfg, 1);
    let fast = FastModel::from_model(&model).expect("fast");
    let items = history(&mut Xoshiro256PlusPlus::seed_from_u64(2), 40, cfg.n_items);
    let mut s = fast.new_session();
    let mut logits = vec![0.0; cfg.n_items];
    for len in 1..=items.len() {
        fast.push(&mut s, items[len - 1]).expect("push");
        let h = candle_user_vec(&model, &items[..len]);
        let want_h = h.flatten_all().expect("f").to_vec1::<f32>().expect("v");
        let user = s.user_vector().expect("warm");
        assert_close(user, &want_h, 1e-4, &format!("user vector at {len}"));
        let want = model
            .next_logits(&h)
            .expect("logits")
            .flatten_all()
            .expect("f");
        fast.score_all(user, &mut logits);
        assert_close(
            &logits,
            &want.to_vec1::<f32>().expect("v"),
            1e-4,
            &format!("logits at {len}"),
        );
    }
    assert_eq!(s.items(), &items[..]);
}

#[test]
fn odd_shapes_match_candle() {
    // Widths that are not multiples of the kernels' chunks, and three heads.
    let cfg = Config {
        n_items: 37,
        dim: 24,
        layers: 1,
        heads: 3,
        max_len: 40,
        ffn_mult: 3,
        ..Config::default()
    };
    let model = random_model(&cfg, 16);
    let fast = FastModel::from_model(&model).expect("fast");
    let items = history(&mut Xoshiro256PlusPlus::seed_from_u64(17), 35, cfg.n_items);
    let mut s = fast.new_session();
    let mut logits = vec![0.0; cfg.n_items];
    for len in 1..=items.len() {
        fast.push(&mut s, items[len - 1]).expect("push");
        let h = candle_user_vec(&model, &items[..len]);
        let want = model
            .next_logits(&h)
            .expect("logits")
            .flatten_all()
            .expect("f");
        fast.score_all(s.user_vector().expect("warm"), &mut logits);
        assert_close(
            &logits,
            &want.to_vec1::<f32>().expect("v"),
            1e-4,
            &format!("logits at {len}"),
        );
    }
}

#[test]
fn encode_equals_repeated_push() {
    let cfg = small_config(100, 16);
    let fast = FastModel::from_model(&random_model(&cfg, 3)).expect("fast");
    let items = history(&mut Xoshiro256PlusPlus::seed_from_u64(4), 16, cfg.n_items);
    let mut s = fast.new_session();
    for &i in &items {
        fast.push(&mut s, i).expect("push");
    }
    let e = fast.encode(&items).expect("encode");
    assert_eq!(e.items(), s.items());
    assert_eq!(e.user, s.user);
    assert!(e.layers == s.layers, "caches differ");
    // A longer history keeps its most recent max_len items.
    let mut long = history(&mut Xoshiro256PlusPlus::seed_from_u64(5), 10, cfg.n_items);
    long.extend(&items);
    let e = fast.encode(&long).expect("encode");
    assert_eq!(e.items(), &items[..]);
    assert_eq!(e.user, s.user);
    assert!(fast.encode(&[cfg.n_items as u32]).is_err());
    assert!(fast.push(&mut s, cfg.n_items as u32).is_err());
    assert_eq!(s.len(), 16, "a failed push leaves the state alone");
}

#[test]
fn rebase_keeps_half_the_window_and_equals_a_full_encode_of_it() {
    let cfg = small_config(120, 16);
    let model = random_model(&cfg, 6);
    let fast = FastModel::from_model(&model).expect("fast");
    let items = history(&mut Xoshiro256PlusPlus::seed_from_u64(7), 41, cfg.n_items);
    let mut s = fast.new_session();
    for (n, &i) in items.iter().enumerate() {
        fast.push(&mut s, i).expect("push");
        // Windows grow 1..=16, then restart at 9 (8 kept + 1) and grow to 16 again.
        let want_len = if n < 16 { n + 1 } else { 9 + (n - 16) % 8 };
        assert_eq!(s.len(), want_len, "after {} pushes", n + 1);
        assert_eq!(s.items(), &items[n + 1 - want_len..=n]);
    }
    let e = fast.encode(s.items()).expect("encode");
    assert_eq!(e.user, s.user);
    assert!(e.layers == s.layers, "caches differ");
    let want = candle_user_vec(&model, s.items());
    let want = want.flatten_all().expect("f").to_vec1::<f32>().expect("v");
    assert_close(
        s.user_vector().expect("warm"),
        &want,
        1e-4,
        "user vector after rebases",
    );
}

#[test]
fn scoring_agrees_with_candle() {
    let cfg = small_config(257, 32);
    let model = random_model(&cfg, 8);
    let fast = FastModel::from_model(&model).expect("fast");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    let users: Vec<SessionState> = (0..5)
        .map(|u| {
            fast.encode(&history(&mut rng, 5 + 4 * u, cfg.n_items))
                .expect("encode")
        })
        .collect();
    let vecs: Vec<f32> = users
        .iter()
        .flat_map(|s| s.user_vector().expect("warm").to_vec())
        .collect();
    let h = Tensor::from_vec(vecs.clone(), (users.len(), cfg.dim), &Device::Cpu).expect("h");
    let want = model
        .next_logits(&h)
        .expect("logits")
        .to_vec2::<f32>()
        .expect("v");
    let (like, buy) = model.task_logits_all(&h).expect("tasks");
    let (like, buy) = (
        candle_nn::ops::sigmoid(&like)
            .expect("s")
            .to_vec2::<f32>()
            .expect("v"),
        candle_nn::ops::sigmoid(&buy)
            .expect("s")
            .to_vec2::<f32>()
            .expect("v"),
    );
    let n = cfg.n_items;
    let mut batch = vec![0.0; users.len() * n];
    fast.score_batch(&vecs, &mut batch);
    let candidates = [0u32, 17, 256, 3, 3];
    for (u, s) in users.iter().enumerate() {
        let user = s.user_vector().expect("warm");
        let mut all = vec![0.0; n];
        fast.score_all(user, &mut all);
        assert_close(&all, &want[u], 1e-4, "score_all");
        assert_close(&batch[u * n..(u + 1) * n], &want[u], 1e-4, "score_batch");

        let mut cand = vec![0.0; candidates.len()];
        fast.score_candidates(user, &candidates, &mut cand)
            .expect("candidates");
        let want_c: Vec<f32> = candidates.iter().map(|&c| want[u][c as usize]).collect();
        assert_close(&cand, &want_c, 1e-4, "score_candidates");

        let tasks = fast.task_scores(user, &candidates).expect("tasks");
        for (t, &c) in tasks.iter().zip(&candidates) {
            assert_eq!(t.item, c);
            assert!((t.next - want[u][c as usize]).abs() < 1e-4);
            assert!(
                (t.like - like[u][c as usize]).abs() < 1e-5,
                "like {} vs {}",
                t.like,
                like[u][c as usize]
            );
            assert!((t.purchase - buy[u][c as usize]).abs() < 1e-5);
        }

        // Reference top-k: a full sort of candle's logits without the excluded items.
        let exclude: Vec<u32> = s.items().to_vec();
        let mut order: Vec<u32> = (0..n as u32).filter(|i| !exclude.contains(i)).collect();
        order.sort_by(|&a, &b| {
            want[u][b as usize]
                .total_cmp(&want[u][a as usize])
                .then(a.cmp(&b))
        });
        let top = fast.top_k(user, 10, &exclude);
        assert_eq!(top.len(), 10);
        let got: Vec<u32> = top.iter().map(|&(i, _)| i).collect();
        assert_eq!(got, order[..10].to_vec());
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
        assert!(top.iter().all(|(i, _)| !exclude.contains(i)));
        let batch_top = fast.top_k_batch(&vecs, 10, &[]);
        assert_eq!(batch_top[u], fast.top_k(user, 10, &[]));
    }
    // A batch large enough for the gemm path gives the panel kernels' logits.
    let many: Vec<f32> = vecs.iter().cycle().take(4 * vecs.len()).copied().collect();
    let mut big = vec![0.0; 4 * users.len() * n];
    fast.score_batch(&many, &mut big);
    for (u, row) in big.chunks_exact(n).enumerate() {
        assert_close(row, &want[u % users.len()], 1e-4, "gemm score_batch");
    }
    let tops = fast.top_k_batch(&many, 10, &[]);
    let ids = |t: &[(u32, f32)]| t.iter().map(|p| p.0).collect::<Vec<_>>();
    let one = fast.top_k(&vecs[2 * cfg.dim..3 * cfg.dim], 10, &[]);
    assert_eq!(
        ids(&tops[7]),
        ids(&one),
        "same items (logits differ in the last bits)"
    );
    assert!(fast
        .score_candidates(&vecs[..cfg.dim], &[n as u32], &mut [0.0])
        .is_err());
    assert!(fast.task_scores(&vecs[..cfg.dim], &[n as u32]).is_err());
}

#[test]
fn top_k_of_handles_small_catalogues_ties_and_exclusions() {
    let mut s = vec![1.0, 3.0, 3.0, f32::NAN, 2.0, 0.5];
    assert_eq!(
        top_k_of(&mut s.clone(), 3, &[]),
        vec![(1, 3.0), (2, 3.0), (4, 2.0)]
    );
    assert_eq!(top_k_of(&mut s.clone(), 0, &[]), vec![]);
    let all = top_k_of(&mut s, 10, &[2, 99]);
    assert_eq!(all, vec![(1, 3.0), (4, 2.0), (0, 1.0), (5, 0.5)]);
}

#[test]
fn half_conversions_match_candles() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(10);
    let mut xs: Vec<f32> = (0..4000)
        .map(|i| rng.gen_range(-4.0f32..4.0) * 0.1f32.powi(i % 5))
        .collect();
    xs.extend([
        0.0,
        -0.0,
        1.0,
        65504.0,
        65519.0,
        -2.5e-3,
        6.103_515_6e-5,
        0.333_333_34,
    ]);
    let t = Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu).expect("t");
    let f16s = t
        .to_dtype(DType::F16)
        .expect("f16")
        .to_dtype(DType::F32)
        .expect("f32");
    let bf16s = t
        .to_dtype(DType::BF16)
        .expect("bf16")
        .to_dtype(DType::F32)
        .expect("f32");
    let (f16s, bf16s) = (
        f16s.to_vec1::<f32>().expect("v"),
        bf16s.to_vec1::<f32>().expect("v"),
    );
    for ((&x, &h), &b) in xs.iter().zip(&f16s).zip(&bf16s) {
        let ours = f16_to_f32(f32_to_f16(x));
        if x.abs() >= 6.103_515_6e-5 {
            assert_eq!(ours.to_bits(), h.to_bits(), "f16 of {x}");
        } else {
            assert_eq!(ours.abs(), 0.0, "{x} flushes to zero");
        }
        assert_eq!(
            bf16_to_f32(f32_to_bf16(x)).to_bits(),
            b.to_bits(),
            "bf16 of {x}"
        );
    }
}

#[test]
fn compact_tables_top10_agrees_with_f32() {
    let cfg = Config {
        n_items: 2000,
        dim: 32,
        layers: 1,
        heads: 2,
        max_len: 32,
        ..Config::default()
    };
    let f32m = FastModel::from_model(&random_model(&cfg, 11)).expect("fast");
    let f16m = f32m.clone().with_score_dtype(ScoreDtype::F16);
    let bf16m = f32m.clone().with_score_dtype(ScoreDtype::BF16);
    let i8m = f32m.clone().with_score_dtype(ScoreDtype::Int8);
    assert!(
        f16m.is_current(&f32m.new_session()),
        "sessions survive a dtype switch"
    );
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    let (mut overlap16, mut top1_16, mut overlapb, mut top1_b) = (0, 0, 0, 0);
    let (mut overlap8, mut top1_8) = (0, 0);
    let users = 100;
    let mut vecs = Vec::new();
    for _ in 0..users {
        let len = rng.gen_range(1..=cfg.max_len);
        let s = f32m
            .encode(&history(&mut rng, len, cfg.n_items))
            .expect("encode");
        let user = s.user_vector().expect("warm");
        vecs.extend_from_slice(user);
        let want: Vec<u32> = f32m
            .top_k(user, 10, s.items())
            .iter()
            .map(|p| p.0)
            .collect();
        for (m, overlap, top1) in [
            (&f16m, &mut overlap16, &mut top1_16),
            (&bf16m, &mut overlapb, &mut top1_b),
            (&i8m, &mut overlap8, &mut top1_8),
        ] {
            let got: Vec<u32> = m.top_k(user, 10, s.items()).iter().map(|p| p.0).collect();
            *overlap += got.iter().filter(|i| want.contains(i)).count();
            *top1 += usize::from(got[0] == want[0]);
        }
    }
    assert!(
        overlap16 >= 9 * users,
        "f16 top-10 overlap {overlap16} / {}",
        10 * users
    );
    assert!(top1_16 >= 95, "f16 top-1 agreement {top1_16} / {users}");
    assert!(
        overlapb >= 9 * users,
        "bf16 top-10 overlap {overlapb} / {}",
        10 * users
    );
    assert!(top1_b >= 90, "bf16 top-1 agreement {top1_b} / {users}");
    assert!(
        overlap8 >= 9 * users,
        "int8 top-10 overlap {overlap8} / {}",
        10 * users
    );
    assert!(top1_8 >= 90, "int8 top-1 agreement {top1_8} / {users}");
    // The batch path reads the same compact table as one user alone (bf16 and int8 alone
    // take kernels of their own, so they agree only to rounding).
    for m in [&f16m, &bf16m, &i8m] {
        let mut one = vec![0.0; cfg.n_items];
        let mut all = vec![0.0; users * cfg.n_items];
        m.score_batch(&vecs, &mut all);
        m.score_all(&vecs[..cfg.dim], &mut one);
        let worst = one
            .iter()
            .zip(&all[..cfg.n_items])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let exact = m.score_dtype() == ScoreDtype::F16;
        assert!(
            if exact { worst == 0.0 } else { worst < 1e-4 },
            "{}: batch and single differ by {worst}",
            m.score_dtype()
        );
    }
    // Back to f32: the same scores as the model never compacted.
    let back = i8m.clone().with_score_dtype(ScoreDtype::F32);
    let (mut a, mut b) = (vec![0.0; cfg.n_items], vec![0.0; cfg.n_items]);
    f32m.score_all(&vecs[..cfg.dim], &mut a);
    back.score_all(&vecs[..cfg.dim], &mut b);
    assert_eq!(a, b);
    assert_eq!(
        [&f32m, &f16m, &i8m].map(|m| m.scoring_bytes_per_item()),
        [4 * 32, 2 * 32, 32 + 4]
    );
    eprintln!("f16: overlap {overlap16}/1000, top-1 {top1_16}/100; bf16: overlap {overlapb}/1000, top-1 {top1_b}/100; int8: overlap {overlap8}/1000, top-1 {top1_8}/100");
}

#[test]
fn a_deserialised_state_is_cold_until_refreshed_and_then_identical() {
    let cfg = small_config(50, 16);
    let fast = FastModel::from_model(&random_model(&cfg, 13)).expect("fast");
    let s = fast
        .encode(&history(
            &mut Xoshiro256PlusPlus::seed_from_u64(14),
            12,
            cfg.n_items,
        ))
        .expect("encode");
    let json = serde_json::to_string(&s).expect("serialise");
    assert!(json.starts_with("{\"items\":["), "{json}");
    let mut back: SessionState = serde_json::from_str(&json).expect("deserialise");
    assert!(!back.is_warm() && back.user_vector().is_none());
    assert!(fast.refresh(&mut back).expect("refresh"));
    assert!(
        !fast.refresh(&mut back).expect("refresh"),
        "already current"
    );
    assert_eq!(back.user, s.user);
    assert!(back.layers == s.layers);
    // A push onto a cold state refreshes it first.
    let mut cold: SessionState = serde_json::from_str(&json).expect("deserialise");
    let mut warm = s.clone();
    fast.push(&mut cold, 7).expect("push");
    fast.push(&mut warm, 7).expect("push");
    assert_eq!(cold.user, warm.user);
    // A state of another model is re-encoded by this one.
    let other = FastModel::from_model(&random_model(&cfg, 15)).expect("fast");
    let mut moved = s.clone();
    assert!(!other.is_current(&moved));
    other.push(&mut moved, 7).expect("push");
    assert_eq!(moved.user, other.encode(warm.items()).expect("encode").user);
    assert!(
        fast.new_session().user_vector().is_none(),
        "an empty session has no vector"
    );
}
