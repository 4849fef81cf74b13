//! Strategies: validation names the bad field, bounds and pins hold, and the book keeps
//! versions, history and rollbacks across a reopen.

use super::*;
use crate::store::Store;

#[test]
fn default_is_valid_and_round_trips() {
    let s = Strategy::default();
    s.validate().expect("valid");
    let json = serde_json::to_string(&s).expect("json");
    assert_eq!(Strategy::from_json(&json).expect("parse"), s);
}

#[test]
fn bad_knobs_name_their_field() {
    let cases = [
        (
            r#"{"weights": {"seq": 1, "like": 0, "purchase": 0, "itemknn": 0, "markov": 0, "pop": 9}}"#,
            "weights.pop",
        ),
        (
            r#"{"exploration": {"mode": "epsilon", "epsilon": 1.5}}"#,
            "exploration.epsilon",
        ),
        (r#"{"batching": {"max_batch": 0}}"#, "batching.max_batch"),
        (r#"{"pinned": ["nope"]}"#, "pinned"),
        (r#"{"candidates": 0}"#, "candidates"),
        (
            r#"{"learning": {"learning_rate": -1}}"#,
            "learning.learning_rate",
        ),
        // Found by the service fuzzer: a subnormal rate overflowed the learner's state.
        (
            r#"{"learning": {"learning_rate": 1e-40}}"#,
            "learning.learning_rate",
        ),
        (r#"{"weightz": {}}"#, "weightz"),
        (r#"{"weights": {"seq": 1, "sneq": 2}}"#, "sneq"),
    ];
    for (json, field) in cases {
        let e = Strategy::from_json(json).expect_err(json).to_string();
        assert!(e.contains(field), "{json}: {e}");
    }
}

#[test]
fn bounds_clamp_and_pins_hold() {
    let s = Strategy {
        pinned: vec!["pop".into()],
        ..Strategy::default()
    };
    let b = s.bound([9.0, -1.0, 0.3, 0.4, 0.5, 3.0, 7.0]);
    assert_eq!(b, [5.0, 0.0, 0.3, 0.4, 0.5, s.weights.pop, 5.0]);
}

#[test]
fn versions_history_and_rollback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Default::default()).expect("store");
    let book = StrategyBook::open(store.clone(), &Strategy::default()).expect("book");
    assert_eq!(book.current().expect("c").expect("some").version, 1);
    let mut s = Strategy::default();
    s.weights.pop = 1.0;
    let v2 = book.set(s.clone()).expect("set");
    assert_eq!(v2.version, 2);
    let bad = Strategy {
        candidates: 0,
        ..Strategy::default()
    };
    assert!(book.set(bad).is_err());
    assert_eq!(book.current().expect("c").expect("some").version, 2);
    let v3 = book.rollback(1).expect("rollback");
    assert_eq!(v3.version, 3);
    assert_eq!(v3.strategy, Strategy::default());
    assert!(book.rollback(99).is_err());
    assert_eq!(book.history().expect("h").len(), 3);
    drop(book);
    store.close().expect("close");
    drop(store);
    let store = Store::open(dir.path(), Default::default()).expect("reopen");
    let book = StrategyBook::open(store, &Strategy::default()).expect("book");
    assert_eq!(book.current().expect("c").expect("some").version, 3);
}

#[test]
fn a_strategy_written_before_the_text_source_keeps_ranking_as_it_did() {
    let old = r#"{"weights": {"seq": 1, "like": 0.2, "purchase": 0.2, "itemknn": 0.5,
        "markov": 0.5, "pop": 0.2},
        "min_weights": {"seq": 0, "like": 0, "purchase": 0, "itemknn": 0, "markov": 0, "pop": 0},
        "max_weights": {"seq": 5, "like": 5, "purchase": 5, "itemknn": 5, "markov": 5, "pop": 5}}"#;
    let s = Strategy::from_json(old).expect("an old strategy parses");
    assert_eq!(
        (s.weights.text, s.min_weights.text, s.max_weights.text),
        (0.0, 0.0, 0.0)
    );
    // A new default strategy uses it.
    let d = Strategy::default();
    assert_eq!(d.weights.text, crate::text::DEFAULT_WEIGHT);
    assert!(d.max_weights.text > 0.0);
}
