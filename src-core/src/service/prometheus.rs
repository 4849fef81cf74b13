//! `GET /metrics`: the engine's counters, gauges and histograms and the latency of every
//! route, in Prometheus's text exposition format. Names follow Prometheus's conventions:
//! base units (durations in `_seconds`, histograms kept in µs inside are scaled on the
//! way out), `_total` on counters; `promtool check metrics` passes on the output (a test
//! runs it where promtool is installed).

use super::*;

/// One Prometheus sample of a counter or gauge, with its HELP and TYPE lines.
pub(super) fn scalar(out: &mut String, kind: &str, name: &str, help: &str, v: f64) {
    out.push_str(&format!(
        "# HELP attune_{name} {help}\n# TYPE attune_{name} {kind}\nattune_{name} {v}\n"
    ));
}

/// The `_bucket` (cumulative), `_sum` and `_count` samples of one histogram series;
/// `labels` (`k="v",...`, or empty) go before `le`; bounds and sum are multiplied by
/// `scale` (1e-6 for a histogram kept in µs and exposed in seconds).
pub(super) fn histogram_series(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &crate::engine::metrics::HistogramSnapshot,
    scale: f64,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cum = 0;
    for (le, c) in &h.buckets {
        cum += c;
        let le = *le * scale;
        out.push_str(&format!(
            "attune_{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}\n"
        ));
    }
    let plain = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    out.push_str(&format!(
        "attune_{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}\nattune_{name}_sum{plain} {}\nattune_{name}_count{plain} {}\n",
        h.count,
        h.mean * h.count as f64 * scale,
        h.count
    ));
}

/// Prometheus text exposition of the engine's figures.
pub(super) async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    let m = state.engine.metrics();
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: f64| scalar(&mut out, "counter", name, help, v);
    counter(
        "recommendations_total",
        "Recommendations answered.",
        m.recommendations as f64,
    );
    counter("events_total", "Events acknowledged.", m.events as f64);
    counter(
        "overloaded_total",
        "Requests refused as overloaded.",
        m.overloaded as f64,
    );
    counter("errors_total", "Requests failed.", m.errors as f64);
    counter(
        "reward_total",
        "Cumulative reward of joined feedback.",
        m.reward,
    );
    counter(
        "sessions_evicted_total",
        "Sessions evicted.",
        m.sessions_evicted as f64,
    );
    let mut gauge = |name: &str, help: &str, v: f64| scalar(&mut out, "gauge", name, help, v);
    gauge(
        "active_sessions",
        "Session actors alive.",
        m.active_sessions as f64,
    );
    gauge(
        "queue_depth",
        "Requests waiting for inference.",
        m.queue_depth as f64,
    );
    gauge(
        "strategy_version",
        "Strategy version in force.",
        m.strategy_version as f64,
    );
    gauge(
        "model_version",
        "Model version serving.",
        m.model_version as f64,
    );
    out.push_str("# HELP attune_blend_weight Blend weight in force, by source.\n# TYPE attune_blend_weight gauge\n");
    for (name, w) in crate::engine::strategy::SOURCES
        .iter()
        .zip(m.weights.to_array())
    {
        out.push_str(&format!("attune_blend_weight{{source=\"{name}\"}} {w}\n"));
    }
    const US: f64 = 1e-6;
    for (name, help, h, scale) in [
        (
            "recommend_latency_seconds",
            "Recommendation latency in the engine.",
            &m.recommend_latency_us,
            US,
        ),
        (
            "record_latency_seconds",
            "Event latency until durable.",
            &m.record_latency_us,
            US,
        ),
        (
            "batch_size",
            "Requests per inference batch.",
            &m.batch_size,
            1.0,
        ),
        (
            "queue_delay_seconds",
            "Wait before a batch starts.",
            &m.queue_delay_us,
            US,
        ),
    ] {
        out.push_str(&format!(
            "# HELP attune_{name} {help}\n# TYPE attune_{name} histogram\n"
        ));
        histogram_series(&mut out, name, "", h, scale);
    }
    out.push_str("# HELP attune_http_request_duration_seconds HTTP request latency by route.\n# TYPE attune_http_request_duration_seconds histogram\n");
    let routes = state.http.snapshot();
    for (method, route, h, _) in &routes {
        let labels = format!("method=\"{method}\",route=\"{route}\"");
        histogram_series(&mut out, "http_request_duration_seconds", &labels, h, US);
    }
    out.push_str("# HELP attune_http_responses_total HTTP responses by route and status.\n# TYPE attune_http_responses_total counter\n");
    for (method, route, _, statuses) in &routes {
        for (status, n) in statuses {
            out.push_str(&format!(
                "attune_http_responses_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}\n"
            ));
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
