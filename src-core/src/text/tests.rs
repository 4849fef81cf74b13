//! The encoder's code on a tiny randomly initialised BERT (the real weights are checked
//! against reference values in `tests/tests/text.rs`), item text, and the table.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;

use super::*;
use crate::event::Item;

const WORDS: [&str; 16] = [
    "a", "man", "is", "eating", "food", "riding", "horse", "piece", "of", "bread", "toy", "story",
    "comedy", "drama", "##s", ".",
];

/// A WordPiece tokenizer over [`WORDS`] with BERT's special tokens at their usual ids.
pub(crate) fn tiny_tokenizer() -> Tokenizer {
    let mut vocab = serde_json::Map::new();
    for (id, tok) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .enumerate()
    {
        vocab.insert((*tok).into(), id.into());
    }
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert((*w).into(), (5 + i).into());
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]",
            "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
            "vocab": vocab}
    });
    Tokenizer::from_bytes(serde_json::to_vec(&json).expect("json")).expect("tokenizer")
}

/// A 2-layer, 16-wide BERT with random weights.
pub(crate) fn tiny_encoder() -> Encoder {
    let config: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 5 + WORDS.len(), "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "max_position_embeddings": 64, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "classifier_dropout": null, "model_type": "bert"
    }))
    .expect("config");
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let model = BertModel::load(vb, &config).expect("random bert");
    Encoder::from_parts(
        model,
        tiny_tokenizer(),
        Device::Cpu,
        EncoderId {
            name: "tiny".into(),
            sha256: "0".repeat(64),
            dim: 16,
        },
    )
    .expect("encoder")
}

#[test]
fn vectors_have_unit_length_and_the_model_width() {
    let enc = tiny_encoder();
    let v = enc.encode(&["a man is eating food."]).expect("encodes");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].len(), 16);
    assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-5);
    assert!(enc.encode(&[]).expect("nothing").is_empty());
}

#[test]
fn padding_does_not_change_a_vector() {
    let enc = tiny_encoder();
    let short = "a man.";
    let alone = enc.encode(&[short]).expect("alone");
    let texts = [
        "a man is riding a horse and eating a piece of bread , toy story comedy drama",
        short,
        "food",
    ];
    let batch = enc.encode(&texts).expect("batch");
    let diff = alone[0]
        .iter()
        .zip(&batch[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "padded differs by {diff}");
    // Batched in chunks gives the same vectors as one pass.
    let chunked = enc.encode_batched(&texts, 2).expect("chunked");
    for (a, b) in chunked.iter().zip(&batch) {
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-6, "chunked differs by {d}");
    }
}

#[test]
fn tokens_are_wordpieces_with_cls_and_sep() {
    let enc = tiny_encoder();
    // [CLS] a man is eating food . [SEP]
    assert_eq!(
        enc.token_ids("A man is eating food.").expect("ids"),
        vec![2, 5, 6, 7, 8, 9, 20, 3]
    );
    // Unknown words are [UNK]; "toys" splits into toy + ##s.
    assert_eq!(
        enc.token_ids("toys zebra").expect("ids"),
        vec![2, 15, 19, 1, 3]
    );
}

#[test]
fn long_texts_are_cut_at_the_token_limit() {
    let enc = tiny_encoder();
    let long = "man ".repeat(1000);
    assert_eq!(
        enc.token_ids(&long).expect("ids").len(),
        encoder::MAX_TOKENS
    );
    // A cut text still fits the 512 positions of BERT-family models.
    const { assert!(encoder::MAX_TOKENS <= 512) };
}

#[test]
fn a_missing_or_broken_checkpoint_names_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let err = Encoder::load(&dir.path().join("nope"), &Device::Cpu).expect_err("no dir");
    assert!(err.to_string().contains("not a directory"), "{err}");
    let err = Encoder::load(dir.path(), &Device::Cpu).expect_err("empty dir");
    assert!(
        err.to_string().contains("config.json") && err.to_string().contains("missing"),
        "{err}"
    );
    std::fs::write(dir.path().join("config.json"), b"{\"hidden_size\": 4}").expect("write");
    let err = Encoder::load(dir.path(), &Device::Cpu).expect_err("bad config");
    assert!(
        err.to_string().contains("config.json") && err.to_string().contains("BERT config"),
        "{err}"
    );
}

#[test]
fn item_text_joins_the_chosen_parts() {
    let mut item = Item {
        id: "1".into(),
        title: "Toy Story (1995)".into(),
        tags: vec!["Animation".into(), "Comedy".into()],
        ..Item::default()
    };
    item.attrs.insert("brand".into(), "Pixar".into());
    item.attrs.insert("imdb_url".into(), "http://x".into());
    let f = TextFields::default();
    assert_eq!(
        f.text_of(&item),
        "Toy Story (1995). Animation, Comedy. brand: Pixar."
    );
    let titles = TextFields {
        tags: false,
        attrs: vec![],
        ..TextFields::default()
    };
    assert_eq!(titles.text_of(&item), "Toy Story (1995).");
    assert_eq!(f.text_of(&Item::default()), "");
}

#[test]
fn profiles_weigh_recent_items_and_score_by_cosine() {
    let mut t = TextTable::new(2);
    t.set(0, &[1.0, 0.0]);
    t.set(1, &[0.0, 1.0]);
    t.set(
        3,
        &[
            std::f32::consts::FRAC_1_SQRT_2,
            std::f32::consts::FRAC_1_SQRT_2,
        ],
    );
    assert_eq!((t.len(), t.count()), (4, 3));
    assert!(t.get(2).is_none());
    // History 0 then 1: the more recent item 1 weighs more.
    let p = t.profile(&[0, 1]).expect("profile");
    assert!(p.0[1] > p.0[0]);
    assert!((dot(&p.0, &p.0) - 1.0).abs() < 1e-6);
    let mut out = vec![0.0; 5];
    t.score_all(&p, &mut out);
    // Item 3 lies between 0 and 1, nearest the profile; then 1, the more recent.
    assert!(out[3] > out[1] && out[1] > out[0]);
    assert_eq!(out[2], table::NO_TEXT);
    assert_eq!(out[4], table::NO_TEXT);
    assert!(t.profile(&[2]).is_none());
    let near = t.nearest(&[1.0, 0.0], 2, |i| i == 0);
    assert_eq!(near.iter().map(|n| n.0).collect::<Vec<_>>(), vec![3, 1]);
    t.clear(3);
    assert_eq!(t.count(), 2);
}

#[test]
fn text_fields_parse_names_and_attributes_and_refuse_empty_names() {
    let f = TextFields::parse("title, brand,tags,brand").expect("parses");
    assert!(f.title && f.tags);
    assert_eq!(f.attrs, vec!["brand".to_string()]);
    let t = TextFields::parse("tags").expect("parses");
    assert!(!t.title && t.tags && t.attrs.is_empty());
    let err = TextFields::parse("title,,tags").expect_err("empty name");
    assert!(err.to_string().contains("empty name"), "{err}");
}

#[test]
fn the_int8_scan_agrees_with_the_f32_cosines_and_their_order() {
    // 2,000 random unit vectors of 384 dimensions, one item left without text.
    let dim = 384;
    let mut state = 11_u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32 - 0.5
    };
    let mut t = TextTable::new(dim);
    for i in 0..2000u32 {
        if i == 17 {
            continue;
        }
        let mut v: Vec<f32> = (0..dim).map(|_| next()).collect();
        let n = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        t.set(i, &v);
    }
    let p = t.profile(&[3, 9, 40, 41]).expect("profile");
    let (mut exact, mut fast) = (vec![0.0; 2001], vec![0.0; 2001]);
    t.score_all(&p, &mut exact);
    t.score_all_i8(&p, &mut fast);
    assert_eq!(fast[17], table::NO_TEXT);
    assert_eq!(fast[2000], table::NO_TEXT);
    let worst = exact
        .iter()
        .zip(&fast)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.01, "largest difference {worst}");
    // The best 20 by the int8 scan are the best 20 by f32 but for near ties.
    let top = |s: &[f32]| {
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        idx.truncate(20);
        idx
    };
    let (te, tf) = (top(&exact), top(&fast));
    let shared = tf.iter().filter(|i| te.contains(i)).count();
    assert!(shared >= 18, "{shared} of 20 shared");
    // A cleared item scores as one without text.
    t.clear(3);
    t.score_all_i8(&p, &mut fast);
    assert_eq!(fast[3], table::NO_TEXT);
    assert_eq!(table::dot_i8(&[1, -2, 3], &[4, 5, -6]), 4 - 10 - 18);
}
