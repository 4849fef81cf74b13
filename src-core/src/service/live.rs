//! Live figures of the service: request latency per route (for `/metrics`), and the
//! once-a-second summary that `GET /v1/stream` pushes to the control panel as server-sent
//! events, beside strategy and model changes.
//!
//! The engine's histograms are cumulative; the stream reports the last interval's rates
//! and quantiles, computed from the difference of two snapshots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::engine::metrics::{bucket_quantile, Histogram, HistogramSnapshot, MetricsSnapshot};
use crate::engine::strategy::SourceWeights;

/// Methods kept as labels; anything else is counted as `other` (random methods must not
/// grow the label set).
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];

/// Latency and status counts of one route and method.
#[derive(Default)]
pub struct RouteStats {
    pub latency_us: Histogram,
    pub by_status: Mutex<HashMap<u16, u64>>,
}

/// One route's figures: method, route pattern, latency (µs), responses by status.
pub type RouteSnapshot = (String, String, HistogramSnapshot, Vec<(u16, u64)>);

/// Per-route figures, keyed by `(method, route pattern)`; unmatched paths share one key.
#[derive(Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<(&'static str, String), Arc<RouteStats>>>,
    /// Requests answered.
    pub requests: std::sync::atomic::AtomicU64,
}

impl HttpMetrics {
    /// Records one answered request.
    pub fn observe(&self, method: &str, route: Option<String>, status: u16, took: Duration) {
        let method = METHODS
            .into_iter()
            .find(|m| *m == method)
            .unwrap_or("other");
        let route = route.unwrap_or_else(|| "unmatched".into());
        let key = (method, route);
        let found = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let stats = match found {
            Some(s) => s,
            None => Arc::clone(
                self.routes
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key)
                    .or_default(),
            ),
        };
        stats.latency_us.record_duration(took);
        *stats
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// `(method, route, latency, status counts)` for every route seen, sorted.
    pub fn snapshot(&self) -> Vec<RouteSnapshot> {
        let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .map(|((m, r), s)| {
                let mut st: Vec<(u16, u64)> = s
                    .by_status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect();
                st.sort_unstable();
                (m.to_string(), r.clone(), s.latency_us.snapshot(), st)
            })
            .collect();
        out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        out
    }
}

/// One second of the service, as the stream sends it (`event: stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveStats {
    /// End of the interval (ms since the epoch).
    pub ts_ms: i64,
    /// Seconds since the engine opened.
    pub uptime_s: f64,
    /// Length of the interval the rates cover, in seconds.
    pub interval_s: f64,
    /// Recommendations per second.
    pub recommendations_per_s: f64,
    /// Events acknowledged per second.
    pub events_per_s: f64,
    /// HTTP requests answered per second.
    pub http_requests_per_s: f64,
    /// Recommendation latency over the interval (ms; 0 when none).
    pub recommend_p50_ms: f64,
    pub recommend_p95_ms: f64,
    pub recommend_p99_ms: f64,
    /// Mean requests per inference batch over the interval.
    pub batch_mean: f64,
    /// Requests waiting for inference now.
    pub queue_depth: u64,
    /// Session actors alive now.
    pub active_sessions: u64,
    /// Cumulative reward of joined feedback, and its gain over the interval.
    pub reward: f64,
    pub reward_per_s: f64,
    /// Feedback joined to a shown slate per recommendation, over the interval.
    pub ctr: f64,
    /// Requests refused as overloaded, and failed, over the interval.
    pub overloaded: u64,
    pub errors: u64,
    /// Blend weights in force.
    pub weights: SourceWeights,
    /// Strategy and model versions serving.
    pub strategy_version: u64,
    pub model_version: u64,
}

/// The `q` quantile of the values recorded between two snapshots of one histogram
/// (bucket upper bounds, as the snapshots report them).
pub fn window_quantile(prev: &HistogramSnapshot, cur: &HistogramSnapshot, q: f64) -> f64 {
    let before: HashMap<u64, u64> = prev
        .buckets
        .iter()
        .map(|(b, c)| (b.to_bits(), *c))
        .collect();
    let diff: Vec<(f64, u64)> = cur
        .buckets
        .iter()
        .map(|(b, c)| {
            (
                *b,
                c.saturating_sub(*before.get(&b.to_bits()).unwrap_or(&0)),
            )
        })
        .filter(|(_, c)| *c > 0)
        .collect();
    bucket_quantile(&diff, q)
}

impl LiveStats {
    /// The figures of the interval between two snapshots.
    pub fn between(
        prev: &MetricsSnapshot,
        cur: &MetricsSnapshot,
        http_prev: u64,
        http_cur: u64,
        interval: Duration,
    ) -> LiveStats {
        let secs = interval.as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let batch_mean = cur.batch_size.mean_since(&prev.batch_size);
        let (lp, lc) = (&prev.recommend_latency_us, &cur.recommend_latency_us);
        let recs = cur.recommendations.saturating_sub(prev.recommendations);
        let joined = cur.feedback_joined.saturating_sub(prev.feedback_joined);
        LiveStats {
            ts_ms: crate::store::now_ms(),
            uptime_s: cur.uptime_s,
            interval_s: secs,
            recommendations_per_s: rate(prev.recommendations, cur.recommendations),
            events_per_s: rate(prev.events, cur.events),
            http_requests_per_s: rate(http_prev, http_cur),
            recommend_p50_ms: window_quantile(lp, lc, 0.5) / 1000.0,
            recommend_p95_ms: window_quantile(lp, lc, 0.95) / 1000.0,
            recommend_p99_ms: window_quantile(lp, lc, 0.99) / 1000.0,
            batch_mean,
            queue_depth: cur.queue_depth,
            active_sessions: cur.active_sessions,
            reward: cur.reward,
            reward_per_s: (cur.reward - prev.reward) / secs,
            ctr: if recs == 0 {
                0.0
            } else {
                joined as f64 / recs as f64
            },
            overloaded: cur.overloaded.saturating_sub(prev.overloaded),
            errors: cur.errors.saturating_sub(prev.errors),
            weights: cur.weights,
            strategy_version: cur.strategy_version,
            model_version: cur.model_version,
        }
    }
}

/// The stream's hub: frames broadcast to every subscriber, and the latest stats frame
/// for a subscriber that just arrived.
pub struct Hub {
    tx: broadcast::Sender<Arc<str>>,
    latest: Mutex<Option<Arc<str>>>,
    closing: std::sync::atomic::AtomicBool,
}

/// The frame that ends every stream when the server stops.
pub const BYE: &str = "event: shutdown\ndata: {}\n\n";

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::channel(64).0,
            latest: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Hub {
    /// Sends one server-sent event (`event: NAME`, one `data:` line of JSON).
    pub fn send(&self, event: &str, data: &impl Serialize) {
        let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
        let frame: Arc<str> = Arc::from(format!("event: {event}\ndata: {json}\n\n"));
        if event == "stats" {
            *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&frame));
        }
        let _ = self.tx.send(frame);
    }

    /// Ends every stream (graceful shutdown must not wait for them).
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.tx.send(Arc::from(BYE));
    }

    /// A subscriber's frames: the latest stats first, then everything sent, until
    /// [`Hub::close`]. A subscriber too slow for the channel skips what it missed.
    pub fn subscribe(
        &self,
    ) -> impl futures_util::Stream<Item = Result<actix_web::web::Bytes, std::convert::Infallible>>
    {
        let rx = self.tx.subscribe();
        let closing = self.closing.load(std::sync::atomic::Ordering::SeqCst);
        let first: Option<Arc<str>> = if closing {
            Some(Arc::from(BYE))
        } else {
            Some(
                self.latest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    // A comment line: opens the stream before the first tick.
                    .unwrap_or_else(|| Arc::from(": attune live stream\n\n")),
            )
        };
        futures_util::stream::unfold((rx, first, false), |(mut rx, first, done)| async move {
            if done {
                return None;
            }
            let frame = match first {
                Some(f) => f,
                None => loop {
                    match rx.recv().await {
                        Ok(f) => break f,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                },
            };
            let last = &*frame == BYE;
            Some((
                Ok(actix_web::web::Bytes::copy_from_slice(frame.as_bytes())),
                (rx, None, last),
            ))
        })
    }
}

impl Hub {
    /// Whether the hub was closed (the server is stopping).
    pub fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_quantiles_see_only_the_interval() {
        let h = Histogram::default();
        for _ in 0..1000 {
            h.record(10_000);
        }
        let prev = h.snapshot();
        for v in 1..=100 {
            h.record(v);
        }
        let cur = h.snapshot();
        let p50 = window_quantile(&prev, &cur, 0.5);
        assert!((50.0..=60.0).contains(&p50), "{p50}");
        assert!(window_quantile(&prev, &cur, 0.99) <= 120.0);
        assert_eq!(window_quantile(&cur, &cur, 0.5), 0.0);
    }

    #[test]
    fn unknown_methods_and_paths_share_labels() {
        let m = HttpMetrics::default();
        m.observe("BREW", None, 404, Duration::from_micros(5));
        m.observe("FETCH", None, 404, Duration::from_micros(5));
        m.observe(
            "GET",
            Some("/healthz".into()),
            200,
            Duration::from_micros(5),
        );
        let s = m.snapshot();
        assert_eq!(s.len(), 2);
        assert!(s.iter().any(|(m, r, h, st)| m == "other"
            && r == "unmatched"
            && h.count == 2
            && st == &vec![(404, 2)]));
    }
}
