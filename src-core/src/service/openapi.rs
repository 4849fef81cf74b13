//! The OpenAPI 3.1 description of the service, generated from the same route table that
//! registers the handlers (`super::routes`), so a route cannot be served without being
//! described, or described without being served.
//!
//! Bodies are described by the JSON schemas below; they follow the serde types of the
//! engine (`Recommendation`, `StrategyVersion`, ...) and the `jsonl` wire format.

use serde_json::{json, Value};

/// One route: what registers it and what describes it.
pub struct RouteDoc {
    /// HTTP method.
    pub method: actix_web::http::Method,
    /// Path, with `{name}` parameters (the same syntax in actix and OpenAPI).
    pub path: &'static str,
    /// One line for the reader.
    pub summary: &'static str,
    /// The token it needs: none, a read token (or an admin one), or an admin token.
    pub auth: super::auth::Role,
    /// Request body: media types and the schema name in `components`.
    pub request: Option<(&'static [&'static str], &'static str)>,
    /// Success response: media type and schema name.
    pub response: (&'static str, &'static str),
    /// Attaches the handler.
    pub handler: fn(actix_web::Route) -> actix_web::Route,
}

/// The largest integer every JSON reader keeps exactly (2^53 - 1): the bound of versions,
/// seeds and times in the document.
const MAX_SAFE: i64 = (1 << 53) - 1;

/// What `wire::check_id` accepts, as far as JSON Schema can say it: 1 to 256 bytes (the
/// schema counts characters), no control characters, no U+FFFD.
const ID_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F\\uFFFD]+$";

/// A user or item id in a path or body.
fn id_string() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": crate::wire::MAX_ID_BYTES,
           "pattern": ID_PATTERN})
}

fn params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match (name, path.starts_with("/v1/replay/")) {
                ("id", true) => json!({"type": "integer", "minimum": 0}),
                ("id", false) => id_string(),
                _ => json!({"type": "string", "minLength": 1}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

/// The status of a success: 200, or 202 for a job that starts (`POST /v1/replay`).
fn success_status(r: &RouteDoc) -> &'static str {
    if r.method == actix_web::http::Method::POST && r.path == "/v1/replay" {
        "202"
    } else {
        "200"
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The document for `routes`.
pub fn document(routes: &[RouteDoc]) -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes {
        let mut op = json!({
            "summary": r.summary,
            "operationId": operation_id(r),
            "responses": {
                success_status(r): {"description": "success",
                        "content": {r.response.0: {"schema": schema_ref(r.response.1)}}},
                "4XX": {"description": "bad request, unauthorized, not found, too large",
                        "content": {"application/json": {"schema": schema_ref("Error")}}},
                "503": {"description": "overloaded or shutting down (with Retry-After)",
                        "content": {"application/json": {"schema": schema_ref("Error")}}},
            },
        });
        let ps = params(r.path);
        if !ps.is_empty() {
            op["parameters"] = Value::Array(ps);
        }
        if let Some((types, schema)) = r.request {
            let content: serde_json::Map<String, Value> = types
                .iter()
                .map(|t| (t.to_string(), json!({"schema": schema_ref(schema)})))
                .collect();
            // A replay with no body replays the live strategy.
            let required = r.request.map(|(_, s)| s) != Some("ReplayRequest");
            op["requestBody"] = json!({"required": required, "content": content});
        }
        match r.auth {
            super::auth::Role::Admin => {
                op["security"] = json!([{"admin": []}]);
                op["x-attune-role"] = json!("admin");
            }
            super::auth::Role::Read => {
                op["security"] = json!([{"token": []}]);
                op["x-attune-role"] = json!("read");
            }
            super::auth::Role::None => {}
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method.as_str().to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Attune",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A real-time, adaptive recommendation engine. Admin routes need `Authorization: Bearer <token>` with an admin token (403 with a read-only one), read routes any token; every error is `{\"error\": {\"code\", \"message\"}}`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer", "description": "a token of role admin"},
                "token": {"type": "http", "scheme": "bearer", "description": "a token of role read or admin"},
            },
            "schemas": schemas(),
        },
    })
}

fn operation_id(r: &RouteDoc) -> String {
    let mut id = r.method.as_str().to_ascii_lowercase();
    for seg in r.path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.push_str(seg.trim_start_matches('{').trim_end_matches('}'));
    }
    id
}

fn weights() -> Value {
    let props: serde_json::Map<String, Value> = crate::engine::strategy::SOURCES
        .iter()
        .map(|s| (s.to_string(), json!({"type": "number"})))
        .collect();
    json!({"type": "object", "properties": props})
}

/// The strategy as `engine::strategy::Strategy` reads it: every field optional, no unknown
/// ones, each knob's range. What JSON Schema cannot say (each weight within its own
/// `[min, max]`, a name of at most 200 bytes) is checked by the server, with a 400.
fn strategy() -> Value {
    let weights_in = |lo: f64, hi: f64| {
        let props: serde_json::Map<String, Value> = crate::engine::strategy::SOURCES
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    json!({"type": "number", "minimum": lo, "maximum": hi}),
                )
            })
            .collect();
        let all: Vec<&str> = crate::engine::strategy::SOURCES.to_vec();
        json!({"type": "object", "additionalProperties": false, "required": all, "properties": props})
    };
    let reward: serde_json::Map<String, Value> = ["click", "cart", "purchase", "like", "skip"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                json!({"type": "number", "minimum": -1000, "maximum": 1000}),
            )
        })
        .collect();
    json!({"type": "object", "additionalProperties": false,
        "description": "each weight must also lie within its [min_weights, max_weights]",
        "properties": {
            "name": {"type": "string", "maxLength": 200},
            "weights": weights_in(-1000.0, 1000.0),
            "min_weights": weights_in(-1000.0, 1000.0),
            "max_weights": weights_in(-1000.0, 1000.0),
            "pinned": {"type": "array",
                "items": {"enum": crate::engine::strategy::SOURCES}},
            "learning": {"type": "object", "additionalProperties": false, "properties": {
                "adaptive": {"type": "boolean"},
                "learning_rate": {"type": "number", "minimum": crate::engine::strategy::MIN_LEARNING_RATE, "maximum": 10},
                "update_every": {"type": "integer", "minimum": 1, "maximum": 100_000}}},
            "exploration": {"oneOf": [
                {"type": "object", "required": ["mode"],
                 "properties": {"mode": {"const": "none"}}},
                {"type": "object", "additionalProperties": false, "required": ["mode", "epsilon"],
                 "properties": {"mode": {"const": "epsilon"}, "epsilon": {"type": "number", "minimum": 0, "maximum": 1}}},
                {"type": "object", "additionalProperties": false, "required": ["mode", "scale"],
                 "properties": {"mode": {"const": "thompson"}, "scale": {"type": "number", "minimum": 0, "maximum": 10}}}]},
            "filters": {"type": "object", "additionalProperties": false, "properties": {
                "exclude_seen": {"type": "boolean"},
                "include_tags": {"type": "array", "items": {"type": "string"}},
                "exclude_tags": {"type": "array", "items": {"type": "string"}}}},
            "reward": {"type": "object", "additionalProperties": false, "properties": reward},
            "candidates": {"type": "integer", "minimum": 1, "maximum": 10_000},
            "batching": {"type": "object", "additionalProperties": false, "properties": {
                "max_batch": {"type": "integer", "minimum": 1, "maximum": 4096},
                "max_queue_delay_us": {"type": "integer", "minimum": 0, "maximum": 1_000_000}}}}})
}

fn schemas() -> Value {
    let mut all = engine_schemas();
    if let (Some(a), Value::Object(b)) = (all.as_object_mut(), panel_schemas()) {
        a.extend(b);
    }
    all
}

/// The schemas of the engine's routes.
fn engine_schemas() -> Value {
    let id = json!({"type": ["string", "integer"], "minLength": 1, "pattern": ID_PATTERN,
                    "minimum": i64::MIN, "maximum": i64::MAX,
                    "description": "1 to 256 bytes, no control characters"});
    let kinds: Vec<&str> = crate::event::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| *k != "impression")
        .collect();
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
        "Event": {"type": "object", "required": ["user", "kind", "item", "ts"],
            "additionalProperties": false,
            "if": {"properties": {"kind": {"const": "rating"}}},
            "then": {"required": ["value"], "properties": {"value": {"type": "number",
                "minimum": -f32::MAX, "maximum": f32::MAX}}},
            "properties": {
                "user": id, "item": id, "kind": {"enum": kinds},
                "ts": {"type": "number", "minimum": 0, "maximum": 253_402_300_799_u64, "description": "Unix seconds"},
                "value": {"type": ["number", "null"], "description": "rating value (rating events)"},
                "dwell_ms": {"type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX},
                "price": {"type": ["number", "null"], "minimum": 0, "maximum": f32::MAX}}},
        "Events": {"description": "One event, a JSON array of events, or JSON lines (application/x-ndjson)",
            "oneOf": [{"$ref": "#/components/schemas/Event"},
                      {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Event"}}]},
        "Accepted": {"type": "object", "properties": {
            "accepted": {"type": "integer"},
            "seqs": {"type": "array", "items": {"type": "integer"}}}},
        "Item": {"type": "object", "required": ["kind", "item"], "additionalProperties": false,
            "properties": {"kind": {"const": "item"}, "item": id, "title": {"type": ["string", "null"]},
                "tags": {"type": ["array", "null"], "items": {"type": "string"}},
                "attrs": {"type": ["object", "null"],
                    "description": "values are kept as strings (other JSON values as their JSON text)"}}},
        "Items": {"oneOf": [{"$ref": "#/components/schemas/Item"},
                  {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Item"}}]},
        "Context": {"type": "object", "additionalProperties": false, "properties": {
            "include_tags": {"type": "array", "items": {"type": "string"}},
            "exclude_tags": {"type": "array", "items": {"type": "string"}},
            "exclude_items": {"type": "array", "items": {"type": "string"}},
            "log_impression": {"type": "boolean", "default": true}}},
        "RecommendRequest": {"type": "object", "required": ["user"], "additionalProperties": false,
            "properties": {"user": id_string(),
                "k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                "context": {"$ref": "#/components/schemas/Context"}}},
        "Weights": weights(),
        "Recommendation": {"type": "object", "properties": {
            "request_id": {"type": "string"}, "user": {"type": "string"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "item": {"type": "string"}, "score": {"type": "number"},
                "breakdown": {"$ref": "#/components/schemas/Weights"},
                "explored": {"type": "boolean"}}}},
            "strategy_version": {"type": "integer"},
            "weights": {"$ref": "#/components/schemas/Weights"},
            "model_version": {"type": "integer"},
            "fallback": {"type": ["string", "null"]}}},
        "Session": {"type": "object", "properties": {
            "user": {"type": "string"}, "interactions": {"type": "integer"},
            "recent": {"type": "array", "items": {"type": "string"}},
            "has_state": {"type": "boolean"}, "state_len": {"type": "integer"},
            "bytes": {"type": "integer"}}},
        "Forgotten": {"type": "object", "properties": {
            "user": {"type": "string"}, "events": {"type": "integer"},
            "index_chunks": {"type": "integer"}, "session_snapshot": {"type": "boolean"}}},
        "Strategy": strategy(),
        "StrategyView": {"type": "object", "properties": {
            "version": {"type": "integer"}, "strategy": {"$ref": "#/components/schemas/Strategy"},
            "weights": {"$ref": "#/components/schemas/Weights"}}},
        "StrategyVersion": {"type": "object", "properties": {
            "version": {"type": "integer"}, "created_ms": {"type": "integer"},
            "note": {"type": "string"}, "author": {"type": "string"}, "message": {"type": "string"},
            "based_on": {"type": ["integer", "null"]},
            "strategy": {"$ref": "#/components/schemas/Strategy"},
            "guard": {"$ref": "#/components/schemas/GuardStatus"}}},
        "StrategyHistory": {"type": "array", "items": {"$ref": "#/components/schemas/StrategyVersion"}},
        "Rollback": {"type": "object", "required": ["version"], "additionalProperties": false,
            "properties": {"version": {"type": "integer", "minimum": 1, "maximum": MAX_SAFE},
                "message": {"type": "string"},
                "base_version": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_SAFE}}},
        "Model": {"type": "object", "properties": {
            "version": {"type": "integer"}, "dir": {"type": "string"}, "weights": {"type": "string"},
            "fine_tuned": {"type": "boolean"}, "items": {"type": "integer"}, "dim": {"type": "integer"},
            "layers": {"type": "integer"}, "heads": {"type": "integer"}, "max_len": {"type": "integer"}}},
        "Models": {"type": "object", "properties": {
            "serving": {"oneOf": [{"$ref": "#/components/schemas/Model"}, {"type": "null"}]},
            "models_dir": {"type": ["string", "null"]},
            "available": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "dir": {"type": "string"}, "items": {"type": "integer"},
                "metrics": {"type": "object"}}}}}},
        "Activate": {"type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 255,
                "pattern": "^(?!\\.\\.?$)[^/\\\\\\u0000]+$",
                "description": "a checkpoint directory under --models"}}},
        "Activated": {"type": "object", "properties": {
            "version": {"type": "integer"}, "model": {"$ref": "#/components/schemas/Model"}}},
        "Stats": {"type": "object", "description": "the engine's MetricsSnapshot: counters, histograms, weights"},
        "Health": {"type": "object", "properties": {"status": {"const": "ok"}, "uptime_s": {"type": "number"}}},
        "Prometheus": {"type": "string"},
        "Stream": {"type": "object", "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
            "description": "server-sent events: `stats` once a second (LiveStats), `strategy` and `model` on changes, `marker` (a change to draw on charts), `guard` (a guard's status), `audit` (an audit entry), `replay` (a job's progress), `shutdown` at the end"},
        "OpenApi": {"type": "object"},
        "ReplayRequest": {"type": "object", "additionalProperties": false, "properties": {
            "strategies": {"type": "array", "items": {"$ref": "#/components/schemas/Strategy"}},
            "from_ms": {"type": ["integer", "null"], "minimum": i64::MIN, "maximum": i64::MAX},
            "to_ms": {"type": ["integer", "null"], "minimum": i64::MIN, "maximum": i64::MAX},
            "k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
            "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX},
            "model": {"type": "boolean", "default": true}}},
        "ReplayJob": {"type": "object", "properties": {
            "id": {"type": "integer"}, "status": {"enum": ["running", "done", "stopped", "failed"]},
            "done": {"type": "integer"}, "total": {"type": "integer"},
            "report": {"type": "object", "description": "as `attune replay --json`"},
            "error": {"type": "string"}}},
    })
}

/// The schemas of the control panel's routes.
fn panel_schemas() -> Value {
    json!({
        "Guard": {"type": "object", "additionalProperties": false, "properties": {
            "max_p99_ms": {"type": "number"}, "min_reward_per_rec": {"type": "number", "description": "share of the baseline reward per recommendation"},
            "interval_s": {"type": "integer", "default": 10}, "breach_intervals": {"type": "integer", "default": 3},
            "min_samples": {"type": "integer", "default": 100}, "baseline_s": {"type": "integer", "default": 60},
            "duration_s": {"type": "integer", "default": 600}, "webhook": {"type": "string", "description": "http:// URL"}}},
        "GuardStatus": {"type": "object", "properties": {
            "state": {"enum": ["none", "watching", "passed", "reverted", "aborted", "superseded", "failed"]},
            "version": {"type": ["integer", "null"]}, "based_on": {"type": ["integer", "null"]},
            "guard": {"oneOf": [{"$ref": "#/components/schemas/Guard"}, {"type": "null"}]},
            "started_ms": {"type": ["integer", "null"]},
            "time_left_s": {"type": "number"}, "baseline_reward_per_rec": {"type": ["number", "null"]},
            "limits": {"type": "array", "items": {"type": "object"}}, "reason": {"type": ["string", "null"]},
            "reverted_to": {"type": ["integer", "null"]}}},
        "Info": {"type": "object", "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "environment": {"type": "string"},
            "demo": {"type": "boolean"}, "started_ms": {"type": "integer"}, "uptime_s": {"type": "number"},
            "strategy_version": {"type": "integer"}, "model": {"type": ["object", "null"]},
            "console_built": {"type": "boolean"}}},
        "Caller": {"type": "object", "properties": {
            "actor": {"type": ["string", "null"]}, "role": {"enum": ["none", "read", "admin"]}}},
        "History": {"type": "object", "properties": {
            "step_s": {"type": "integer"}, "range_s": {"type": "integer"},
            "points": {"type": "array", "items": {"type": "object", "description": "LiveStats"}},
            "markers": {"type": "array", "items": {"type": "object", "properties": {
                "ts_ms": {"type": "integer"}, "kind": {"enum": ["publish", "rollback", "revert", "model"]},
                "label": {"type": "string"}, "version": {"type": ["integer", "null"]}}}}}},
        "Audit": {"type": "array", "items": {"type": "object", "properties": {
            "seq": {"type": "integer"}, "ts_ms": {"type": "integer"}, "actor": {"type": "string"},
            "action": {"type": "string"}, "target": {"type": "string"}, "detail": {}}}},
        "Explanation": {"type": "object", "properties": {
            "user": {"type": "string"}, "history": {"type": "array", "items": {"type": "string"}},
            "attention": {"type": ["object", "null"], "properties": {
                "mean": {"type": "array", "items": {"type": "number"}},
                "heads": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}},
            "recommendation": {"$ref": "#/components/schemas/Recommendation"}}},
        "PreviewRequest": {"type": "object", "required": ["user"], "additionalProperties": false, "properties": {
            "user": id_string(), "k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
            "strategy": {"oneOf": [{"$ref": "#/components/schemas/Strategy"}, {"type": "null"}]},
            "version": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_SAFE}},
            "not": {"required": ["strategy", "version"],
                    "properties": {"strategy": {"type": "object"}, "version": {"type": "integer"}}}},
        "Valid": {"type": "object", "properties": {"ok": {"const": true}}},
        "Html": {"type": "string"},
        "File": {"type": "string"},
    })
}
