//! Supervision: a crashed session actor restarts from the store, and a crash in the
//! middle of a request is an error, not a hang.

use super::*;

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
