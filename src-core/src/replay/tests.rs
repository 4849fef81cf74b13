//! Replay behaviour: the round scheduler keeps each user's order, two runs give the same
//! figures, and a strategy with a known advantage wins.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicBool;

use super::rounds::Rounds;
use super::*;
use crate::engine::strategy::{Learning, SourceWeights, Strategy};
use crate::event::{Action, Item, RawEvent};
use crate::synth::{Generator, SynthConfig};

fn click(user: &str, item: usize, ts: i64) -> RawEvent {
    RawEvent {
        user: user.into(),
        ts,
        action: Action::Click {
            item: format!("i{item}"),
        },
    }
}

fn log_of(events: Vec<RawEvent>) -> Log {
    let mut items: Vec<Item> = events
        .iter()
        .filter_map(|e| e.action.item().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|id| Item {
            id,
            ..Item::default()
        })
        .collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Log {
        name: "test".into(),
        items,
        events,
        implicit: false,
    }
}

#[test]
fn rounds_keep_each_users_order_and_hold_distinct_users() {
    let events: Vec<RawEvent> = (0..200)
        .map(|i| click(&format!("u{}", i % 7), i, i as i64))
        .chain((0..30).map(|i| click("burst", i, 1000 + i as i64)))
        .collect();
    let mut rounds = Rounds::new(&events);
    let mut seen = vec![false; events.len()];
    let mut last: HashMap<String, usize> = HashMap::new();
    loop {
        let r = rounds.next(4, 16);
        if r.is_empty() {
            break;
        }
        assert!(r.len() <= 4);
        let users: HashSet<&str> = r.iter().map(|&i| events[i].user.as_str()).collect();
        assert_eq!(users.len(), r.len(), "a user twice in one round");
        for &i in &r {
            assert!(!seen[i]);
            seen[i] = true;
            let u = events[i].user.clone();
            if let Some(&prev) = last.get(&u) {
                assert!(prev < i, "{u}'s events out of order");
            }
            last.insert(u, i);
        }
    }
    assert!(seen.iter().all(|s| *s));
}

/// Strongly sequential data: every user walks the catalogue in one fixed cycle.
fn sequential_log(users: usize, steps: usize, items: usize) -> Log {
    let mut events = Vec::new();
    for step in 0..steps {
        for u in 0..users {
            let item = (u * 3 + step) % items;
            events.push(click(
                &format!("u{u}"),
                item,
                (step * users + u) as i64 * 1000,
            ));
        }
    }
    log_of(events)
}

fn fixed(name: &str, weights: SourceWeights) -> Strategy {
    Strategy {
        name: name.into(),
        weights,
        learning: Learning {
            adaptive: false,
            ..Learning::default()
        },
        ..Strategy::default()
    }
}

#[test]
fn transitions_win_on_sequential_data() {
    let log = sequential_log(40, 30, 60);
    let zero = SourceWeights::splat(0.0);
    let cfg = ReplayConfig {
        strategies: vec![
            fixed(
                "transitions",
                SourceWeights {
                    markov: 1.0,
                    ..zero
                },
            ),
            fixed("popularity", SourceWeights { pop: 1.0, ..zero }),
        ],
        ..ReplayConfig::default()
    };
    let stop = AtomicBool::new(false);
    let r = replay(&log, &cfg, &stop, &|_, _| {}).expect("replay");
    assert_eq!(r.events, 1200);
    assert!(!r.partial);
    let (t, p) = (&r.strategies[0], &r.strategies[1]);
    assert_eq!(
        (t.name.as_str(), p.name.as_str()),
        ("transitions", "popularity")
    );
    assert_eq!(t.rankings, 1200);
    assert!(
        t.ndcg > 2.0 * p.ndcg && t.hr > 0.5,
        "transitions {t:?} vs popularity {p:?}"
    );
    assert_eq!(t.windows.len(), 10);
    assert!(t.windows.last().is_some_and(|w| w.events_to == 1200));
}

/// The figures without wall-clock ones.
fn stable(r: &ReplayReport) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("json");
    v["seconds"] = serde_json::Value::Null;
    for s in v["strategies"].as_array_mut().expect("strategies") {
        for k in [
            "seconds",
            "latency_p50_us",
            "latency_p99_us",
            "latency_buckets",
            "finetune_seconds",
        ] {
            s[k] = serde_json::Value::Null;
        }
    }
    v
}

/// The first `users` users of the default synthetic world, in time order, with its
/// whole catalogue.
fn synthetic_log(gen: &Generator, users: usize) -> Log {
    let mut events: Vec<RawEvent> = (0..users).flat_map(|u| gen.user_events(u)).collect();
    events.sort_by_key(|e| e.ts);
    let mut log = log_of(events);
    log.items = gen.items().collect();
    log.items.sort_by(|a, b| a.id.cmp(&b.id));
    log
}

/// The checkpoint shipped for the default synthetic world.
fn shipped_model() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/synthetic-default")
}

#[test]
fn two_runs_give_identical_figures_with_the_model_and_learning_on() {
    // The default synthetic world (the shipped checkpoint's), a slice of its users.
    let gen = Generator::new(SynthConfig::default()).expect("generator");
    let log = synthetic_log(&gen, 120);
    let model = shipped_model();
    let cfg = ReplayConfig {
        model: Some(model),
        strategies: vec![Strategy {
            name: "adaptive".into(),
            learning: Learning {
                update_every: 8,
                ..Learning::default()
            },
            exploration: crate::engine::strategy::Exploration::Epsilon { epsilon: 0.1 },
            ..Strategy::default()
        }],
        round: 16,
        ..ReplayConfig::default()
    };
    let stop = AtomicBool::new(false);
    let a = replay(&log, &cfg, &stop, &|_, _| {}).expect("first");
    let b = replay(&log, &cfg, &stop, &|_, _| {}).expect("second");
    assert!(a.strategies[0].rankings > 500, "{:?}", a.strategies[0]);
    assert!(a.strategies[0].hr > 0.0);
    assert_eq!(stable(&a), stable(&b));
    // The weights moved (the learner learned), identically in both runs.
    let w = &a.strategies[0].weights;
    assert_ne!(w.first().map(|x| x.weights), w.last().map(|x| x.weights));
}

#[test]
fn a_warm_up_is_learned_from_not_ranked_and_fine_tuning_starts_after_it() {
    let gen = Generator::new(SynthConfig::default()).expect("generator");
    let log = synthetic_log(&gen, 40);
    let cut = log.events[log.events.len() * 3 / 4].ts;
    let model = shipped_model();
    let cfg = ReplayConfig {
        model: Some(model),
        round: 16,
        windows: 4,
        ..ReplayConfig::default()
    };
    let stop = AtomicBool::new(false);
    let all = replay(&log, &cfg, &stop, &|_, _| {}).expect("whole log");
    let warm = ReplayConfig {
        warm_until: Some(cut),
        ..cfg.clone()
    };
    let later = replay(&log, &warm, &stop, &|_, _| {}).expect("warmed up");
    let (a, l) = (&all.strategies[0], &later.strategies[0]);
    // Only the events from the cut on are ranked, and every event is still replayed.
    assert_eq!(later.events, all.events);
    assert!(
        l.rankings > 0 && l.rankings < a.rankings / 2,
        "{} of {}",
        l.rankings,
        a.rankings
    );
    assert_eq!(l.windows.len(), 4);
    assert!(l.windows.iter().all(|w| w.ts_to >= cut));
    assert_eq!(
        l.windows.iter().map(|w| w.figures.rankings).sum::<u64>(),
        l.rankings
    );
    assert_eq!(l.finetune_passes, 0);
    // Fine-tuning every 100 interactions runs only after the warm-up, the same in two runs.
    let tuned = ReplayConfig {
        finetune_every: 100,
        ..warm.clone()
    };
    let t1 = replay(&log, &tuned, &stop, &|_, _| {}).expect("fine-tuned");
    let t2 = replay(&log, &tuned, &stop, &|_, _| {}).expect("again");
    // A run tuning from the start makes about four times the passes (the cut is at 3/4).
    let from_start = replay(
        &log,
        &ReplayConfig {
            warm_until: None,
            ..tuned.clone()
        },
        &stop,
        &|_, _| {},
    )
    .expect("tuned from the start");
    let (passes, all_passes) = (
        t1.strategies[0].finetune_passes,
        from_start.strategies[0].finetune_passes,
    );
    assert!(
        passes >= 1 && passes * 2 < all_passes,
        "{passes} passes after the warm-up, {all_passes} without one"
    );
    assert_eq!(stable(&t1), stable(&t2));
    assert!(replay(
        &log,
        &ReplayConfig {
            model: None,
            ..tuned.clone()
        },
        &stop,
        &|_, _| {}
    )
    .is_err_and(|e| e.to_string().contains("finetune_every")));
}

#[test]
fn a_stop_gives_a_partial_report_and_bad_settings_are_refused() {
    let log = sequential_log(10, 10, 20);
    let stop = AtomicBool::new(true);
    let r = replay(&log, &ReplayConfig::default(), &stop, &|_, _| {}).expect("replay");
    assert!(r.partial);
    assert_eq!(r.events, 0);
    let stop = AtomicBool::new(false);
    for bad in [
        ReplayConfig {
            k: 0,
            ..ReplayConfig::default()
        },
        ReplayConfig {
            round: 0,
            ..ReplayConfig::default()
        },
        ReplayConfig {
            from: Some(5),
            to: Some(5),
            ..ReplayConfig::default()
        },
    ] {
        assert!(replay(&log, &bad, &stop, &|_, _| {}).is_err());
    }
    #[cfg(feature = "report")]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        report::write(&r, dir.path()).expect("a partial report is written");
        assert!(std::fs::read_to_string(dir.path().join("index.html"))
            .expect("html")
            .contains("partial"));
    }
}
