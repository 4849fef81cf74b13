//! The live figures kept for later: one point every 10 s for the last 24 h, in memory, so
//! that a console opened after an incident shows what happened before it (the live
//! stream only shows what happens while one watches). Each point covers its own 10 s
//! (rates and latency quantiles of that interval, not an average of 1-second figures).
//! The last hour of cumulative counters is kept at the stream's rate too, for the
//! strategy guard's baseline.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::live::LiveStats;
use crate::engine::metrics::MetricsSnapshot;

/// Width of a history point.
pub const HISTORY_STEP: Duration = Duration::from_secs(10);
/// Points kept: 24 h.
pub const HISTORY_POINTS: usize = 24 * 360;
/// How far back the counters for baselines reach.
const COUNTERS_KEPT: Duration = Duration::from_secs(3600);

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Counters {
    at: Instant,
    recommendations: u64,
    reward: f64,
}

#[derive(Default)]
struct Inner {
    points: VecDeque<LiveStats>,
    /// The snapshot that opened the current step.
    anchor: Option<(MetricsSnapshot, u64, Instant)>,
    counters: VecDeque<Counters>,
}

/// The service's memory of its live figures.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    /// Takes a snapshot of the engine's cumulative figures (and the HTTP request count).
    pub fn observe(&self, cur: &MetricsSnapshot, http: u64, now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.counters.push_back(Counters {
            at: now,
            recommendations: cur.recommendations,
            reward: cur.reward,
        });
        while g
            .counters
            .front()
            .is_some_and(|c| now.duration_since(c.at) > COUNTERS_KEPT)
        {
            g.counters.pop_front();
        }
        let step_done = match &g.anchor {
            None => {
                g.anchor = Some((cur.clone(), http, now));
                return;
            }
            Some((_, _, at)) => now.duration_since(*at) >= HISTORY_STEP,
        };
        if step_done {
            let (prev, http_prev, at) = g.anchor.take().expect("checked above");
            let point = LiveStats::between(&prev, cur, http_prev, http, now - at);
            g.points.push_back(point);
            if g.points.len() > HISTORY_POINTS {
                g.points.pop_front();
            }
            g.anchor = Some((cur.clone(), http, now));
        }
    }

    /// The points of the last `range` (oldest first).
    pub fn points(&self, range: Duration) -> Vec<LiveStats> {
        let since = crate::store::now_ms() - range.as_millis() as i64;
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.points
            .iter()
            .filter(|p| p.ts_ms >= since)
            .cloned()
            .collect()
    }

    /// Reward per recommendation over the last `span` (as far back as is kept), with the
    /// number of recommendations it covers; `None` when none were made.
    pub fn reward_per_recommendation(&self, span: Duration) -> Option<(f64, u64)> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let last = g.counters.back()?;
        let first = g
            .counters
            .iter()
            .find(|c| last.at.duration_since(c.at) <= span)?;
        let recs = last.recommendations.saturating_sub(first.recommendations);
        (recs > 0).then(|| ((last.reward - first.reward) / recs as f64, recs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(recs: u64, reward: f64) -> MetricsSnapshot {
        MetricsSnapshot {
            recommendations: recs,
            reward,
            ..MetricsSnapshot::default()
        }
    }

    #[test]
    fn a_point_covers_each_step_and_baselines_look_back() {
        let h = History::default();
        let t0 = Instant::now();
        for s in 0..=25u64 {
            h.observe(
                &snapshot(s * 100, s as f64 * 50.0),
                0,
                t0 + Duration::from_secs(s),
            );
        }
        let points = h.points(Duration::from_secs(3600));
        assert_eq!(points.len(), 2, "two whole 10 s steps in 25 s");
        assert!((points[0].recommendations_per_s - 100.0).abs() < 1e-9);
        let (per_rec, recs) = h
            .reward_per_recommendation(Duration::from_secs(5))
            .expect("baseline");
        assert_eq!(recs, 500);
        assert!((per_rec - 0.5).abs() < 1e-9);
        assert!(History::default()
            .reward_per_recommendation(Duration::from_secs(5))
            .is_none());
    }
}
