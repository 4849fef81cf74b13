//! The HTTP service over the engine (`attune serve`): actix-web routes for events,
//! recommendations, users, strategies and figures; bearer-token auth on admin routes;
//! every error as JSON `{"error": {"code": "...", "message": "..."}}`.
//!
//! Writes are answered only once durable (the engine acknowledges an event after its
//! flush). The server binds to loopback unless told otherwise, caps request bodies, and
//! stops gracefully on SIGTERM / Ctrl-C: it stops accepting, lets requests in flight
//! finish, then shuts the engine down (sessions persisted, log flushed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::engine::strategy::Strategy;
use crate::engine::{Context, Engine};
use crate::error::Error;
use crate::store::RecordSpace;
use crate::wire::{parse_record, Record};

/// Largest request body accepted, in bytes.
pub const DEFAULT_BODY_LIMIT: usize = 8 << 20;

/// How `attune serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (`127.0.0.1:8080` by default; port 0 picks a free one).
    pub bind: SocketAddr,
    /// Admin token file; without it, a token generated into the store on first start.
    pub token_file: Option<PathBuf>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.insert_header((header::RETRY_AFTER, "1"));
        }
        r.json(ErrorBody {
            error: ErrorInner {
                code: self.code,
                message: &self.message,
            },
        })
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::BadRequest(_) | Error::InvalidConfig { .. } | Error::Parse { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
            }
            Error::Overloaded { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
            }
            Error::ShutDown | Error::Closed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

type ApiResult = Result<HttpResponse, ApiError>;

struct AppState {
    engine: Engine,
    token: String,
    started: Instant,
}

fn admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs `Authorization: Bearer <admin token>`",
            )
        })?;
    // Constant-time comparison.
    let (a, b) = (given.as_bytes(), state.token.as_bytes());
    let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong admin token",
        ))
    }
}

fn json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "uptime_s": state.started.elapsed().as_secs_f64(),
    }))
}

/// One event, a JSON array of events, or JSONL; answered once every event is durable.
async fn post_events(state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let lines = records_of(text)?;
    // Everything is checked before anything is written.
    let mut events = Vec::with_capacity(lines.len());
    for (n, line) in &lines {
        match parse_record(line) {
            Ok(Record::Event(ev)) => {
                if ev.action.kind() == crate::event::EventKind::Impression {
                    return Err(ApiError::bad_request(format!(
                        "event {n}: impressions are logged by the engine itself"
                    )));
                }
                events.push(ev);
            }
            Ok(Record::Item(_)) => {
                return Err(ApiError::bad_request(format!(
                    "event {n}: a catalogue record; post items to /v1/items"
                )))
            }
            Err(m) => return Err(ApiError::bad_request(format!("event {n}: {m}"))),
        }
    }
    // Sent in order (a user's events keep their order), acknowledged together.
    let handles: Vec<_> = events
        .into_iter()
        .map(|ev| {
            let engine = state.engine.clone();
            actix_web::rt::spawn(async move { engine.record(ev).await })
        })
        .collect();
    let mut seqs = Vec::with_capacity(handles.len());
    let mut failed: Option<(usize, ApiError)> = None;
    for (n, h) in handles.into_iter().enumerate() {
        let r = match h.await {
            Ok(r) => r,
            Err(e) => Err(Error::ActorFailed(e.to_string())),
        };
        match r {
            Ok(seq) => seqs.push(seq),
            Err(e) if failed.is_none() => failed = Some((n + 1, ApiError::from(e))),
            Err(_) => {}
        }
    }
    if let Some((n, mut e)) = failed {
        e.message = format!(
            "event {n}: {}; {} of the body's events were written and are durable",
            e.message,
            seqs.len()
        );
        return Err(e);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"accepted": seqs.len(), "seqs": seqs})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendBody {
    user: String,
    #[serde(default = "ten")]
    k: usize,
    #[serde(default)]
    context: Context,
}

fn ten() -> usize {
    10
}

async fn post_recommend(state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
    let b: RecommendBody = json(&body)?;
    let rec = state.engine.recommend(&b.user, b.k, b.context).await?;
    Ok(HttpResponse::Ok().json(rec))
}

async fn get_user(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let info = state.engine.session_info(&path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(info))
}

async fn get_item(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let id = path.into_inner();
    match state.engine.item(&id)? {
        Some(item) => Ok(HttpResponse::Ok().json(crate::wire::item_to_json(&item))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no item {id:?}"),
        )),
    }
}

/// Catalogue records (`{"kind": "item", "item": "...", ...}`): one, an array, or JSONL.
async fn post_items(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
    admin(&req, &state)?;
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let mut items = Vec::new();
    for (n, line) in records_of(text)? {
        match parse_record(&line) {
            Ok(Record::Item(it)) => items.push(it),
            Ok(Record::Event(_)) => {
                return Err(ApiError::bad_request(format!(
                    "record {n}: an event; post events to /v1/events"
                )))
            }
            Err(m) => return Err(ApiError::bad_request(format!("record {n}: {m}"))),
        }
    }
    state.engine.put_items(&items)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"accepted": items.len()})))
}

/// The records of a body: a JSON array, or JSON lines (one object is one line), numbered
/// from 1.
fn records_of(text: &str) -> Result<Vec<(usize, String)>, ApiError> {
    let trimmed = text.trim_start();
    let lines: Vec<(usize, String)> = if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON array: {e}")))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v.to_string()))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect()
    };
    if lines.is_empty() {
        return Err(ApiError::bad_request("no records in the body"));
    }
    Ok(lines)
}

async fn get_strategy(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.engine.strategy())
}

async fn put_strategy(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
    admin(&req, &state)?;
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let s = Strategy::from_json(text)?;
    Ok(HttpResponse::Ok().json(state.engine.set_strategy(s)?))
}

async fn strategy_history(state: web::Data<AppState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.engine.strategy_history()?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: u64,
}

async fn rollback(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
    admin(&req, &state)?;
    let b: RollbackBody = json(&body)?;
    Ok(HttpResponse::Ok().json(state.engine.rollback_strategy(b.version)?))
}

async fn stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.engine.metrics())
}

/// One Prometheus sample of a counter or gauge, with its HELP and TYPE lines.
fn scalar(out: &mut String, kind: &str, name: &str, help: &str, v: f64) {
    out.push_str(&format!(
        "# HELP attune_{name} {help}\n# TYPE attune_{name} {kind}\nattune_{name} {v}\n"
    ));
}

/// Prometheus text exposition of the engine's figures.
async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
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
    for (name, help, h) in [
        (
            "recommend_latency_us",
            "Recommendation latency (µs).",
            &m.recommend_latency_us,
        ),
        (
            "record_latency_us",
            "Event latency until durable (µs).",
            &m.record_latency_us,
        ),
        ("batch_size", "Requests per inference batch.", &m.batch_size),
        (
            "queue_delay_us",
            "Wait before a batch starts (µs).",
            &m.queue_delay_us,
        ),
    ] {
        out.push_str(&format!(
            "# HELP attune_{name} {help}\n# TYPE attune_{name} histogram\n"
        ));
        let mut cum = 0;
        for (le, c) in &h.buckets {
            cum += c;
            out.push_str(&format!("attune_{name}_bucket{{le=\"{le}\"}} {cum}\n"));
        }
        out.push_str(&format!(
            "attune_{name}_bucket{{le=\"+Inf\"}} {}\nattune_{name}_sum {}\nattune_{name}_count {}\n",
            h.count,
            h.mean * h.count as f64,
            h.count
        ));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// Turns the framework's own error responses (an oversized body, a wrong method) into the
/// JSON error shape.
fn json_errors<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::middleware::ErrorHandlerResponse;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than the server's limit (--body-limit)".to_string(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed".into()),
        s if s.is_client_error() => (
            "bad_request",
            s.canonical_reason().unwrap_or("bad request").into(),
        ),
        s => (
            "internal",
            s.canonical_reason().unwrap_or("internal error").into(),
        ),
    };
    let (req, _) = res.into_parts();
    let body = ApiError::new(status, code, message).error_response();
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, body).map_into_right_body(),
    ))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}", req.method(), req.path()),
    )
    .error_response()
}

/// The admin token: the file's content, or the store's (generated and printed once).
fn admin_token(engine: &Engine, cfg: &ServeConfig) -> crate::Result<String> {
    if let Some(path) = &cfg.token_file {
        let t = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let t = t.trim().to_string();
        if t.len() < 16 || t.chars().any(char::is_whitespace) {
            return Err(Error::config(
                "token-file",
                format!(
                    "{}: the token must be at least 16 characters, without spaces",
                    path.display()
                ),
            ));
        }
        return Ok(t);
    }
    let store = engine.store();
    if let Some(b) = store.get_record(RecordSpace::Blob, b"admin_token")? {
        return String::from_utf8(b)
            .map_err(|_| Error::config("admin token", "the stored token is not UTF-8"));
    }
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    store.put_record_durable(RecordSpace::Blob, b"admin_token", token.as_bytes())?;
    // Printed once, on the terminal that started the service; never logged.
    println!("admin token (shown once; stored in the store): {token}");
    Ok(token)
}

/// Runs the service until SIGTERM / Ctrl-C, then shuts the engine down. `on_bound` gets
/// the bound address (useful with port 0).
pub async fn serve(
    engine: Engine,
    cfg: ServeConfig,
    on_bound: impl FnOnce(SocketAddr),
) -> crate::Result<()> {
    let token = admin_token(&engine, &cfg)?;
    let state = web::Data::new(AppState {
        engine: engine.clone(),
        token,
        started: Instant::now(),
    });
    let limit = cfg.body_limit;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::ErrorHandlers::new().default_handler(json_errors))
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(limit))
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(prometheus))
            .service(
                web::scope("/v1")
                    .route("/events", web::post().to(post_events))
                    .route("/recommend", web::post().to(post_recommend))
                    .route("/users/{id}", web::get().to(get_user))
                    .route("/items/{id}", web::get().to(get_item))
                    .route("/items", web::post().to(post_items))
                    .route("/strategy", web::get().to(get_strategy))
                    .route("/strategy", web::put().to(put_strategy))
                    .route("/strategy/history", web::get().to(strategy_history))
                    .route("/strategy/rollback", web::post().to(rollback))
                    .route("/stats", web::get().to(stats)),
            )
            .default_service(web::to(not_found))
    })
    .workers(2)
    .shutdown_timeout(10)
    .bind(cfg.bind)
    .map_err(|e| Error::io(format!("bind {}", cfg.bind), e))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| Error::config("bind", "the server bound no address"))?;
    on_bound(addr);
    server
        .run()
        .await
        .map_err(|e| Error::io("http server", e))?;
    tracing::info!("server stopped; shutting the engine down");
    engine.shutdown().await
}
