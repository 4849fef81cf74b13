//! `GET /metrics`: the engine's counters, gauges and histograms and the latency of every
//! route, in Prometheus's text exposition format (0.0.4), written by `prometheus-client`,
//! the Prometheus project's Rust client. The engine keeps its own lock-free figures (its
//! histograms are read by the control panel too), so a [`Collector`] reads one snapshot
//! of them on each scrape and hands it to the client's encoder, which owns the format:
//! names, `_total` on counters, units, escaping, cumulative buckets.
//!
//! Names follow Prometheus's conventions: base units (durations in `_seconds`; the
//! histograms kept in µs inside are scaled on the way out), `_total` on counters;
//! `promtool check metrics` passes on the output (a test runs it where promtool is
//! installed).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::live::HttpMetrics;
use super::*;
use crate::engine::metrics::HistogramSnapshot;

/// The registry `/metrics` encodes: every figure under the `attune_` prefix.
pub(super) fn registry(engine: Engine, http: Arc<HttpMetrics>) -> Registry {
    let mut registry = Registry::with_prefix("attune");
    registry.register_collector(Box::new(EngineCollector { engine, http }));
    registry
}

/// Reads the engine's and the routes' figures at each scrape.
struct EngineCollector {
    engine: Engine,
    http: Arc<HttpMetrics>,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCollector").finish_non_exhaustive()
    }
}

/// One of the engine's histogram snapshots as a Prometheus histogram, its bounds and sum
/// multiplied by `scale` (1e-6 for a histogram kept in µs and exposed in seconds).
struct Snapshot<'a> {
    h: &'a HistogramSnapshot,
    scale: f64,
}

impl EncodeMetric for Snapshot<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .h
            .buckets
            .iter()
            .map(|(le, c)| (le * self.scale, *c))
            .collect();
        let sum = self.h.mean * self.h.count as f64 * self.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, self.h.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Encodes one unlabelled metric under its HELP and TYPE lines.
fn one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

impl Collector for EngineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.engine.metrics();
        for (name, help, v) in [
            (
                "recommendations",
                "Recommendations answered.",
                m.recommendations,
            ),
            ("events", "Events acknowledged.", m.events),
            (
                "overloaded",
                "Requests refused as overloaded.",
                m.overloaded,
            ),
            ("errors", "Requests failed.", m.errors),
            ("sessions_evicted", "Sessions evicted.", m.sessions_evicted),
        ] {
            one(&mut e, name, help, None, &ConstCounter::new(v))?;
        }
        one(
            &mut e,
            "reward",
            "Cumulative reward of joined feedback.",
            None,
            &ConstCounter::new(m.reward),
        )?;
        for (name, help, v) in [
            (
                "active_sessions",
                "Session actors alive.",
                m.active_sessions,
            ),
            (
                "queue_depth",
                "Requests waiting for inference.",
                m.queue_depth,
            ),
            (
                "strategy_version",
                "Strategy version in force.",
                m.strategy_version,
            ),
            ("model_version", "Model version serving.", m.model_version),
        ] {
            one(&mut e, name, help, None, &ConstGauge::new(v as f64))?;
        }
        let mut weights = e.encode_descriptor(
            "blend_weight",
            "Blend weight in force, by source.",
            None,
            MetricType::Gauge,
        )?;
        for (source, w) in crate::engine::strategy::SOURCES
            .iter()
            .zip(m.weights.to_array())
        {
            ConstGauge::new(f64::from(w)).encode(weights.encode_family(&[("source", *source)])?)?;
        }
        const US: f64 = 1e-6;
        let seconds = Some(&Unit::Seconds);
        for (name, help, unit, h, scale) in [
            (
                "recommend_latency",
                "Recommendation latency in the engine.",
                seconds,
                &m.recommend_latency_us,
                US,
            ),
            (
                "record_latency",
                "Event latency until durable.",
                seconds,
                &m.record_latency_us,
                US,
            ),
            (
                "batch_size",
                "Requests per inference batch.",
                None,
                &m.batch_size,
                1.0,
            ),
            (
                "queue_delay",
                "Wait before a batch starts.",
                seconds,
                &m.queue_delay_us,
                US,
            ),
        ] {
            one(&mut e, name, help, unit, &Snapshot { h, scale })?;
        }

        let routes = self.http.snapshot();
        let mut latency = e.encode_descriptor(
            "http_request_duration",
            "HTTP request latency by route.",
            seconds,
            MetricType::Histogram,
        )?;
        for (method, route, h, _) in &routes {
            let labels = [("method", method.as_str()), ("route", route.as_str())];
            Snapshot { h, scale: US }.encode(latency.encode_family(&labels)?)?;
        }
        let mut responses = e.encode_descriptor(
            "http_responses",
            "HTTP responses by route and status.",
            None,
            MetricType::Counter,
        )?;
        for (method, route, _, statuses) in &routes {
            for (status, n) in statuses {
                let status = status.to_string();
                let labels = [
                    ("method", method.as_str()),
                    ("route", route.as_str()),
                    ("status", status.as_str()),
                ];
                ConstCounter::new(*n).encode(responses.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Prometheus text exposition of the engine's figures.
pub(super) async fn prometheus(state: web::Data<AppState>) -> ApiResult {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &state.metrics)
        .map_err(|_| Error::internal("encoding /metrics"))?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
        .body(out))
}
