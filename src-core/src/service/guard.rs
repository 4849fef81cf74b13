//! Guarded publishes: a strategy published with limits (p99 latency, reward per
//! recommendation against a baseline taken before the publish) that the service itself
//! watches, interval by interval, for a set time. A limit breached for `breach_intervals`
//! intervals in a row (each with at least `min_samples` recommendations: a quiet interval
//! judges nothing) reverts to the version the publish was based on, once: the revert is a
//! new version with the reason, audited, sent on the live stream as a marker, and posted
//! to the guard's webhook. The guard runs whether or not a console is open.
//!
//! [`Watch`] holds the judgement and is tested without a server; [`spawn`] runs it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::audit::Recorder;
use super::history::History;
use super::live::window_quantile;
use crate::engine::strategy::Publish;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// The limits of a guarded publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// Revert when the interval's recommendation p99 exceeds this (ms).
    #[serde(default)]
    pub max_p99_ms: Option<f64>,
    /// Revert when the interval's reward per recommendation falls below this share of the
    /// baseline (0.8: 80%).
    #[serde(default)]
    pub min_reward_per_rec: Option<f64>,
    /// Length of an interval, in seconds.
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// Intervals in a row a limit must be breached for before the revert.
    #[serde(default = "default_breaches")]
    pub breach_intervals: u32,
    /// Recommendations an interval needs to be judged.
    #[serde(default = "default_samples")]
    pub min_samples: u64,
    /// Seconds before the publish the reward baseline covers.
    #[serde(default = "default_baseline")]
    pub baseline_s: u64,
    /// How long the guard watches, in seconds.
    #[serde(default = "default_duration")]
    pub duration_s: u64,
    /// `http://host:port/path` to POST the revert to (JSON).
    #[serde(default)]
    pub webhook: Option<String>,
}

fn default_interval() -> u64 {
    10
}
fn default_breaches() -> u32 {
    3
}
fn default_samples() -> u64 {
    100
}
fn default_baseline() -> u64 {
    60
}
fn default_duration() -> u64 {
    600
}

impl Guard {
    /// Checks every knob; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::config(format!("guard.{field}"), msg));
        if self.max_p99_ms.is_none() && self.min_reward_per_rec.is_none() {
            return bad(
                "max_p99_ms",
                "a guard needs at least one limit: max_p99_ms or min_reward_per_rec".into(),
            );
        }
        if let Some(v) = self.max_p99_ms {
            if !(v.is_finite() && v > 0.0 && v <= 60_000.0) {
                return bad("max_p99_ms", format!("must be in (0, 60000] ms, got {v}"));
            }
        }
        if let Some(v) = self.min_reward_per_rec {
            if !(v.is_finite() && v > 0.0 && v <= 10.0) {
                return bad(
                    "min_reward_per_rec",
                    format!("must be a share of the baseline in (0, 10], got {v}"),
                );
            }
        }
        if !(1..=3600).contains(&self.interval_s) {
            return bad(
                "interval_s",
                format!("must be in [1, 3600], got {}", self.interval_s),
            );
        }
        if !(1..=100).contains(&self.breach_intervals) {
            return bad(
                "breach_intervals",
                format!("must be in [1, 100], got {}", self.breach_intervals),
            );
        }
        if self.min_samples > 1_000_000_000 {
            return bad(
                "min_samples",
                format!("must be at most 1e9, got {}", self.min_samples),
            );
        }
        if !(1..=3600).contains(&self.baseline_s) {
            return bad(
                "baseline_s",
                format!("must be in [1, 3600], got {}", self.baseline_s),
            );
        }
        if !(self.interval_s..=7 * 86_400).contains(&self.duration_s) {
            return bad(
                "duration_s",
                format!(
                    "must be in [interval_s = {}, 604800], got {}",
                    self.interval_s, self.duration_s
                ),
            );
        }
        if let Some(w) = &self.webhook {
            webhook_target(w).map_err(|m| Error::config("guard.webhook", m))?;
        }
        Ok(())
    }
}

/// `(host:port, path)` of an `http://` webhook URL.
fn webhook_target(url: &str) -> std::result::Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!(
            "{url:?}: only http:// webhooks are supported (put a proxy before an https endpoint)"
        )
    })?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() || host.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
        return Err(format!("{url:?} is not a valid http:// URL"));
    }
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Ok((host, path.to_string()))
}

/// One limit's standing.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LimitStatus {
    /// `p99_ms` or `reward_per_rec`.
    #[schema(value_type = String)]
    pub metric: &'static str,
    /// The limit (for `reward_per_rec`, the baseline times the share).
    pub limit: f64,
    /// The last judged interval's value (`None` before the first).
    pub current: Option<f64>,
    /// Recommendations in the last interval.
    pub samples: u64,
    /// Judged intervals in a row that breached the limit.
    pub breaches: u32,
    /// Whether the last judged interval breached it.
    pub breached: bool,
}

/// Where a guard stands (`GET /v1/strategy/guard`, `event: guard`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GuardStatus {
    /// `none`, `watching`, `passed`, `reverted`, `aborted` or `superseded` (another
    /// version was published meanwhile).
    #[schema(value_type = String, pattern = "^(none|watching|passed|reverted|aborted|superseded|failed)$")]
    pub state: &'static str,
    pub version: Option<u64>,
    pub based_on: Option<u64>,
    pub guard: Option<Guard>,
    pub started_ms: Option<i64>,
    pub time_left_s: f64,
    /// Reward per recommendation before the publish (`None`: no recommendations then;
    /// the reward limit is not judged).
    pub baseline_reward_per_rec: Option<f64>,
    pub limits: Vec<LimitStatus>,
    /// Why the guard reverted, or why it stopped.
    pub reason: Option<String>,
    /// The version the revert created.
    pub reverted_to: Option<u64>,
}

impl GuardStatus {
    /// No guard has run.
    pub fn none() -> GuardStatus {
        GuardStatus {
            state: "none",
            version: None,
            based_on: None,
            guard: None,
            started_ms: None,
            time_left_s: 0.0,
            baseline_reward_per_rec: None,
            limits: Vec::new(),
            reason: None,
            reverted_to: None,
        }
    }
}

/// One interval's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Recommendations made.
    pub samples: u64,
    /// Their p99 latency (ms).
    pub p99_ms: f64,
    /// Reward gained per recommendation.
    pub reward_per_rec: f64,
}

/// The judgement of a guard, interval by interval.
#[derive(Debug, Clone)]
pub struct Watch {
    guard: Guard,
    limits: Vec<LimitStatus>,
}

impl Watch {
    /// A watch of `guard` with the reward baseline measured before the publish.
    pub fn new(guard: Guard, baseline_reward_per_rec: Option<f64>) -> Watch {
        let mut limits = Vec::new();
        if let Some(v) = guard.max_p99_ms {
            limits.push(LimitStatus {
                metric: "p99_ms",
                limit: v,
                current: None,
                samples: 0,
                breaches: 0,
                breached: false,
            });
        }
        if let (Some(share), Some(base)) = (guard.min_reward_per_rec, baseline_reward_per_rec) {
            limits.push(LimitStatus {
                metric: "reward_per_rec",
                limit: share * base,
                current: None,
                samples: 0,
                breaches: 0,
                breached: false,
            });
        }
        Watch { guard, limits }
    }

    /// Judges one interval; returns the reason to revert when a limit has now been
    /// breached for `breach_intervals` judged intervals in a row.
    pub fn observe(&mut self, iv: Interval) -> Option<String> {
        for l in &mut self.limits {
            l.samples = iv.samples;
        }
        if iv.samples < self.guard.min_samples.max(1) {
            return None;
        }
        let mut reason = None;
        for l in &mut self.limits {
            let (value, breached) = match l.metric {
                "p99_ms" => (iv.p99_ms, iv.p99_ms > l.limit),
                _ => (iv.reward_per_rec, iv.reward_per_rec < l.limit),
            };
            l.current = Some(value);
            l.breached = breached;
            l.breaches = if breached { l.breaches + 1 } else { 0 };
            if breached && l.breaches >= self.guard.breach_intervals && reason.is_none() {
                let cmp = if l.metric == "p99_ms" { ">" } else { "<" };
                reason = Some(format!(
                    "{} {} {cmp} limit {} for {} intervals of {} s",
                    l.metric,
                    figure(value),
                    figure(l.limit),
                    l.breaches,
                    self.guard.interval_s
                ));
            }
        }
        reason
    }

    /// The limits' standing.
    pub fn limits(&self) -> &[LimitStatus] {
        &self.limits
    }
}

/// A figure with three decimals, or in scientific notation when that would show 0.000.
fn figure(v: f64) -> String {
    if v == 0.0 || v.abs() >= 0.001 {
        format!("{v:.3}")
    } else {
        format!("{v:.3e}")
    }
}

/// The service's guard: the one running, or the last one's outcome.
pub type GuardSlot = Arc<Mutex<(u64, GuardStatus)>>;

/// Starts watching `version` (published from `based_on`) under `guard`, replacing any
/// guard running (which ends as `superseded`). Returns the first status.
pub fn spawn(
    engine: Engine,
    slot: GuardSlot,
    history: &History,
    recorder: Arc<Recorder>,
    guard: Guard,
    version: u64,
    based_on: u64,
) -> GuardStatus {
    let baseline = history
        .reward_per_recommendation(Duration::from_secs(guard.baseline_s))
        .map(|(r, _)| r);
    let mut watch = Watch::new(guard.clone(), baseline);
    let started = std::time::Instant::now();
    let mut status = GuardStatus {
        state: "watching",
        version: Some(version),
        based_on: Some(based_on),
        guard: Some(guard.clone()),
        started_ms: Some(crate::store::now_ms()),
        time_left_s: guard.duration_s as f64,
        baseline_reward_per_rec: baseline,
        limits: watch.limits().to_vec(),
        reason: (baseline.is_none() && guard.min_reward_per_rec.is_some()).then(|| {
            "no recommendations before the publish: the reward limit is not judged".to_string()
        }),
        reverted_to: None,
    };
    let generation = {
        let mut g = slot.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        g.1 = status.clone();
        g.0
    };
    recorder.stream("guard", &status);
    let first = status.clone();
    actix_web::rt::spawn(async move {
        let every = Duration::from_secs(guard.interval_s);
        let total = Duration::from_secs(guard.duration_s);
        let mut prev = engine.metrics();
        loop {
            actix_web::rt::time::sleep(every).await;
            let still_ours =
                |slot: &GuardSlot| slot.lock().unwrap_or_else(|e| e.into_inner()).0 == generation;
            if !still_ours(&slot) || recorder.is_closing() {
                return;
            }
            let cur = engine.metrics();
            let samples = cur.recommendations.saturating_sub(prev.recommendations);
            let iv = Interval {
                samples,
                p99_ms: window_quantile(
                    &prev.recommend_latency_us,
                    &cur.recommend_latency_us,
                    0.99,
                ) / 1000.0,
                reward_per_rec: if samples == 0 {
                    0.0
                } else {
                    (cur.reward - prev.reward) / samples as f64
                },
            };
            prev = cur;
            let live = engine.strategy().version;
            let verdict = watch.observe(iv);
            status.limits = watch.limits().to_vec();
            status.time_left_s = total.saturating_sub(started.elapsed()).as_secs_f64();
            if live != version {
                status.state = "superseded";
                status.reason = Some(format!("version {live} was published meanwhile"));
            } else if let Some(reason) = verdict {
                match revert(&engine, &recorder, &status, version, based_on, &reason) {
                    Ok(to) => {
                        status.state = "reverted";
                        status.reverted_to = Some(to);
                        status.reason = Some(reason);
                    }
                    Err(Error::Conflict(m)) => {
                        status.state = "superseded";
                        status.reason = Some(m);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the guard could not revert");
                        status.state = "failed";
                        status.reason = Some(format!("{reason}; the revert failed: {e}"));
                    }
                }
            } else if status.time_left_s <= 0.0 {
                status.state = "passed";
            }
            {
                let mut g = slot.lock().unwrap_or_else(|e| e.into_inner());
                if g.0 != generation {
                    return;
                }
                g.1 = status.clone();
            }
            recorder.stream("guard", &status);
            if status.state != "watching" {
                return;
            }
        }
    });
    first
}

/// Publishes the base version's strategy again as a new version, once (the check that
/// the guarded version is still in force is made under the strategy book's lock).
fn revert(
    engine: &Engine,
    recorder: &Recorder,
    status: &GuardStatus,
    version: u64,
    based_on: u64,
    reason: &str,
) -> Result<u64> {
    let base = engine
        .strategy_version(based_on)?
        .ok_or_else(|| Error::NotFound(format!("strategy version {based_on}")))?;
    let v = engine.publish_strategy(
        base.strategy,
        format!("guard revert to {based_on}: {reason}"),
        &Publish {
            author: "guard".into(),
            message: reason.to_string(),
            base_version: Some(version),
        },
    )?;
    tracing::warn!(
        version,
        reverted_to = v.version,
        reason,
        "guard reverted a publish"
    );
    recorder.strategy_changed(&v);
    let _ = recorder.record(
        "guard",
        "strategy.revert",
        format!("v{}", v.version),
        serde_json::json!({
            "reverted": version,
            "to": based_on,
            "new_version": v.version,
            "reason": reason,
            "limits": status.limits,
        }),
    );
    if let Some(url) = status.guard.as_ref().and_then(|g| g.webhook.clone()) {
        let body = serde_json::json!({
            "event": "strategy.revert",
            "reverted": version,
            "to": based_on,
            "new_version": v.version,
            "reason": reason,
        });
        std::thread::Builder::new()
            .name("attune-webhook".into())
            .spawn(move || post_webhook(&url, &body))
            .map_err(|e| Error::io("attune-webhook thread", e))?;
    }
    Ok(v.version)
}

/// POSTs `body` to an `http://` URL (validated with the guard); failures are logged.
fn post_webhook(url: &str, body: &serde_json::Value) {
    use std::net::ToSocketAddrs;
    let outcome = (|| -> std::result::Result<u16, String> {
        let (host, path) = webhook_target(url)?;
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to nothing"))?;
        let mut client =
            super::client::Client::new(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        let r = client
            .request("POST", &path, None, body.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(r.status)
    })();
    match outcome {
        Ok(status) if (200..300).contains(&status) => {
            tracing::info!(url, status, "guard webhook posted")
        }
        Ok(status) => tracing::warn!(url, status, "guard webhook answered an error"),
        Err(e) => tracing::warn!(url, error = %e, "guard webhook failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        serde_json::from_str(r#"{"max_p99_ms": 10, "min_reward_per_rec": 0.8, "interval_s": 1, "breach_intervals": 3, "min_samples": 50}"#)
            .expect("guard")
    }

    fn iv(samples: u64, p99_ms: f64, reward_per_rec: f64) -> Interval {
        Interval {
            samples,
            p99_ms,
            reward_per_rec,
        }
    }

    #[test]
    fn a_spike_of_one_interval_does_not_revert() {
        let mut w = Watch::new(guard(), Some(1.0));
        let seq = [
            iv(100, 2.0, 1.0),
            iv(100, 50.0, 1.0),
            iv(100, 2.0, 1.0),
            iv(100, 50.0, 1.0),
            iv(100, 50.0, 1.0),
            iv(100, 2.0, 1.0),
        ];
        for i in seq {
            assert_eq!(w.observe(i), None);
        }
    }

    #[test]
    fn a_sustained_breach_reverts_and_names_the_metric() {
        let mut w = Watch::new(guard(), Some(1.0));
        assert_eq!(w.observe(iv(100, 1.0, 0.5)), None);
        assert_eq!(w.observe(iv(100, 1.0, 0.5)), None);
        let reason = w.observe(iv(100, 1.0, 0.5)).expect("third breach reverts");
        assert!(
            reason.starts_with("reward_per_rec 0.500 < limit 0.800"),
            "{reason}"
        );
    }

    #[test]
    fn quiet_intervals_judge_nothing() {
        let mut w = Watch::new(guard(), Some(1.0));
        assert_eq!(w.observe(iv(100, 50.0, 1.0)), None);
        assert_eq!(w.observe(iv(100, 50.0, 1.0)), None);
        // Too few samples: neither a breach nor a clear.
        assert_eq!(w.observe(iv(10, 50.0, 1.0)), None);
        assert_eq!(w.limits()[0].breaches, 2);
        assert!(w
            .observe(iv(100, 50.0, 1.0))
            .expect("revert")
            .starts_with("p99_ms"));
    }

    #[test]
    fn without_a_baseline_the_reward_limit_is_not_judged() {
        let w = Watch::new(guard(), None);
        assert_eq!(w.limits().len(), 1);
        assert_eq!(w.limits()[0].metric, "p99_ms");
    }

    #[test]
    fn bad_guards_name_their_field() {
        for (json, field) in [
            (r#"{}"#, "guard.max_p99_ms"),
            (r#"{"max_p99_ms": -1}"#, "guard.max_p99_ms"),
            (r#"{"max_p99_ms": 5, "interval_s": 0}"#, "guard.interval_s"),
            (r#"{"max_p99_ms": 5, "duration_s": 1}"#, "guard.duration_s"),
            (
                r#"{"max_p99_ms": 5, "webhook": "https://x"}"#,
                "guard.webhook",
            ),
            (r#"{"min_reward_per_rec": 0}"#, "guard.min_reward_per_rec"),
        ] {
            let g: Guard = serde_json::from_str(json).expect(json);
            let e = g.validate().expect_err(json).to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
        guard().validate().expect("valid");
    }
}
