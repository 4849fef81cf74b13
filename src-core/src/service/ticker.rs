//! The service's once-a-second beat: it reads the engine's figures, pushes the interval's
//! summary to the live stream, keeps the 24 h history, and notices model swaps the engine
//! made on its own (for the audit log and the charts' markers). Apart from `live` (the
//! stream and its figures), `history` and `audit`, which it drives, so that none of those
//! three depends on another's driver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::audit::Recorder;
use super::history::History;
use super::live::{HttpMetrics, Hub, LiveStats};

/// Every `every`, sends the interval's [`LiveStats`] to the hub and hands the snapshot
/// to the history, until the hub closes.
pub async fn tick(
    engine: crate::engine::Engine,
    http: Arc<HttpMetrics>,
    hub: Arc<Hub>,
    history: Arc<History>,
    recorder: Arc<Recorder>,
    every: Duration,
) {
    let mut prev = engine.metrics();
    let mut http_prev = http.requests.load(std::sync::atomic::Ordering::Relaxed);
    let mut at = Instant::now();
    history.observe(&prev, http_prev, at);
    recorder.note_model(prev.model_version);
    loop {
        actix_web::rt::time::sleep(every).await;
        if hub.is_closing() {
            return;
        }
        let cur = engine.metrics();
        let http_cur = http.requests.load(std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let stats = LiveStats::between(&prev, &cur, http_prev, http_cur, now - at);
        hub.send("stats", &stats);
        history.observe(&cur, http_cur, now);
        let mut cur = cur;
        if cur.model_version != prev.model_version
            && !recorder.model_seen_at(cur.model_version, engine.model_info())
        {
            // An activation is under way: compare with the old version again next time.
            cur.model_version = prev.model_version;
        }
        (prev, http_prev, at) = (cur, http_cur, now);
    }
}
