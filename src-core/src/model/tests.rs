//! Tests of the attention model: it learns, it saves and loads exactly, every parameter
//! learns, and bad configurations are refused with a message naming the field.

use candle_core::{DType, Device, Tensor};

use super::checkpoint::Checkpoint;
use super::scorer::SeqScorer;
use super::seqrec::fresh;
use super::train::{train, TrainConfig};
use super::Config;
use crate::baselines;
use crate::data::{Dataset, DatasetBuilder};
use crate::eval::{evaluate_scorer, Holdout, Split};
use crate::event::EventKind;

/// Users who first visit three of 15 popular hub items, then walk a ring of 60 items
/// from a random start: the next item is obvious from the last one, while popularity
/// points at the hubs.
fn ring_data(users: usize) -> Dataset {
    let mut b = DatasetBuilder::new("ring");
    for u in 0..users {
        let name = format!("u{u}");
        for (j, hub) in [u % 15, (u + 5) % 15, (u + 10) % 15]
            .into_iter()
            .enumerate()
        {
            b.push(&name, &format!("h{hub}"), j as i64, EventKind::Click, 0.0);
        }
        let start = (u * 7) % 60;
        for j in 0..9 {
            let item = (start + j) % 60;
            let kind = if j % 3 == 0 {
                EventKind::Purchase
            } else {
                EventKind::Click
            };
            b.push(&name, &format!("i{item}"), 10 + j as i64 * 1000, kind, 0.0);
        }
    }
    b.finish()
}

fn tiny_config() -> TrainConfig {
    TrainConfig {
        model: Config {
            dim: 16,
            layers: 1,
            heads: 2,
            max_len: 12,
            dropout: 0.1,
            ..Config::default()
        },
        epochs: 30,
        lr: 1e-2,
        batch: 32,
        patience: 30,
        ..TrainConfig::default()
    }
}

#[test]
fn learns_an_obvious_sequential_pattern_and_beats_popularity() {
    let data = ring_data(300);
    let dir = tempfile::tempdir().expect("tempdir");
    let report = train(&data, &tiny_config(), dir.path(), false, &mut |_| {}).expect("trains");
    let holdout = Holdout::new(&data, Split::Test).expect("holdout");
    let pop = baselines::fit("pop", holdout.train()).expect("pop");
    let pop_m = evaluate_scorer(&holdout, pop.as_ref(), 10).expect("pop eval");
    assert!(report.test.hr > 0.9, "the ring is easy: {:?}", report.test);
    assert!(
        report.test.ndcg > pop_m.ndcg + 0.3,
        "model {:?} vs pop {pop_m:?}",
        report.test
    );
    assert!(report.tasks_present.contains(&"purchase".to_string()));
    // The checkpoint re-evaluates to the same figures through the public path.
    let ck = Checkpoint::load(dir.path(), &Device::Cpu, DType::F32).expect("loads");
    let scorer = SeqScorer::new("seq", ck, &data.item_names);
    let m = evaluate_scorer(&holdout, &scorer, 10).expect("eval");
    assert!(
        (m.ndcg - report.test.ndcg).abs() < 1e-9,
        "{m:?} vs {:?}",
        report.test
    );
}

#[test]
fn training_is_deterministic_and_resumes_exactly() {
    let data = ring_data(60);
    let mut cfg = tiny_config();
    cfg.epochs = 4;
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let ra = train(&data, &cfg, a.path(), false, &mut |_| {}).expect("a");
    // Train 2 epochs, then resume to 4.
    let mut half = cfg.clone();
    half.epochs = 2;
    train(&data, &half, b.path(), false, &mut |_| {}).expect("b half");
    let rb = train(&data, &cfg, b.path(), true, &mut |_| {}).expect("b resumed");
    let losses =
        |r: &super::train::TrainReport| r.history.iter().map(|h| h.loss).collect::<Vec<_>>();
    assert_eq!(losses(&ra), losses(&rb));
    assert_eq!(ra.test, rb.test);
    let wa = std::fs::read(a.path().join("model.safetensors")).expect("weights a");
    let wb = std::fs::read(b.path().join("model.safetensors")).expect("weights b");
    assert_eq!(wa, wb, "same seed, same weights");
    // Training into a directory that holds a model without --resume is refused.
    let err = train(&data, &cfg, a.path(), false, &mut |_| {}).expect_err("refused");
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn refit_trains_the_best_epoch_count_on_the_validation_targets_too_deterministically() {
    let data = ring_data(60);
    let mut cfg = tiny_config();
    cfg.epochs = 4;
    cfg.window_stride = 4;
    let plain = tempfile::tempdir().expect("plain");
    let rp = train(&data, &cfg, plain.path(), false, &mut |_| {}).expect("plain");
    assert_eq!(rp.refit_epochs, None);
    cfg.refit = true;
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let mut refit_epochs = 0;
    let ra = train(&data, &cfg, a.path(), false, &mut |ev| {
        if let super::train::TrainEvent::Refit { .. } = ev {
            refit_epochs += 1;
        }
    })
    .expect("a");
    let rb = train(&data, &cfg, b.path(), false, &mut |_| {}).expect("b");
    // The selection run is the plain run; the kept model is the refit one.
    let curve = |r: &super::train::TrainReport| {
        r.history
            .iter()
            .map(|h| (h.loss, h.validation))
            .collect::<Vec<_>>()
    };
    assert_eq!(curve(&ra), curve(&rp));
    assert_eq!(ra.best_epoch, rp.best_epoch);
    assert_eq!(ra.validation, rp.validation);
    assert_eq!(ra.refit_epochs, Some(rp.best_epoch));
    assert_eq!(refit_epochs, rp.best_epoch);
    let weights = |d: &tempfile::TempDir| std::fs::read(d.path().join("model.safetensors"));
    assert_ne!(weights(&a).expect("a"), weights(&plain).expect("plain"));
    assert_eq!(
        weights(&a).expect("a"),
        weights(&b).expect("b"),
        "deterministic"
    );
    assert_eq!(ra.test, rb.test);
}

#[test]
fn every_parameter_gets_a_gradient() {
    let cfg = Config {
        n_items: 30,
        dim: 16,
        layers: 2,
        heads: 2,
        max_len: 8,
        dropout: 0.0,
        ..Config::default()
    };
    let (varmap, model) = fresh(&cfg, &Device::Cpu, 3).expect("model");
    let tokens =
        Tensor::new(&[[1u32, 5, 9, 2, 0, 0], [3, 4, 5, 6, 7, 8]], &Device::Cpu).expect("tokens");
    let h = model
        .encode(&tokens, None)
        .expect("encode")
        .reshape((12, 16))
        .expect("flat");
    let items =
        Tensor::new(&[1u32, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], &Device::Cpu).expect("items");
    let loss = (super::loss::softmax_cross_entropy(&h, &model.item_table().expect("t"), &items)
        .expect("ce")
        + model
            .like_logits(&h, &items)
            .expect("like")
            .mean_all()
            .expect("m"))
    .expect("sum");
    let loss = (loss
        + model
            .purchase_logits(&h, &items)
            .expect("buy")
            .mean_all()
            .expect("m"))
    .expect("sum");
    let grads = loss.backward().expect("backward");
    let data = varmap.data().lock().expect("lock");
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm = g
            .sqr()
            .expect("sq")
            .sum_all()
            .expect("sum")
            .to_scalar::<f32>()
            .expect("scalar");
        assert!(norm > 0.0, "{name}: zero gradient");
    }
}

#[test]
fn bad_configurations_are_refused_clearly() {
    let data = ring_data(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = tiny_config();
    cfg.model.dim = 15;
    let err = train(&data, &cfg, dir.path(), false, &mut |_| {}).expect_err("dim");
    assert!(err.to_string().contains("dim"), "{err}");
    let mut cfg = tiny_config();
    cfg.device = "tpu".into();
    let err = train(&data, &cfg, dir.path(), false, &mut |_| {}).expect_err("device");
    assert!(err.to_string().contains("unknown device"), "{err}");
    let err = train(
        &Dataset::default(),
        &tiny_config(),
        dir.path(),
        false,
        &mut |_| {},
    )
    .expect_err("empty");
    assert!(
        err.to_string().contains("empty") || err.to_string().contains("no interactions"),
        "{err}"
    );
    let mut cfg = tiny_config();
    cfg.lr = 0.0;
    assert!(train(&data, &cfg, dir.path(), false, &mut |_| {})
        .expect_err("lr")
        .to_string()
        .contains("lr"));
}

#[test]
fn a_missing_or_mismatched_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err =
        Checkpoint::load(dir.path().join("nope"), &Device::Cpu, DType::F32).expect_err("missing");
    assert!(err.to_string().contains("no such checkpoint"), "{err}");
    let cfg = Config {
        n_items: 5,
        dim: 8,
        heads: 2,
        layers: 1,
        max_len: 4,
        ..Config::default()
    };
    let (varmap, _) = fresh(&cfg, &Device::Cpu, 1).expect("model");
    let items: Vec<String> = (0..5).map(|i| format!("i{i}")).collect();
    super::checkpoint::save(dir.path(), &varmap, &cfg, &items).expect("save");
    let mut bigger = cfg.clone();
    bigger.dim = 16;
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&bigger).expect("json"),
    )
    .expect("write");
    let err = Checkpoint::load(dir.path(), &Device::Cpu, DType::F32).expect_err("mismatch");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn a_warm_start_trains_reports_its_initialisation_and_resumes_only_with_it() {
    use super::train::{init, train_with_init};
    let data = ring_data(60);
    // Text vectors that tell the ring's items from the hubs.
    let mut table = crate::text::TextTable::new(24);
    for (i, name) in data.item_names.iter().enumerate() {
        let mut v = vec![0.05_f32; 24];
        let n: usize = name[1..].parse().expect("number");
        v[if name.starts_with('h') {
            n % 4
        } else {
            4 + n % 20
        }] = 1.0;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        table.set(i as crate::event::ItemId, &v);
    }
    let mut cfg = tiny_config();
    cfg.epochs = 2;
    let init = init::from_text(&table, data.n_items(), cfg.model.dim, "toy").expect("init");
    let dir = tempfile::tempdir().expect("tempdir");
    let report =
        train_with_init(&data, &cfg, dir.path(), false, Some(&init), &mut |_| {}).expect("trains");
    assert_eq!(report.init.as_ref().map(|i| i.source.as_str()), Some("toy"));
    assert_eq!(report.train.init_from_text.as_deref(), Some("toy"));
    let card = std::fs::read_to_string(dir.path().join("MODEL.md")).expect("card");
    assert!(card.contains("projected to dim 16 by PCA"), "{card}");
    assert!(card.contains("## Validation curve"), "{card}");
    assert!(card.contains("| 2"), "one row per evaluated epoch: {card}");
    // Resuming without the same initialisation is refused.
    let mut more = cfg.clone();
    more.epochs = 3;
    let err = train(&data, &more, dir.path(), true, &mut |_| {}).expect_err("refused");
    assert!(err.to_string().contains("initialisation"), "{err}");
    // A table of the wrong size is refused before anything is written.
    let other = tempfile::tempdir().expect("other");
    let small = init::from_text(&table, data.n_items() - 1, 16, "toy").expect("init");
    let err = train_with_init(&data, &cfg, other.path(), false, Some(&small), &mut |_| {})
        .expect_err("refused");
    assert!(err.to_string().contains("initial item table"), "{err}");
    assert!(std::fs::read_dir(other.path())
        .expect("dir")
        .next()
        .is_none());
}

/// The CUDA path agrees with the CPU: the shipped checkpoint's next-item scores for 64
/// seeded histories within 1e-3 and the same top 10 (`scripts/gpu-check.sh` runs it on a
/// GPU machine; compiled only with the `cuda` feature).
#[cfg(feature = "cuda")]
#[test]
fn cuda_scores_agree_with_the_cpu() {
    use rand::{Rng, SeedableRng};
    let gpu = Device::new_cuda(0).expect("a CUDA device (this test needs a GPU)");
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/synthetic-default");
    let cpu_ck = Checkpoint::load(&dir, &Device::Cpu, DType::F32).expect("cpu checkpoint");
    let gpu_ck = Checkpoint::load(&dir, &gpu, DType::F32).expect("gpu checkpoint");
    let cfg = cpu_ck.model.config().clone();
    let (users, len) = (64usize, cfg.max_len.min(50));
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(17);
    let tokens: Vec<u32> = (0..users * len)
        .map(|_| rng.gen_range(1..=cfg.n_items as u32))
        .collect();
    let scores = |ck: &Checkpoint, device: &Device| -> Vec<Vec<f32>> {
        let t = Tensor::from_vec(tokens.clone(), (users, len), device).expect("tokens");
        let h = ck.model.encode(&t, None).expect("encode");
        let last = h
            .narrow(1, len - 1, 1)
            .expect("last")
            .squeeze(1)
            .expect("squeeze");
        ck.model
            .next_logits(&last)
            .expect("logits")
            .to_device(&Device::Cpu)
            .expect("to cpu")
            .to_vec2()
            .expect("rows")
    };
    let (cpu, gpu) = (scores(&cpu_ck, &Device::Cpu), scores(&gpu_ck, &gpu));
    let top10 = |row: &[f32]| {
        let mut idx: Vec<usize> = (0..row.len()).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        idx.truncate(10);
        idx
    };
    let mut worst = 0.0f32;
    for (u, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        for (a, b) in c.iter().zip(g) {
            worst = worst.max((a - b).abs());
        }
        assert_eq!(top10(c), top10(g), "user {u}: the top 10 differ");
    }
    assert!(worst <= 1e-3, "largest score difference {worst}");
    println!("cuda agreement: {users} users, largest score difference {worst:e}");
}
