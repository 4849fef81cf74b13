//! The default text encoder (all-MiniLM-L6-v2, fetched by `scripts/fetch-encoder.sh`)
//! against reference values of the sentence-transformers model: its token ids and the
//! cosines of three sentences.

use attune::text::{dot, Encoder};
use attune_tests::encoder_dir;

#[test]
fn minilm_matches_the_reference_values() {
    let Some(dir) = encoder_dir() else { return };
    let enc = Encoder::load(&dir, &candle_core::Device::Cpu).expect("loads");
    assert_eq!(enc.dim(), 384);
    assert_eq!(
        enc.token_ids("A man is eating food.").expect("ids"),
        vec![101, 1037, 2158, 2003, 5983, 2833, 1012, 102]
    );
    let v = enc
        .encode(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A man is riding a horse.",
        ])
        .expect("encodes");
    let bread = dot(&v[0], &v[1]);
    let horse = dot(&v[0], &v[2]);
    assert!((bread - 0.7553).abs() < 1e-3, "food/bread cosine {bread}");
    assert!((horse - 0.2474).abs() < 1e-3, "food/horse cosine {horse}");
    // One text alone and inside a padded batch: the same vector.
    let alone = enc.encode(&["A man is riding a horse."]).expect("alone");
    let d = alone[0]
        .iter()
        .zip(&v[2])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "padding moved the vector by {d}");
}

#[test]
fn a_truncated_or_mismatched_checkpoint_names_the_file() {
    let Some(dir) = encoder_dir() else { return };
    let tmp = tempfile::tempdir().expect("dir");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(dir.join(f), tmp.path().join(f)).expect("copy");
    }
    // Truncated weights.
    let weights = std::fs::read(dir.join("model.safetensors")).expect("weights");
    std::fs::write(
        tmp.path().join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .expect("write");
    let err = Encoder::load(tmp.path(), &candle_core::Device::Cpu).expect_err("truncated");
    let msg = err.to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
    // Whole weights, a config of another shape.
    std::fs::write(tmp.path().join("model.safetensors"), &weights).expect("write");
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
    std::fs::write(
        tmp.path().join("config.json"),
        config.replace("\"hidden_size\": 384", "\"hidden_size\": 768"),
    )
    .expect("write");
    let err = Encoder::load(tmp.path(), &candle_core::Device::Cpu).expect_err("mismatched");
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("config.json"),
        "{msg}"
    );
}
