//! Ordering: a user reads their own writes, events sent together are applied in order,
//! and sessions on several arbiters get their own answers.

use super::*;

#[actix::test]
async fn read_your_writes_after_record() {
    let (_dir, config) = fixture(20);
    let engine = Engine::open(config).expect("open");
    let gen = Generator::new(SynthConfig::default()).expect("gen");
    let items: Vec<String> = gen.items().map(|i| i.id).collect();
    for (n, item) in items.iter().step_by(7).take(30).enumerate() {
        engine.record(click("u3", item)).await.expect("record");
        let rec = engine.recommend("u3", 20, quiet()).await.expect("rec");
        assert!(
            rec.items.iter().all(|i| &i.item != item),
            "round {n}: the item just clicked was recommended"
        );
        let info = engine.session_info("u3").await.expect("info");
        assert_eq!(info.recent.last(), Some(item), "round {n}");
    }
    engine.shutdown().await.expect("shutdown");
}

/// Events of one user sent together (one HTTP request with several) reach the session in
/// the order sent. Their acknowledgements complete in one wake-up, and actix polls the
/// finished futures in no fixed order: four events were applied as a, d, c, b.
#[actix::test]
async fn events_sent_together_are_applied_in_order() {
    let (_dir, config) = fixture(5);
    let engine = Engine::open(config).expect("open");
    let gen = Generator::new(SynthConfig::default()).expect("gen");
    let items: Vec<String> = gen
        .items()
        .map(|i| i.id)
        .skip(40)
        .step_by(3)
        .take(8)
        .collect();
    for round in 0..5 {
        let sent: Vec<_> = items
            .iter()
            .map(|item| {
                let engine = engine.clone();
                let ev = click("together", item);
                async move { engine.record(ev).await }
            })
            .collect();
        for r in futures_join_all(sent).await {
            r.expect("record");
        }
        let info = engine.session_info("together").await.expect("info");
        let tail: Vec<&String> = info.recent.iter().rev().take(items.len()).rev().collect();
        assert_eq!(
            tail,
            items.iter().collect::<Vec<_>>(),
            "round {round}: applied out of order"
        );
    }
    engine.shutdown().await.expect("shutdown");
}

/// With several arbiters, each session's answers and acknowledgements come back through
/// its own arbiter's reply box: concurrent users spread over three arbiters each read
/// their own writes, and a batch mixing their requests answers every one.
#[actix::test]
async fn sessions_on_several_arbiters_get_their_answers() {
    let (_dir, mut config) = fixture(30);
    config.arbiters = 3;
    config.strategy.batching = Batching {
        max_batch: 16,
        max_queue_delay_us: 5_000,
    };
    let engine = Engine::open(config).expect("open");
    let gen = Generator::new(SynthConfig::default()).expect("gen");
    let items: Vec<String> = gen.items().map(|i| i.id).collect();
    for round in 0..5 {
        let futs: Vec<_> = (0..12)
            .map(|u| {
                let e = engine.clone();
                let item = items[(u * 13 + round * 7) % items.len()].clone();
                async move {
                    let user = format!("u{u}");
                    e.record(click(&user, &item)).await.expect("record");
                    let rec = e.recommend(&user, 10, quiet()).await.expect("rec");
                    let info = e.session_info(&user).await.expect("info");
                    (item, rec, info)
                }
            })
            .collect();
        for (item, rec, info) in futures_join_all(futs).await {
            assert_eq!(info.recent.last(), Some(&item), "round {round}");
            assert_eq!(rec.items.len(), 10);
            assert!(rec.items.iter().all(|i| i.item != item), "round {round}");
        }
    }
    assert!(
        engine.metrics().batch_size.max > 1.0,
        "requests shared batches"
    );
    engine.shutdown().await.expect("shutdown");
}
