//! The OpenAPI 3.1 description of the service, generated from the same route table that
//! registers the handlers (`super::routes`), so a route cannot be served without being
//! described, or described without being served.
//!
//! The bodies' schemas are derived from the serde types themselves (`utoipa::ToSchema`
//! on `Strategy`, `Recommendation`, the request bodies, ...), so a field cannot change
//! without its description. Written here by hand are only what has no such type: the
//! `jsonl` wire format of events and items (parsed by `wire`), the model list, replay
//! jobs and the text bodies; and the few constraints JSON Schema can say but the derive
//! cannot (a rating event's value, a preview's draft-or-version).

use serde_json::{json, Value};
use utoipa::openapi::{schema::Schema, RefOr};
use utoipa::ToSchema;

use crate::wire::{id_schema, ID_PATTERN};

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

fn id_string_value() -> Value {
    serde_json::to_value(id_schema()).unwrap_or_default()
}

fn params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match (name, path.starts_with("/v1/replay/")) {
                ("id", true) => json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
                ("id", false) => id_string_value(),
                _ => json!({"type": "string", "minLength": 1}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

/// The query parameters a route reads.
fn query_params(path: &str) -> Vec<Value> {
    let k = json!({"name": "k", "in": "query", "required": false,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000}});
    match path {
        "/v1/items/{id}/similar" => vec![k],
        "/v1/items/search" => vec![
            json!({"name": "q", "in": "query", "required": true,
                "schema": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "\\S"}}),
            k,
        ],
        _ => Vec::new(),
    }
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
                "503": {"description": "overloaded, shutting down, or unhealthy: a thread died and writes are refused (with Retry-After)",
                        "content": {"application/json": {"schema": schema_ref("Error")}}},
            },
        });
        if r.path == "/healthz" {
            op["responses"]["503"] = json!({"description": "failing: a thread died; `faults` names it",
                "content": {"application/json": {"schema": schema_ref("Health")}}});
        }
        let mut ps = params(r.path);
        ps.extend(query_params(r.path));
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

/// Adds `T`'s schema, and those it refers to, to `all`.
fn add<T: ToSchema>(all: &mut Vec<(String, RefOr<Schema>)>) {
    all.push((T::name().into_owned(), T::schema()));
    T::schemas(all);
}

/// The schemas derived from the types of the bodies.
fn derived() -> Vec<(String, RefOr<Schema>)> {
    use super::{engine_routes as e, panel as p, replay_jobs as r, strategy_routes as s};
    let mut all = Vec::new();
    add::<super::errors::ErrorBody>(&mut all);
    add::<e::Health>(&mut all);
    add::<crate::supervise::Fault>(&mut all);
    add::<crate::store::StorageFull>(&mut all);
    add::<e::Accepted>(&mut all);
    add::<e::RecommendBody>(&mut all);
    add::<crate::engine::Recommendation>(&mut all);
    add::<crate::engine::session::SessionInfo>(&mut all);
    add::<e::Forgotten>(&mut all);
    add::<crate::engine::StrategyView>(&mut all);
    add::<crate::engine::strategy::StrategyVersion>(&mut all);
    add::<s::RollbackBody>(&mut all);
    add::<s::Valid>(&mut all);
    add::<crate::engine::ModelInfo>(&mut all);
    add::<crate::engine::CandidateIndexInfo>(&mut all);
    add::<e::ActivateBody>(&mut all);
    add::<e::Activated>(&mut all);
    add::<crate::engine::metrics::MetricsSnapshot>(&mut all);
    add::<r::ReplayBody>(&mut all);
    add::<super::guard::GuardStatus>(&mut all);
    add::<p::Info>(&mut all);
    add::<p::StoreFigures>(&mut all);
    add::<super::auth::Caller>(&mut all);
    add::<p::HistoryView>(&mut all);
    add::<super::audit::AuditEntry>(&mut all);
    add::<crate::engine::Explanation>(&mut all);
    add::<p::PreviewBody>(&mut all);
    add::<crate::engine::TextMatches>(&mut all);
    add::<crate::engine::TextMatch>(&mut all);
    add::<crate::engine::TextStatus>(&mut all);
    all
}

fn schemas() -> Value {
    let mut all = serde_json::Map::new();
    for (name, schema) in derived() {
        all.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
    if let Value::Object(hand) = hand_written() {
        all.extend(hand);
    }
    // What the derive cannot say: a preview ranks under a draft or a stored version, not
    // both.
    if let Some(preview) = all.get_mut("PreviewRequest") {
        preview["not"] = json!({"required": ["strategy", "version"],
            "properties": {"strategy": {"type": "object"}, "version": {"type": "integer"}}});
    }
    // An exploration names its mode and that mode's knob, nothing else (serde's
    // `deny_unknown_fields` on the enum, which the derive keeps for structs only).
    if let Some(modes) = all
        .get_mut("Exploration")
        .and_then(|v| v.get_mut("oneOf"))
        .and_then(Value::as_array_mut)
    {
        // (`none` takes anything else and ignores it.)
        for mode in modes
            .iter_mut()
            .filter(|m| m.pointer("/properties/mode/enum/0") != Some(&json!("none")))
        {
            mode["additionalProperties"] = json!(false);
        }
    }
    // A guarded publish answers the version with its guard's status.
    if let Some(props) = all
        .get_mut("StrategyVersion")
        .and_then(|v| v.get_mut("properties"))
        .and_then(Value::as_object_mut)
    {
        props.insert("guard".into(), schema_ref("GuardStatus"));
    }
    Value::Object(all)
}

/// The schemas with no serde type of their own: the `jsonl` wire format of events and
/// items (parsed record by record by `wire`), lists, the model catalogue, replay jobs and
/// the text bodies.
fn hand_written() -> Value {
    let id = json!({"type": ["string", "integer"], "minLength": 1, "pattern": ID_PATTERN,
                    "minimum": i64::MIN, "maximum": i64::MAX,
                    "description": "1 to 256 bytes, no control characters"});
    let kinds: Vec<&str> = crate::event::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| *k != "impression")
        .collect();
    json!({
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
        "Item": {"type": "object", "required": ["kind", "item"], "additionalProperties": false,
            "properties": {"kind": {"const": "item"}, "item": id, "title": {"type": ["string", "null"]},
                "tags": {"type": ["array", "null"], "items": {"type": "string"}},
                "attrs": {"type": ["object", "null"],
                    "description": "values are kept as strings (other JSON values as their JSON text)"}}},
        "Items": {"oneOf": [{"$ref": "#/components/schemas/Item"},
                  {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Item"}}]},
        "StrategyHistory": {"type": "array", "items": {"$ref": "#/components/schemas/StrategyVersion"}},
        "Audit": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
        "Models": {"type": "object", "properties": {
            "serving": {"oneOf": [{"$ref": "#/components/schemas/Model"}, {"type": "null"}]},
            "models_dir": {"type": ["string", "null"]},
            "available": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "dir": {"type": "string"}, "items": {"type": ["integer", "null"]},
                "config": {}, "metrics": {}}}}}},
        "ReplayJob": {"type": "object", "properties": {
            "id": {"type": "integer"}, "status": {"enum": ["running", "done", "stopped", "failed"]},
            "done": {"type": "integer"}, "total": {"type": "integer"},
            "report": {"type": "object", "description": "as `attune replay --json`"},
            "error": {"type": "string"}}},
        "Stream": {"type": "object", "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
            "description": "server-sent events: `stats` once a second (LiveStats), `strategy` and `model` on changes, `marker` (a change to draw on charts), `guard` (a guard's status), `audit` (an audit entry), `replay` (a job's progress), `shutdown` at the end"},
        "Prometheus": {"type": "string"},
        "OpenApi": {"type": "object"},
        "Html": {"type": "string"},
        "File": {"type": "string"},
    })
}
