//! Eviction and the session budget: an evicted session restores to the same
//! recommendations, idle sessions go after their TTL, and crossing the budget wakes the
//! janitor at once.

use super::*;

#[actix::test]
async fn eviction_and_restore_give_the_same_recommendations() {
    let (_dir, config) = fixture(30);
    let engine = Engine::open(config).expect("open");
    let gen = Generator::new(SynthConfig::default()).expect("gen");
    let items: Vec<String> = gen.items().map(|i| i.id).collect();
    // A session whose model state has rebased (more than max_len = 50 pushes).
    for (n, item) in items.iter().skip(3).step_by(3).take(70).enumerate() {
        engine.record(click("walker", item)).await.expect("record");
        if n % 5 == 0 {
            engine.recommend("walker", 10, quiet()).await.expect("rec");
        }
    }
    engine.recommend("walker", 10, quiet()).await.expect("warm");
    for item in items.iter().skip(1).step_by(11).take(5) {
        engine.record(click("walker", item)).await.expect("record");
    }
    engine.sync_learner().expect("sync");
    let before = engine
        .recommend("walker", 10, quiet())
        .await
        .expect("before");
    assert!(engine.evict_all() >= 1);
    // The evicted actor persists its state (then counts the eviction) before the next
    // request restores it.
    until(
        || engine.metrics().sessions_evicted >= 1,
        "the evicted session persisted",
    )
    .await;
    let after = engine
        .recommend("walker", 10, quiet())
        .await
        .expect("after");
    assert!(engine.metrics().sessions_restored >= 1);
    assert_eq!(before.items.len(), after.items.len());
    for (b, a) in before.items.iter().zip(&after.items) {
        assert_eq!(b.item, a.item);
        assert!(
            (b.score - a.score).abs() < 1e-4,
            "{} vs {}",
            b.score,
            a.score
        );
    }
    engine.shutdown().await.expect("shutdown");
}

/// An engine with a session budget of 200,000 bytes (a few dozen sessions), the given TTL
/// and janitor tick, and a recommendation made for each of 200 users.
async fn sessions_under_budget(ttl_s: f64, sweep_every_ms: u64) -> (tempfile::TempDir, Engine) {
    let (dir, mut config) = fixture(200);
    config.session_ttl_s = ttl_s;
    config.sweep_every_ms = sweep_every_ms;
    config.session_budget_bytes = 200_000;
    let engine = Engine::open(config).expect("open");
    for u in 0..200 {
        engine
            .recommend(&format!("u{u}"), 5, quiet())
            .await
            .expect("rec");
    }
    (dir, engine)
}

#[actix::test]
async fn idle_sessions_are_evicted_and_the_budget_holds() {
    let (_dir, engine) = sessions_under_budget(0.2, 50).await;
    until(
        || engine.metrics().sessions_evicted > 0,
        "an eviction over budget",
    )
    .await;
    let m = engine.metrics();
    assert!(m.session_bytes <= 400_000, "{} bytes live", m.session_bytes);
    // Every session is idle now: each goes once its 0.2 s TTL has passed.
    until(
        || engine.metrics().active_sessions == 0,
        "idle sessions evicted after their TTL",
    )
    .await;
    engine.shutdown().await.expect("shutdown");
}

#[actix::test]
async fn crossing_the_budget_wakes_the_janitor_at_once() {
    // No tick within the test: only the budget's bell can start a sweep.
    let (_dir, engine) = sessions_under_budget(3_600.0, 3_600_000).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = engine.metrics();
        if m.session_bytes <= 200_000 || std::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(m.sessions_evicted > 0, "nothing evicted over budget");
    assert!(m.session_bytes <= 200_000, "{} bytes live", m.session_bytes);
    assert!(m.active_sessions > 0, "the budget holds sessions, not none");
    engine.shutdown().await.expect("shutdown");
}

/// Waits until `done` holds, polling every 10 ms; fails after 10 s naming `what`.
async fn until(done: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
