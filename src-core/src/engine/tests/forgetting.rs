//! Forgetting a user: one being forgotten is a conflict, and afterwards nothing of them
//! is left in the session, the log or the store.

use super::*;

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
