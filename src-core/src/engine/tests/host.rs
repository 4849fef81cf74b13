//! What a host sees of the engine's threads and start: the blocking wrappers work without
//! a runtime, the background threads run at the configured priority, and a bad
//! configuration is refused.

use super::*;

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
