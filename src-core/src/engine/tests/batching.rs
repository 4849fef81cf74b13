//! Batching and overload: requests share batches under load and a lone one leaves on the
//! deadline, a flood is refused at once, the batched device path and the graph index's
//! candidates rank as the incremental full scoring, and a plain request gets a breakdown
//! (cold users fall back).

use super::*;

#[actix::test]
async fn recommends_with_a_breakdown_and_cold_users_fall_back() {
    let (_dir, config) = fixture(50);
    let engine = Engine::open(config).expect("open");
    let rec = engine
        .recommend("u0", 10, RecommendOptions::default())
        .await
        .expect("rec");
    assert_eq!(rec.items.len(), 10);
    assert_eq!(rec.strategy_version, 1);
    assert!(rec.model_version >= 1);
    assert!(rec.fallback.is_none(), "{:?}", rec.fallback);
    assert!(rec.items.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(rec.items.iter().any(|i| i.breakdown.seq > 0.0));
    // A user never seen: popularity.
    let cold = engine
        .recommend("nobody", 5, RecommendOptions::default())
        .await
        .expect("cold");
    assert_eq!(cold.fallback.as_deref(), Some("popularity"));
    assert_eq!(cold.items.len(), 5);
    // Bad requests are refused with a clear error.
    let e = engine
        .recommend("", 5, RecommendOptions::default())
        .await
        .expect_err("empty user");
    assert!(e.to_string().contains("user"), "{e}");
    let e = engine
        .recommend("u0", 0, RecommendOptions::default())
        .await
        .expect_err("k = 0");
    assert!(e.to_string().contains("k must be"), "{e}");
    engine.shutdown().await.expect("shutdown");
    assert!(matches!(
        engine.recommend("u0", 5, RecommendOptions::default()).await,
        Err(Error::ShutDown)
    ));
}

#[actix::test]
async fn batches_form_under_load_and_flush_on_the_deadline() {
    let (_dir, mut config) = fixture(100);
    config.strategy.batching = Batching {
        max_batch: 32,
        max_queue_delay_us: 20_000,
    };
    let engine = Engine::open(config).expect("open");
    // Light load: one request alone leaves on the deadline, not when a batch fills.
    let t = Instant::now();
    engine.recommend("u1", 10, quiet()).await.expect("rec");
    let alone = t.elapsed();
    assert!(alone >= Duration::from_millis(18), "{alone:?}");
    assert!(alone < Duration::from_secs(2), "{alone:?}");
    let m = engine.metrics();
    assert_eq!(m.batch_size.max, 1.0);
    // Concurrent load: requests share batches.
    let futs: Vec<_> = (0..96)
        .map(|u| {
            let e = engine.clone();
            async move { e.recommend(&format!("u{u}"), 10, quiet()).await }
        })
        .collect();
    for r in futures_join_all(futs).await {
        r.expect("rec");
    }
    let m = engine.metrics();
    assert!(
        m.batch_size.max >= 8.0,
        "largest batch {}",
        m.batch_size.max
    );
    assert!(
        m.batch_size.count < 97,
        "{} batches for 97 requests",
        m.batch_size.count
    );
    engine.shutdown().await.expect("shutdown");
}

#[actix::test]
async fn a_flood_gets_overloaded_at_once() {
    let (_dir, mut config) = fixture(50);
    config.queue_capacity = 2;
    config.strategy.batching = Batching {
        max_batch: 1,
        max_queue_delay_us: 0,
    };
    let engine = Engine::open(config).expect("open");
    let futs: Vec<_> = (0..300)
        .map(|u| {
            let e = engine.clone();
            async move { e.recommend(&format!("u{}", u % 50), 10, quiet()).await }
        })
        .collect();
    let results = futures_join_all(futs).await;
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Overloaded { .. })))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(overloaded > 0, "no request was refused");
    assert!(ok > 0, "every request was refused");
    assert_eq!(
        ok + overloaded,
        300,
        "other errors: {:?}",
        results
            .iter()
            .find(|r| matches!(r, Err(e) if !matches!(e, Error::Overloaded{..})))
    );
    assert_eq!(engine.metrics().overloaded, overloaded as u64);
    // Once the flood is over, requests pass again.
    engine
        .recommend("u1", 10, quiet())
        .await
        .expect("after the flood");
    engine.shutdown().await.expect("shutdown");
}

#[actix::test]
async fn the_batched_device_path_ranks_as_the_incremental_one() {
    // The path a GPU takes (whole windows re-encoded by candle in one forward pass), run on
    // the CPU, against the incremental KV-cached path.
    let (_dir, config) = fixture(60);
    let mut batched = config.clone();
    batched.incremental = false;
    let users: Vec<String> = (0..12).map(|u| format!("u{u}")).collect();
    let run = |config: EngineConfig| {
        let users = users.clone();
        async move {
            let engine = Engine::open(config).expect("open");
            let mut out = Vec::new();
            for u in &users {
                out.push(engine.recommend(u, 10, quiet()).await.expect("rec"));
            }
            engine.shutdown().await.expect("shutdown");
            out
        }
    };
    let a = run(config).await;
    let b = run(batched).await;
    assert_same_slates(&a, &b, 1e-3);
}

#[actix::test]
async fn candidates_from_a_graph_index_searched_in_full_rank_as_full_scoring() {
    // The large-catalogue path, switched on for the small synthetic catalogue and searched
    // as deep as the catalogue: the candidates, hence the slates, are full scoring's.
    let (_dir, config) = fixture(60);
    let mut indexed = config.clone();
    indexed.ann_min_items = 1;
    indexed.ann_ef = 100_000;
    let users: Vec<String> = (0..12).map(|u| format!("u{u}")).collect();
    let run = |config: EngineConfig| {
        let users = users.clone();
        async move {
            let engine = Engine::open(config).expect("open");
            let info = engine.model_info().expect("a model");
            let mut out = Vec::new();
            for u in &users {
                out.push(engine.recommend(u, 10, quiet()).await.expect("rec"));
            }
            engine.shutdown().await.expect("shutdown");
            (info, out)
        }
    };
    let (full_info, a) = run(config).await;
    let (index_info, b) = run(indexed.clone()).await;
    assert!(full_info.candidate_index.is_none());
    let idx = index_info.candidate_index.expect("an index from 1 item");
    assert_eq!((idx.kind.as_str(), idx.ef), ("hnsw", 100_000));
    assert!(idx.bytes > 0);
    assert_same_slates(&a, &b, 1e-4);
    // Out-of-range knobs are refused by name.
    for (field, mut bad) in [("ann_ef", indexed.clone()), ("ann_m", indexed.clone())] {
        if field == "ann_ef" {
            bad.ann_ef = 0;
        } else {
            bad.ann_m = 65;
        }
        let e = Engine::open(bad).expect_err(field);
        assert!(e.to_string().contains(field), "{e}");
    }
}

/// The same items in the same order for every user, scores within `tol`.
fn assert_same_slates(a: &[Recommendation], b: &[Recommendation], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            x.items.iter().map(|i| &i.item).collect::<Vec<_>>(),
            y.items.iter().map(|i| &i.item).collect::<Vec<_>>(),
            "user {}",
            x.user
        );
        for (i, j) in x.items.iter().zip(&y.items) {
            assert!(
                (i.score - j.score).abs() < tol,
                "{} vs {}",
                i.score,
                j.score
            );
        }
    }
}
