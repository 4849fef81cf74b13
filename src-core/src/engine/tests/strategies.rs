//! Strategies and swaps: a strategy change applies to the next request (a bad one
//! changes nothing, a rollback restores), a hot swap under load loses no request, the
//! learner moves the weights toward what pays, and fine-tuning swaps a model in.

use super::*;

#[actix::test]
async fn a_strategy_change_applies_to_the_next_request() {
    let (_dir, config) = fixture(100);
    let engine = Engine::open(config).expect("open");
    let first = engine.recommend("u5", 10, quiet()).await.expect("rec");
    assert_eq!(first.strategy_version, 1);
    let pop_only = Strategy {
        weights: SourceWeights {
            seq: 0.0,
            like: 0.0,
            purchase: 0.0,
            itemknn: 0.0,
            markov: 0.0,
            pop: 1.0,
            text: 0.0,
        },
        learning: Learning {
            adaptive: false,
            ..Learning::default()
        },
        ..Strategy::default()
    };
    let v = engine.set_strategy(pop_only).expect("set");
    assert_eq!(v.version, 2);
    let second = engine.recommend("u5", 10, quiet()).await.expect("rec");
    assert_eq!(second.strategy_version, 2);
    assert!(second
        .items
        .windows(2)
        .all(|w| w[0].breakdown.pop >= w[1].breakdown.pop));
    // A bad strategy is refused and changes nothing.
    let bad = Strategy {
        candidates: 0,
        ..Strategy::default()
    };
    let e = engine.set_strategy(bad).expect_err("bad");
    assert!(e.to_string().contains("candidates"), "{e}");
    assert_eq!(engine.strategy().version, 2);
    let back = engine.rollback_strategy(1).expect("rollback");
    assert_eq!(back.version, 3);
    let third = engine.recommend("u5", 10, quiet()).await.expect("rec");
    assert_eq!(third.strategy_version, 3);
    assert_eq!(
        first.items.iter().map(|i| &i.item).collect::<Vec<_>>(),
        third.items.iter().map(|i| &i.item).collect::<Vec<_>>()
    );
    engine.shutdown().await.expect("shutdown");
}

#[actix::test]
async fn a_hot_swap_under_load_loses_no_request() {
    let (_dir, config) = fixture(100);
    let engine = Engine::open(config).expect("open");
    let v0 = engine.metrics().model_version;
    let futs: Vec<_> = (0..400)
        .map(|n| {
            let e = engine.clone();
            async move {
                if n % 100 == 50 {
                    e.swap_model(checkpoint()).map(|_| ())
                } else {
                    e.recommend(&format!("u{}", n % 100), 10, quiet())
                        .await
                        .map(|_| ())
                }
            }
        })
        .collect();
    for r in futures_join_all(futs).await {
        r.expect("no request lost");
    }
    assert_eq!(engine.metrics().model_version, v0 + 4);
    assert_eq!(engine.metrics().errors, 0);
    engine.shutdown().await.expect("shutdown");
}

/// The fixture's 100 users under an adaptive strategy that learns fast (learning rate
/// 0.5, an update every 16 samples).
fn adaptive_fixture() -> (tempfile::TempDir, EngineConfig) {
    let (dir, mut config) = fixture(100);
    config.strategy = Strategy {
        learning: Learning {
            adaptive: true,
            learning_rate: 0.5,
            update_every: 16,
        },
        ..Strategy::default()
    };
    (dir, config)
}

/// `user` clicks `item` of the slate `rec`, answering it.
fn click_on(engine: &BlockingEngine, user: String, item: &str, rec: &Recommendation) {
    engine
        .feedback(Feedback {
            user,
            item: item.to_owned(),
            kind: crate::event::EventKind::Click,
            value: None,
            request_id: Some(rec.request_id.clone()),
            ts: None,
        })
        .expect("feedback");
}

#[test]
fn the_learner_moves_weights_toward_what_pays() {
    let (_dir, config) = adaptive_fixture();
    let reopen = config.clone();
    let engine = Engine::open(config).expect("open").blocking();
    let start = engine.strategy().weights;
    // Users click only the most popular item shown.
    for n in 0..300 {
        let user = format!("u{}", n % 100);
        let rec = engine
            .recommend(&user, 10, RecommendOptions::default())
            .expect("rec");
        let best = rec
            .items
            .iter()
            .max_by(|a, b| a.breakdown.pop.total_cmp(&b.breakdown.pop))
            .expect("items");
        click_on(&engine, user, &best.item, &rec);
    }
    engine.engine().sync_learner().expect("sync");
    let end = engine.strategy().weights;
    assert!(end.pop > start.pop, "pop {} → {}", start.pop, end.pop);
    assert_eq!(engine.strategy().version, 1);
    engine.shutdown().expect("shutdown");
    drop(engine); // the store's lock goes with the last handle
                  // The learner's state was checkpointed into the store: a restart resumes from it.
    let again = Engine::open(reopen).expect("reopen").blocking();
    let resumed = again.strategy().weights;
    assert!(
        (resumed.pop - end.pop).abs() < 0.05,
        "pop {} after the restart, {} before",
        resumed.pop,
        end.pop
    );
    again.shutdown().expect("shutdown");
}

/// The trap of issue 17: a task head computed only while its weight was non-zero stayed
/// at 0 in every impression once its weight fell there, so the learner never saw it again.
#[test]
fn a_head_whose_weight_fell_to_0_is_still_observed_and_regains_weight() {
    let (_dir, config) = adaptive_fixture();
    let engine = Engine::open(config).expect("open").blocking();
    // Users click the shown item the purchase head likes least, then the one it likes
    // most: the purchase weight falls to 0 first, then must climb back.
    let run = |requests: usize, pick_most: bool| {
        let mut observed = 0;
        for n in 0..requests {
            let user = format!("u{}", n % 100);
            let rec = engine
                .recommend(&user, 10, RecommendOptions::default())
                .expect("rec");
            observed += rec
                .items
                .iter()
                .filter(|i| i.breakdown.purchase > 0.0)
                .count();
            let by_purchase = |a: &&crate::engine::RecItem, b: &&crate::engine::RecItem| {
                a.breakdown.purchase.total_cmp(&b.breakdown.purchase)
            };
            let chosen = if pick_most {
                rec.items.iter().max_by(by_purchase)
            } else {
                rec.items.iter().min_by(by_purchase)
            }
            .expect("items");
            click_on(&engine, user, &chosen.item, &rec);
        }
        engine.engine().sync_learner().expect("sync");
        (observed, engine.strategy().weights.purchase)
    };
    let (_, fallen) = run(400, false);
    assert_eq!(fallen, 0.0, "the purchase weight should have fallen to 0");
    let (observed, regained) = run(600, true);
    // Every slate item still carries its purchase feature at weight 0…
    assert_eq!(
        observed,
        600 * 10,
        "items shown without their purchase feature"
    );
    // …so the learner sees that it pays again.
    assert!(regained > 0.1, "the purchase weight stayed at {regained}");
    engine.shutdown().expect("shutdown");
}

#[test]
fn fine_tuning_runs_in_the_background_and_swaps_the_model_in() {
    let (_dir, mut config) = fixture(50);
    config.finetune_every = 150;
    config.finetune = crate::model::train::FineTuneConfig {
        steps: 3,
        batch: 8,
        ..Default::default()
    };
    let store_dir = config.store.clone();
    let engine = Engine::open(config).expect("open").blocking();
    let v0 = engine.metrics().model_version;
    let before = engine.recommend("u1", 10, quiet()).expect("rec");
    let gen = Generator::new(SynthConfig::default()).expect("gen");
    // 40 users walk successor chains: 200 interactions, enough to trigger a pass.
    for u in 0..40 {
        let mut item = (u * 13) % 500;
        for _ in 0..5 {
            engine
                .record(click(&format!("w{u}"), &format!("i{item}")))
                .expect("record");
            item = gen.successors(item)[0] as usize;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.metrics().model_version == v0 {
        assert!(
            Instant::now() < deadline,
            "no fine-tuned model was swapped in"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = engine.recommend("u1", 10, quiet()).expect("rec");
    assert!(after.model_version > before.model_version);
    // The new weights score differently, and they were checkpointed into the store.
    assert_ne!(
        before.items.iter().map(|i| i.score).collect::<Vec<_>>(),
        after.items.iter().map(|i| i.score).collect::<Vec<_>>()
    );
    let files: Vec<_> = std::fs::read_dir(store_dir.join("finetuned"))
        .expect("finetuned dir")
        .flatten()
        .collect();
    assert!(!files.is_empty());
    // And an explicit pass works the same way.
    let v = engine
        .engine()
        .fine_tune_now(&["w1", "w2"])
        .expect("fine-tune");
    assert!(v > after.model_version);
    engine.shutdown().expect("shutdown");
}
