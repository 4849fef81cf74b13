//! End-to-end: `attune train` writes a complete checkpoint and model card that
//! `attune eval --model seq:DIR` reads back with the same figures; bad flags fail clearly;
//! the checkpoint shipped in `models/` loads and ranks the synthetic default data.

use attune_tests::{attune, ok_stdout};
use std::path::{Path, PathBuf};

/// A temporary directory with a small generated data set (150 users, 60 items) in it.
fn small_data() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d.jsonl");
    let d = data.to_str().expect("path");
    ok_stdout(&attune(&[
        "generate", "--out", d, "--users", "150", "--items", "60", "--seed", "3",
    ]));
    (dir, data)
}

#[test]
fn train_then_eval_the_checkpoint() {
    let (dir, data) = small_data();
    let d = data.to_str().expect("path");
    let out = dir.path().join("m");
    let o = out.to_str().expect("path");
    let text = ok_stdout(&attune(&[
        "train",
        "--data",
        d,
        "--format",
        "jsonl",
        "--out",
        o,
        "--epochs",
        "3",
        "--dim",
        "16",
        "--heads",
        "2",
        "--layers",
        "1",
        "--max-len",
        "20",
        "--batch",
        "32",
    ]));
    assert!(text.contains("best epoch"), "{text}");
    for f in [
        "model.safetensors",
        "config.json",
        "items.json",
        "metrics.json",
        "MODEL.md",
    ] {
        assert!(out.join(f).is_file(), "{f} is missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).expect("metrics"))
            .expect("json");
    let model = format!("seq:{o}");
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&attune(&[
        "eval", "--data", d, "--format", "jsonl", "--model", &model, "--json",
    ])))
    .expect("json");
    let got = v["results"][0]["ndcg"].as_f64().expect("ndcg");
    let want = metrics["test"]["ndcg"].as_f64().expect("test ndcg");
    assert!((got - want).abs() < 1e-9, "eval {got} vs model card {want}");

    // Training again into the same directory without --resume is refused.
    let again = attune(&[
        "train", "--data", d, "--format", "jsonl", "--out", o, "--epochs", "1",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
}

#[test]
fn settings_left_out_come_from_the_data_and_say_why() {
    let (dir, data) = small_data();
    let d = data.to_str().expect("path");
    let out = dir.path().join("m");
    let o = out.to_str().expect("path");
    let run = attune(&[
        "train", "--data", d, "--format", "jsonl", "--out", o, "--epochs", "1", "--dim", "16",
        "--layers", "1", "--batch", "32",
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    // A small data set: short overlapping windows and more dropout, each with its reason.
    assert!(err.contains("settings from the data (150 users"), "{err}");
    assert!(err.contains("is small data"), "{err}");
    assert!(err.contains("overridden by flags: --batch"), "{err}");
    assert!(
        err.contains("training with max_len 50, window stride 25, dropout 0.5, batch 32"),
        "{err}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["max_len"], 50, "{config}");
    // The two refit flags contradict each other.
    let both = attune(&["train", "--synthetic", "--out", o, "--refit", "--no-refit"]);
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("--no-refit"));
}

#[test]
fn bad_training_flags_fail_with_the_field_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = dir.path().join("m");
    let o = o.to_str().expect("path");
    for (flags, needle) in [
        (vec!["--dim", "30", "--heads", "4"], "dim"),
        (vec!["--device", "tpu"], "unknown device"),
        (vec!["--dropout", "1.5"], "dropout"),
        (vec!["--lr", "0"], "lr"),
    ] {
        let mut args = vec!["train", "--synthetic", "--out", o, "--epochs", "1"];
        args.extend(flags.iter().copied());
        let out = attune(&args);
        assert!(!out.status.success(), "{flags:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    let out = attune(&["eval", "--synthetic", "--model", "seq:/nonexistent/model"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such checkpoint"));
}

#[test]
fn the_shipped_checkpoint_ranks_the_synthetic_default() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/synthetic-default");
    if !dir.exists() {
        panic!("models/synthetic-default is missing: the demo needs it");
    }
    let model = format!("seq:{}", dir.display());
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&attune(&[
        "eval",
        "--synthetic",
        "--model",
        "pop",
        "--model",
        &model,
        "--json",
    ])))
    .expect("json");
    let pop = v["results"][0]["ndcg"].as_f64().expect("pop");
    let seq = v["results"][1]["ndcg"].as_f64().expect("seq");
    assert!(
        seq > pop * 2.0,
        "the shipped model should beat popularity clearly: {v}"
    );
    // The compact item tables score nearly as well; an unknown precision is refused.
    for dtype in ["f16", "bf16", "int8"] {
        let c: serde_json::Value = serde_json::from_str(&ok_stdout(&attune(&[
            "eval",
            "--synthetic",
            "--model",
            &model,
            "--score-dtype",
            dtype,
            "--json",
        ])))
        .expect("json");
        let ndcg = c["results"][0]["ndcg"].as_f64().expect("ndcg");
        assert!(
            (ndcg - seq).abs() <= 0.01 * seq && ndcg != 0.0,
            "{dtype}: NDCG@10 {ndcg} against f32 {seq}"
        );
    }
    let out = attune(&[
        "eval",
        "--synthetic",
        "--model",
        &model,
        "--score-dtype",
        "f8",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown score dtype \"f8\""), "{err}");
    // What the heads know: the synthetic data holds purchases, so the purchase head's
    // AUC is reported beside popularity's; baselines alone have no heads to measure.
    let h: serde_json::Value = serde_json::from_str(&ok_stdout(&attune(&[
        "eval",
        "--synthetic",
        "--model",
        &model,
        "--heads",
        "--json",
    ])))
    .expect("json");
    let buy = h["heads"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["task"] == "purchase"))
        .unwrap_or_else(|| panic!("no purchase head in {h}"));
    let (auc, cases) = (buy["auc"].as_f64().expect("auc"), buy["cases"].as_u64());
    assert!((0.0..=1.0).contains(&auc) && cases > Some(100), "{buy}");
    let out = attune(&["eval", "--synthetic", "--model", "pop", "--heads"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--heads: no seq:DIR model"));
}

#[test]
fn a_warm_start_from_text_trains_and_a_missing_encoder_is_a_clear_error() {
    let (dir, data) = small_data();
    let d = data.to_str().expect("path");
    let small = [
        "--format",
        "jsonl",
        "--epochs",
        "2",
        "--dim",
        "16",
        "--heads",
        "2",
        "--layers",
        "1",
        "--max-len",
        "20",
        "--batch",
        "32",
    ];
    // A directory that holds no checkpoint: the error names the file, nothing is written.
    let out = dir.path().join("none");
    let o = out.to_str().expect("path");
    let mut args = vec![
        "train",
        "--data",
        d,
        "--out",
        o,
        "--init-from-text",
        "/nonexistent/enc",
    ];
    args.extend(small);
    let failed = attune(&args);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("/nonexistent/enc"), "{err}");
    assert!(!out.exists(), "nothing written on a failed start");

    let Some(encoder) = attune_tests::encoder_dir() else {
        return;
    };
    let out = dir.path().join("warm");
    let o = out.to_str().expect("path");
    let enc = encoder.to_str().expect("path");
    let mut args = vec!["train", "--data", d, "--out", o, "--init-from-text", enc];
    args.extend(small);
    let run = attune(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("PCA 384→16"), "{err}");
    let card = std::fs::read_to_string(out.join("MODEL.md")).expect("card");
    assert!(
        card.contains("from the text vectors of `minilm-l6"),
        "{card}"
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).expect("metrics"))
            .expect("json");
    assert_eq!(metrics["init"]["items_with_text"], 60, "{metrics}");
}
