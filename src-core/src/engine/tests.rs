//! Behaviour of the engine's actors: batching, overload, ordering, supervision, live
//! strategies, hot swaps, eviction and restore.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::strategy::{Batching, Learning, SourceWeights, Strategy};
use super::*;
use crate::event::{Action, RawEvent};
use crate::synth::{Generator, SynthConfig};

fn checkpoint() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/synthetic-default")
}

/// A store holding the catalogue and the first `users` users of the default synthetic
/// data (the world the shipped checkpoint was trained on).
fn fixture(users: usize) -> (tempfile::TempDir, EngineConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = Store::open(&path, StoreConfig::default()).expect("store");
        let gen = Generator::new(SynthConfig::default()).expect("generator");
        store
            .put_items(&gen.items().collect::<Vec<_>>())
            .expect("items");
        let events: Vec<RawEvent> = (0..users).flat_map(|u| gen.user_events(u)).collect();
        store.append(&events).expect("append");
        store.close().expect("close");
    }
    let config = EngineConfig {
        store: path,
        model: Some(checkpoint()),
        strategy: Strategy {
            learning: Learning {
                adaptive: false,
                ..Learning::default()
            },
            ..Strategy::default()
        },
        ..EngineConfig::default()
    };
    (dir, config)
}

fn click(user: &str, item: &str) -> RawEvent {
    RawEvent {
        user: user.into(),
        ts: crate::store::now_ms(),
        action: Action::Click { item: item.into() },
    }
}

fn quiet() -> RecommendOptions {
    RecommendOptions {
        log_impression: false,
        ..RecommendOptions::default()
    }
}

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

/// Awaits every future concurrently (spawned on the current actix arbiter).
async fn futures_join_all<F, T>(futs: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let handles: Vec<_> = futs.into_iter().map(actix::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
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
async fn a_crashed_session_restarts() {
    let (_dir, config) = fixture(20);
    let engine = Engine::open(config).expect("open");
    let before = engine.recommend("u2", 10, quiet()).await.expect("rec");
    assert!(engine.crash_session("u2").await.is_err());
    // The next request gets a fresh actor, restored from the store.
    let after = engine
        .recommend("u2", 10, quiet())
        .await
        .expect("after crash");
    assert_eq!(
        before.items.iter().map(|i| &i.item).collect::<Vec<_>>(),
        after.items.iter().map(|i| &i.item).collect::<Vec<_>>()
    );
    assert!(engine.metrics().sessions_started >= 2);
    engine.shutdown().await.expect("shutdown");
}

#[actix::test]
async fn a_user_being_forgotten_is_a_conflict_not_a_bad_request() {
    let (_dir, config) = fixture(5);
    let engine = Engine::open(config).expect("open");
    // As `forget_user` marks the user for the time it runs.
    engine
        .shared
        .forgetting
        .lock()
        .expect("lock")
        .insert(Arc::from("u1"));
    let refused = engine.recommend("u1", 10, quiet()).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    let again = engine.forget_user("u1").await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    engine.shared.forgetting.lock().expect("lock").clear();
    engine
        .recommend("u1", 10, quiet())
        .await
        .expect("served again");
    engine.shutdown().await.expect("shutdown");
}

#[actix::test]
async fn a_crash_in_the_middle_of_a_request_is_an_error_not_a_hang() {
    let (_dir, config) = fixture(5);
    let engine = Engine::open(config).expect("open");
    let (addr, _) = engine.session("u1").expect("session");
    // Queue a request behind the crash: both callers must get an answer.
    let crash = addr.send(session::Crash);
    let e2 = engine.clone();
    let rec = async move { e2.recommend("u1", 5, quiet()).await };
    let (c, r) = futures_join2(crash, rec).await;
    assert!(c.is_err());
    let _ = r; // the request either ran on a fresh actor or failed; it did not hang
    engine
        .recommend("u1", 5, quiet())
        .await
        .expect("afterwards");
    engine.shutdown().await.expect("shutdown");
}

async fn futures_join2<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future + 'static,
    B: std::future::Future + 'static,
    A::Output: 'static,
    B::Output: 'static,
{
    let ha = actix::spawn(a);
    let hb = actix::spawn(b);
    let ra = tokio::time::timeout(Duration::from_secs(30), ha).await;
    let rb = tokio::time::timeout(Duration::from_secs(30), hb).await;
    (
        ra.expect("first did not hang").expect("task"),
        rb.expect("second did not hang").expect("task"),
    )
}

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
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    tokio::time::sleep(Duration::from_millis(150)).await;
    let m = engine.metrics();
    assert!(m.sessions_evicted > 0, "nothing evicted over budget");
    assert!(m.session_bytes <= 400_000, "{} bytes live", m.session_bytes);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let m = engine.metrics();
    assert_eq!(m.active_sessions, 0, "idle sessions outlived their TTL");
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

#[test]
fn blocking_wrappers_work_without_a_runtime() {
    let (_dir, config) = fixture(20);
    let engine = Engine::open(config).expect("open").blocking();
    let seq = engine.record(click("host", "i1")).expect("record");
    assert!(seq > 0);
    let rec = engine
        .recommend("host", 5, RecommendOptions::default())
        .expect("rec");
    assert_eq!(rec.items.len(), 5);
    let fb = Feedback {
        user: "host".into(),
        item: rec.items[0].item.clone(),
        kind: crate::event::EventKind::Purchase,
        value: Some(9.5),
        request_id: Some(rec.request_id.clone()),
        ts: None,
    };
    engine.feedback(fb).expect("feedback");
    engine.engine().sync_learner().expect("sync");
    let m = engine.metrics();
    assert_eq!(m.feedback_joined, 1);
    assert!((m.reward - 5.0).abs() < 1e-9, "{}", m.reward);
    engine.shutdown().expect("shutdown");
}

/// The background threads run at the configured priority. (Other tests' engines run at
/// the default, `idle`; `low` marks this one's threads.)
#[test]
#[cfg(target_os = "linux")]
fn background_threads_run_at_the_configured_priority() {
    use crate::os::{priority_of, BackgroundPriority};
    // The priorities of the process's threads called `name` (other tests' engines run in
    // this process too, so assertions are about any or every such thread).
    let priorities = |name: &str| -> Vec<Option<BackgroundPriority>> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|t| {
                let t = t.ok()?.path();
                let comm = std::fs::read_to_string(t.join("comm")).ok()?;
                let tid: i32 = t.file_name()?.to_str()?.parse().ok()?;
                (comm.trim() == name).then(|| priority_of(tid))
            })
            .collect()
    };
    for setting in [BackgroundPriority::Low, BackgroundPriority::Idle] {
        let (_dir, mut config) = fixture(5);
        config.background_priority = setting;
        let engine = Engine::open(config).expect("open").blocking();
        engine.engine().sync_learner().expect("sync");
        assert!(
            priorities("attune-learner").contains(&Some(setting)),
            "no learner thread at {setting:?}"
        );
        let indexers = priorities("attune-indexer");
        assert!(
            indexers.contains(&Some(BackgroundPriority::Low)),
            "no indexer thread at low priority"
        );
        // The indexer holds a lock the log writer needs: never at SCHED_IDLE.
        assert!(
            !indexers.contains(&Some(BackgroundPriority::Idle)),
            "an indexer thread runs at SCHED_IDLE"
        );
        assert!(
            priorities("attune-log-writ")
                .iter()
                .all(|p| *p == Some(BackgroundPriority::Normal)),
            "the log writer (request path) must keep its priority"
        );
        engine.shutdown().expect("shutdown");
    }
}

#[test]
fn the_learner_moves_weights_toward_what_pays() {
    let (_dir, mut config) = fixture(100);
    config.strategy = Strategy {
        learning: Learning {
            adaptive: true,
            learning_rate: 0.5,
            update_every: 16,
        },
        ..Strategy::default()
    };
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
        engine
            .feedback(Feedback {
                user,
                item: best.item.clone(),
                kind: crate::event::EventKind::Click,
                value: None,
                request_id: Some(rec.request_id.clone()),
                ts: None,
            })
            .expect("feedback");
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

#[test]
fn bad_engine_config_is_refused() {
    let (_dir, mut config) = fixture(1);
    config.compute_threads = 0;
    let e = Engine::open(config.clone()).expect_err("0 threads");
    assert!(e.to_string().contains("compute_threads"), "{e}");
    config.compute_threads = 1;
    config.device = "tpu".into();
    let e = Engine::open(config).expect_err("unknown device");
    assert!(e.to_string().contains("device"), "{e}");
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
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            x.items.iter().map(|i| &i.item).collect::<Vec<_>>(),
            y.items.iter().map(|i| &i.item).collect::<Vec<_>>(),
            "user {}",
            x.user
        );
        for (i, j) in x.items.iter().zip(&y.items) {
            assert!(
                (i.score - j.score).abs() < 1e-3,
                "{} vs {}",
                i.score,
                j.score
            );
        }
    }
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

#[actix::test]
async fn a_forgotten_user_is_gone_from_the_session_the_log_and_the_store() {
    let (_dir, config) = fixture(20);
    let engine = Engine::open(config).expect("open");
    for item in ["i1", "i2", "i3"] {
        engine.record(click("leaver", item)).await.expect("record");
    }
    // An impression logged for the user, and a session persisted by an eviction.
    engine
        .recommend("leaver", 5, RecommendOptions::default())
        .await
        .expect("rec");
    engine.evict_all();
    engine
        .recommend("leaver", 5, RecommendOptions::default())
        .await
        .expect("rec");
    let store = engine.store().clone();
    let before = store.next_seq();
    let f = engine
        .forget_user("leaver")
        .await
        .expect("forget")
        .expect("known");
    assert!(f.events >= 5, "{f:?}");
    assert_eq!(store.user_id("leaver"), None);
    let names: Vec<Option<String>> = store
        .all_events()
        .map(|e| store.user_name(e.expect("readable").1.user))
        .collect();
    assert!(names.iter().all(|n| n.as_deref() != Some("leaver")));
    assert!(store
        .get_record(crate::store::RecordSpace::Session, b"leaver")
        .expect("read")
        .is_none());
    // The user comes back as a new one: nothing of the old history.
    let info = engine.session_info("leaver").await.expect("info");
    assert_eq!(info.interactions, 0);
    assert!(info.recent.is_empty());
    let rec = engine.recommend("leaver", 5, quiet()).await.expect("rec");
    assert_eq!(rec.fallback.as_deref(), Some("popularity"));
    assert!(store.next_seq() >= before);
    assert!(engine
        .forget_user("nobody-known")
        .await
        .expect("ok")
        .is_none());
    engine.shutdown().await.expect("shutdown");
}
