//! The HTTP service over the engine (`attune serve`): actix-web routes for events,
//! recommendations, users, strategies and figures; bearer-token auth on admin routes;
//! every error as JSON `{"error": {"code": "...", "message": "..."}}`.
//!
//! Every route is registered from one table ([`routes`]) that also generates the
//! OpenAPI document (`GET /v1/openapi.json`, see `openapi`). Request latency is kept per
//! route for `/metrics`, and `GET /v1/stream` pushes the live figures once a second as
//! server-sent events (see `live`).
//!
//! Writes are answered only once durable (the engine acknowledges an event after its
//! flush). The server binds to loopback unless told otherwise, caps request bodies, and
//! stops gracefully on SIGTERM / Ctrl-C: it stops accepting, lets requests in flight
//! finish, then shuts the engine down (sessions persisted, log flushed).

pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
mod console;
pub mod guard;
pub mod history;
pub mod live;
pub mod openapi;
mod panel;
mod strategy_routes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Service as _;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde::{Deserialize, Serialize};

use crate::engine::strategy::Strategy;
use crate::engine::{Context, Engine};
use crate::error::Error;
use crate::store::RecordSpace;
use crate::wire::{parse_record, Record};
use audit::{AuditLog, Recorder};
use auth::{Caller, Role, Tokens};
use history::History;
use live::{HttpMetrics, Hub};
use openapi::RouteDoc;

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
    /// The directory of model checkpoints that `GET /v1/models` lists and
    /// `POST /v1/models/activate` picks from.
    pub models_dir: Option<PathBuf>,
    /// How often `GET /v1/stream` sends the live figures.
    pub stream_every: Duration,
    /// HTTP worker threads.
    pub workers: usize,
    /// A label for people: which engine this is (`production`, `staging`, `demo`). The
    /// console shows it in its header, coloured unless it is `demo`.
    pub environment: String,
    /// Print nothing on the terminal (a generated admin token is not shown): for hosts
    /// that embed the service and hand the token over themselves.
    pub quiet: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
            body_limit: DEFAULT_BODY_LIMIT,
            models_dir: None,
            stream_every: Duration::from_secs(1),
            workers: 2,
            environment: "local".into(),
            quiet: false,
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
            Error::Checkpoint { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_model", message)
            }
            Error::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            Error::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

type ApiResult = Result<HttpResponse, ApiError>;

struct AppState {
    engine: Engine,
    tokens: Tokens,
    started: Instant,
    started_ms: i64,
    environment: String,
    history: Arc<History>,
    recorder: Arc<Recorder>,
    guard: guard::GuardSlot,
    models_dir: Option<PathBuf>,
    http: Arc<HttpMetrics>,
    hub: Arc<Hub>,
    openapi: String,
    replays: Arc<std::sync::Mutex<Replays>>,
}

/// Replay jobs started through `POST /v1/replay` (the newest kept).
#[derive(Default)]
struct Replays {
    jobs: std::collections::BTreeMap<u64, serde_json::Value>,
    /// The finished jobs' HTML reports.
    reports: std::collections::BTreeMap<u64, Arc<str>>,
    next: u64,
    running: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Replay jobs kept for `GET /v1/replay/{id}`.
const REPLAYS_KEPT: usize = 16;

/// The caller, who must hold an admin token (401 without a token, 403 with a read one).
fn admin(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    state.tokens.require(req, Role::Admin)
}

/// Audits an admin action; a failure to audit is logged, not answered (the action is
/// done and durable by then).
fn audit(state: &AppState, caller: &Caller, action: &str, target: &str, detail: serde_json::Value) {
    if let Err(e) = state.recorder.record(caller.name(), action, target, detail) {
        tracing::error!(error = %e, action, target, "could not write the audit log");
    }
}

/// The query parameter `name` of `req`, parsed; any parameter outside `allowed` is a 400.
fn query<T: std::str::FromStr>(
    req: &HttpRequest,
    name: &str,
    allowed: &[&str],
) -> Result<Option<T>, ApiError> {
    let mut found = None;
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed.contains(&k) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?} (allowed: {})",
                allowed.join(", ")
            )));
        }
        if k == name {
            found = Some(v.parse::<T>().map_err(|_| {
                ApiError::bad_request(format!("query `{name}`: {v:?} is not a valid value"))
            })?);
        }
    }
    Ok(found)
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

/// Forgets a user (admin): their events, index, session and id.
async fn delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let caller = admin(&req, &state)?;
    let user = path.into_inner();
    match state.engine.forget_user(&user).await? {
        Some(f) => {
            let detail = serde_json::json!({
                "user": user,
                "events": f.events,
                "index_chunks": f.index_chunks,
                "session_snapshot": f.session_snapshot,
            });
            audit(&state, &caller, "user.forget", &user, detail.clone());
            Ok(HttpResponse::Ok().json(detail))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no user {user:?} in the store"),
        )),
    }
}

/// The checkpoints under the models directory (sub-directories with a `config.json`).
fn available_models(dir: &Path) -> Vec<serde_json::Value> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|p| {
            let read = |name: &str| -> serde_json::Value {
                std::fs::read(p.join(name))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(serde_json::Value::Null)
            };
            let items = read("items.json").as_array().map(Vec::len);
            // The model card's figures, without the per-epoch history.
            let mut metrics = read("metrics.json");
            if let Some(m) = metrics.as_object_mut() {
                m.remove("history");
            }
            serde_json::json!({
                "name": p.file_name().map(|n| n.to_string_lossy().into_owned()),
                "dir": p,
                "items": items,
                "config": read("config.json"),
                "metrics": metrics,
            })
        })
        .collect()
}

async fn get_models(state: web::Data<AppState>) -> HttpResponse {
    let available = state
        .models_dir
        .as_deref()
        .map(available_models)
        .unwrap_or_default();
    HttpResponse::Ok().json(serde_json::json!({
        "serving": state.engine.model_info(),
        "models_dir": state.models_dir,
        "available": available,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    name: String,
}

/// Key of the activated model's name in the store's blob space (restored on restart).
const ACTIVE_MODEL: &[u8] = b"active_model";

/// The checkpoint directory `name` names under the models directory.
fn model_dir(models_dir: Option<&Path>, name: &str) -> Result<PathBuf, ApiError> {
    let dir = models_dir.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_models_dir",
            "the service was started without --models; no checkpoint can be activated",
        )
    })?;
    let plain = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0']);
    if !plain {
        return Err(ApiError::bad_request(format!(
            "field `name`: {name:?} is not a checkpoint name (one directory name under --models)"
        )));
    }
    let path = dir.join(name);
    if !path.join("config.json").is_file() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no checkpoint {name:?} in {}", dir.display()),
        ));
    }
    Ok(path)
}

/// Loads a checkpoint of the models directory and swaps it in (admin).
async fn activate_model(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult {
    let caller = admin(&req, &state)?;
    let b: ActivateBody = json(&body)?;
    let path = model_dir(state.models_dir.as_deref(), &b.name)?;
    let engine = state.engine.clone();
    // Loading reads and checks the weights: off the HTTP worker.
    let version = web::block(move || engine.swap_model(&path))
        .await
        .map_err(|e| ApiError::from(Error::ActorFailed(e.to_string())))??;
    state
        .engine
        .store()
        .put_record_durable(RecordSpace::Blob, ACTIVE_MODEL, b.name.as_bytes())?;
    let model = state.engine.model_info();
    state.hub.send(
        "model",
        &serde_json::json!({"version": version, "name": b.name, "model": model}),
    );
    state.recorder.note_model(version);
    audit(
        &state,
        &caller,
        "model.activate",
        &b.name,
        serde_json::json!({"new_version": version, "name": b.name}),
    );
    Ok(HttpResponse::Ok().json(serde_json::json!({"version": version, "model": model})))
}

/// Server-sent events: `stats` once a second, `strategy` and `model` on changes.
async fn stream(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(state.hub.subscribe())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// Strategies to compare (default: the one in force).
    #[serde(default)]
    strategies: Vec<Strategy>,
    /// Time range, ms since the epoch.
    #[serde(default)]
    from_ms: Option<i64>,
    #[serde(default)]
    to_ms: Option<i64>,
    #[serde(default = "ten")]
    k: usize,
    #[serde(default)]
    seed: Option<u64>,
    /// Replay with the serving model (default true).
    #[serde(default = "yes")]
    model: bool,
}

fn yes() -> bool {
    true
}

/// Starts a replay of the live store's log (admin): 202 with the job's id; progress on
/// `/v1/stream` (`event: replay`), the result at `GET /v1/replay/{id}`.
async fn post_replay(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
    let caller = admin(&req, &state)?;
    let b: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        json(b"{}")?
    } else {
        json(&body)?
    };
    let strategies = if b.strategies.is_empty() {
        vec![state.engine.strategy().strategy]
    } else {
        b.strategies
    };
    let cfg = crate::replay::ReplayConfig {
        strategies,
        model: if b.model {
            state.engine.model_info().map(|m| m.dir)
        } else {
            None
        },
        from: b.from_ms,
        to: b.to_ms,
        k: b.k,
        seed: b.seed.unwrap_or(42),
        // Leave a core to the service.
        parallel: 1,
        ..crate::replay::ReplayConfig::default()
    };
    let (id, stop) = {
        let mut r = state.replays.lock().unwrap_or_else(|e| e.into_inner());
        if r.running.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "replay_running",
                "a replay is running; wait for it (GET /v1/replay/{id})",
            ));
        }
        r.next += 1;
        let id = r.next;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        r.running = Some(Arc::clone(&stop));
        r.jobs.insert(
            id,
            serde_json::json!({"id": id, "status": "running", "done": 0, "total": 0}),
        );
        while r.jobs.len() > REPLAYS_KEPT {
            if let Some((old, _)) = r.jobs.pop_first() {
                r.reports.remove(&old);
            }
        }
        (id, stop)
    };
    let (store, hub, replays) = (
        state.engine.store().clone(),
        Arc::clone(&state.hub),
        Arc::clone(&state.replays),
    );
    let spawned = std::thread::Builder::new()
        .name("attune-replay".into())
        .spawn(move || {
            let set = |v: serde_json::Value| {
                let mut r = replays.lock().unwrap_or_else(|e| e.into_inner());
                r.jobs.insert(id, v);
            };
            let last = std::sync::Mutex::new(Instant::now());
            let outcome = (|| -> crate::Result<crate::replay::ReplayReport> {
                let (events, items) = crate::replay::Log::from_store(&store)?;
                let log = crate::replay::Log::from_events(
                    format!(
                        "{} (live)",
                        crate::replay::report::source_name(&store.path().display().to_string())
                    ),
                    events,
                    items,
                    cfg.from,
                    cfg.to,
                )?;
                crate::replay::replay(&log, &cfg, &stop, &|done, total| {
                    let mut at = last.lock().unwrap_or_else(|e| e.into_inner());
                    if at.elapsed() >= Duration::from_millis(500) || done == total {
                        *at = Instant::now();
                        let p = serde_json::json!({"id": id, "status": "running", "done": done, "total": total});
                        hub.send("replay", &p);
                        replays
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .jobs
                            .insert(id, p);
                    }
                })
            })();
            let page = outcome
                .as_ref()
                .ok()
                .and_then(|report| match crate::replay::report::html(report) {
                    Ok(h) => Some(Arc::<str>::from(h)),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not draw the replay's report");
                        None
                    }
                });
            if let Some(page) = page {
                replays
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .reports
                    .insert(id, page);
            }
            let v = match outcome {
                Ok(report) => serde_json::json!({
                    "id": id,
                    "status": if report.partial { "stopped" } else { "done" },
                    "done": report.events,
                    "total": report.events,
                    "report": report,
                }),
                Err(e) => serde_json::json!({"id": id, "status": "failed", "error": e.to_string()}),
            };
            hub.send(
                "replay",
                &serde_json::json!({"id": id, "status": v["status"].clone()}),
            );
            set(v);
            replays
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .running = None;
        });
    if let Err(e) = spawned {
        let mut r = state.replays.lock().unwrap_or_else(|e| e.into_inner());
        r.running = None;
        r.jobs.remove(&id);
        return Err(ApiError::from(Error::io("attune-replay thread", e)));
    }
    audit(
        &state,
        &caller,
        "replay.start",
        &format!("replay {id}"),
        serde_json::json!({"id": id}),
    );
    Ok(HttpResponse::Accepted().json(serde_json::json!({"id": id, "status": "running"})))
}

async fn get_replay(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let raw = path.into_inner();
    let id: u64 = raw
        .parse()
        .map_err(|_| ApiError::bad_request(format!("replay id {raw:?} is not a number")))?;
    let r = state.replays.lock().unwrap_or_else(|e| e.into_inner());
    match r.jobs.get(&id) {
        Some(v) => Ok(HttpResponse::Ok().json(v)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no replay {id} (the newest {REPLAYS_KEPT} are kept)"),
        )),
    }
}

/// `GET /v1/replay/{id}/report.html`: a finished job's report as one HTML page.
async fn get_replay_report(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let raw = path.into_inner();
    let id: u64 = raw
        .parse()
        .map_err(|_| ApiError::bad_request(format!("replay id {raw:?} is not a number")))?;
    let html = {
        let r = state.replays.lock().unwrap_or_else(|e| e.into_inner());
        let job = r.jobs.get(&id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no replay {id} (the newest {REPLAYS_KEPT} are kept)"),
            )
        })?;
        r.reports.get(&id).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                format!("replay {id} has no report (it is {})", job["status"]),
            )
        })?
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"attune-replay-{id}.html\""),
        ))
        .body(html.to_string()))
}

async fn get_openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi.clone())
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
    let caller = admin(&req, &state)?;
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
    let first: Vec<&str> = items.iter().take(20).map(|i| i.id.as_str()).collect();
    audit(
        &state,
        &caller,
        "items.import",
        &format!("{} items", items.len()),
        serde_json::json!({"items": items.len(), "first": first}),
    );
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

async fn stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.engine.metrics())
}

/// One Prometheus sample of a counter or gauge, with its HELP and TYPE lines.
fn scalar(out: &mut String, kind: &str, name: &str, help: &str, v: f64) {
    out.push_str(&format!(
        "# HELP attune_{name} {help}\n# TYPE attune_{name} {kind}\nattune_{name} {v}\n"
    ));
}

/// The `_bucket` (cumulative), `_sum` and `_count` samples of one histogram series;
/// `labels` (`k="v",...`, or empty) go before `le`.
fn histogram_series(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &crate::engine::metrics::HistogramSnapshot,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cum = 0;
    for (le, c) in &h.buckets {
        cum += c;
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
        h.mean * h.count as f64,
        h.count
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
        histogram_series(&mut out, name, "", h);
    }
    out.push_str("# HELP attune_http_request_duration_us HTTP request latency by route (µs).\n# TYPE attune_http_request_duration_us histogram\n");
    let routes = state.http.snapshot();
    for (method, route, h, _) in &routes {
        let labels = format!("method=\"{method}\",route=\"{route}\"");
        histogram_series(&mut out, "http_request_duration_us", &labels, h);
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

/// Whether a route pattern (`/v1/users/{id}`) matches a path.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| a == b || (a.starts_with('{') && !b.is_empty()))
}

/// No route: 405 with `Allow` when the path exists under other methods, else 404.
async fn not_found(req: HttpRequest) -> HttpResponse {
    let allowed: Vec<String> = routes()
        .into_iter()
        .filter(|r| pattern_matches(r.path, req.path()))
        .map(|r| r.method.to_string())
        .collect();
    if allowed.is_empty() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {} {}", req.method(), req.path()),
        )
        .error_response();
    }
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; allowed: {}",
            req.method(),
            req.path(),
            allowed.join(", ")
        ),
    )
    .error_response();
    if let Ok(v) = header::HeaderValue::from_str(&allowed.join(", ")) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// Every route of the service: registered from here, and described from here in the
/// OpenAPI document.
pub fn routes() -> Vec<RouteDoc> {
    const JSON: &str = "application/json";
    const EVENTS: &[&str] = &["application/json", "application/x-ndjson"];
    const BODY: &[&str] = &["application/json"];
    let r = |method: Method,
             path: &'static str,
             summary: &'static str,
             auth: Role,
             request: Option<(&'static [&'static str], &'static str)>,
             response: (&'static str, &'static str),
             handler: fn(actix_web::Route) -> actix_web::Route| RouteDoc {
        method,
        path,
        summary,
        auth,
        request,
        response,
        handler,
    };
    vec![
        r(Method::GET, "/healthz", "Liveness: the service answers.", Role::None, None, (JSON, "Health"), |r| r.to(healthz)),
        r(Method::GET, "/metrics", "Prometheus text: counters, latency histograms by route, batch sizes, queue depth, sessions, reward, blend weights.", Role::None, None, ("text/plain", "Prometheus"), |r| r.to(prometheus)),
        r(Method::POST, "/v1/events", "Record events (one, a JSON array, or JSON lines); answered once durable. Everything is checked before anything is written.", Role::None, Some((EVENTS, "Events")), (JSON, "Accepted"), |r| r.to(post_events)),
        r(Method::POST, "/v1/recommend", "The k best items for a user now, with each item's score breakdown.", Role::None, Some((BODY, "RecommendRequest")), (JSON, "Recommendation"), |r| r.to(post_recommend)),
        r(Method::GET, "/v1/users/{id}", "A user's session: recent history and model state.", Role::None, None, (JSON, "Session"), |r| r.to(get_user)),
        r(Method::DELETE, "/v1/users/{id}", "Forget a user: their events, index, session snapshot and id.", Role::Admin, None, (JSON, "Forgotten"), |r| r.to(delete_user)),
        r(Method::GET, "/v1/items/{id}", "A catalogue record.", Role::None, None, (JSON, "Item"), |r| r.to(get_item)),
        r(Method::POST, "/v1/items", "Add or update catalogue records (one, an array, or JSON lines).", Role::Admin, Some((EVENTS, "Items")), (JSON, "Accepted"), |r| r.to(post_items)),
        r(Method::GET, "/v1/strategy", "The strategy in force and the learned weights.", Role::None, None, (JSON, "StrategyView"), |r| r.to(strategy_routes::get_strategy)),
        r(Method::PUT, "/v1/strategy", "Publish a new strategy version (validated; applies to the next request): a bare strategy, or `{strategy, message, base_version, guard}` (409 when the live version is no longer `base_version`; a guard reverts on a sustained breach).", Role::Admin, Some((BODY, "Strategy")), (JSON, "StrategyVersion"), |r| r.to(strategy_routes::put_strategy)),
        r(Method::GET, "/v1/strategy/history", "Every strategy version, oldest first (`?limit=N`: the newest N).", Role::None, None, (JSON, "StrategyHistory"), |r| r.to(strategy_routes::strategy_history)),
        r(Method::POST, "/v1/strategy/rollback", "Make a copy of an earlier version the current strategy (a new version; optional `message`, `base_version`).", Role::Admin, Some((BODY, "Rollback")), (JSON, "StrategyVersion"), |r| r.to(strategy_routes::rollback)),
        r(Method::GET, "/v1/models", "The model serving and the checkpoints available under --models.", Role::None, None, (JSON, "Models"), |r| r.to(get_models)),
        r(Method::POST, "/v1/models/activate", "Load a checkpoint of --models and swap it in atomically (kept across restarts).", Role::Admin, Some((BODY, "Activate")), (JSON, "Activated"), |r| r.to(activate_model)),
        r(Method::GET, "/v1/stats", "The engine's figures (counters and histograms) as JSON.", Role::None, None, (JSON, "Stats"), |r| r.to(stats)),
        r(Method::GET, "/v1/stream", "Server-sent events: the live figures once a second, strategy and model changes.", Role::None, None, ("text/event-stream", "Stream"), |r| r.to(stream)),
        r(Method::POST, "/v1/replay", "Start a replay of the live store's log (optionally a time range, other strategies); progress on /v1/stream.", Role::Admin, Some((BODY, "ReplayRequest")), (JSON, "ReplayJob"), |r| r.to(post_replay)),
        r(Method::GET, "/v1/replay/{id}", "A replay job: its progress, then its report.", Role::None, None, (JSON, "ReplayJob"), |r| r.to(get_replay)),
        r(Method::GET, "/v1/replay/{id}/report.html", "A finished replay job's report as one self-contained HTML page (verdict, confidence intervals, charts).", Role::None, None, ("text/html", "Html"), |r| r.to(get_replay_report)),
        r(Method::GET, "/v1/info", "Which engine this is: version, environment label, strategy version, model.", Role::None, None, (JSON, "Info"), |r| r.to(panel::info)),
        r(Method::GET, "/v1/whoami", "The caller's token name and role (`none`, `read`, `admin`).", Role::None, None, (JSON, "Caller"), |r| r.to(panel::whoami)),
        r(Method::GET, "/v1/history", "The live figures every 10 s over the last `range_s` seconds (at most 24 h), with the changes made meanwhile as markers.", Role::None, None, (JSON, "History"), |r| r.to(panel::history)),
        r(Method::GET, "/v1/audit", "The audit log, newest first (`limit`, `before`).", Role::Read, None, (JSON, "Audit"), |r| r.to(panel::audit)),
        r(Method::GET, "/v1/users/{id}/explain", "A user's slate now (nothing recorded), each item's score by source and task head, and the attention over their history (audited).", Role::Read, None, (JSON, "Explanation"), |r| r.to(panel::explain)),
        r(Method::POST, "/v1/recommend/preview", "A slate under a draft strategy, a past version or the live one; records nothing and changes no session.", Role::Admin, Some((BODY, "PreviewRequest")), (JSON, "Recommendation"), |r| r.to(panel::preview)),
        r(Method::POST, "/v1/strategy/validate", "Whether a strategy would be accepted (400 naming the field if not); publishes nothing.", Role::None, Some((BODY, "Strategy")), (JSON, "Valid"), |r| r.to(strategy_routes::validate)),
        r(Method::GET, "/v1/strategy/guard", "The guard of the last guarded publish: its limits' current values, breaches, time left, outcome.", Role::None, None, (JSON, "GuardStatus"), |r| r.to(strategy_routes::get_guard)),
        r(Method::DELETE, "/v1/strategy/guard", "Abort the guard running (the version stays).", Role::Admin, None, (JSON, "GuardStatus"), |r| r.to(strategy_routes::abort_guard)),
        r(Method::GET, "/", "Redirects to the web console.", Role::None, None, ("text/html", "Html"), |r| r.to(console::to_console)),
        r(Method::GET, "/ui", "Redirects to the web console.", Role::None, None, ("text/html", "Html"), |r| r.to(console::to_console)),
        r(Method::GET, "/ui/", "The web console (the control panel in a browser).", Role::None, None, ("text/html", "Html"), |r| r.to(console::index)),
        r(Method::GET, "/ui/{file}", "A file of the web console.", Role::None, None, ("application/octet-stream", "File"), |r| r.to(console::top_file)),
        r(Method::GET, "/ui/assets/{file}", "A built asset of the web console.", Role::None, None, ("application/octet-stream", "File"), |r| r.to(console::asset)),
        r(Method::GET, "/v1/openapi.json", "This document.", Role::None, None, (JSON, "OpenApi"), |r| r.to(get_openapi)),
    ]
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = actix_web::rt::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = actix_web::rt::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = actix_web::rt::signal::ctrl_c().await;
}

/// Runs the service until SIGTERM / Ctrl-C, then shuts the engine down. `on_bound` gets
/// the bound address (useful with port 0).
pub async fn serve(
    engine: Engine,
    cfg: ServeConfig,
    on_bound: impl FnOnce(SocketAddr),
) -> crate::Result<()> {
    serve_until(engine, cfg, |addr, _| on_bound(addr), shutdown_signal()).await
}

/// [`serve`], stopping gracefully when `stop` resolves instead of on a signal;
/// `on_bound` gets the bound address and the admin token.
pub async fn serve_until(
    engine: Engine,
    cfg: ServeConfig,
    on_bound: impl FnOnce(SocketAddr, &str),
    stop: impl std::future::Future<Output = ()> + 'static,
) -> crate::Result<()> {
    if cfg.workers == 0 || cfg.body_limit == 0 || cfg.stream_every.is_zero() {
        return Err(Error::config(
            "serve",
            "workers, body_limit and stream_every must be positive",
        ));
    }
    let tokens = Tokens::load(cfg.token_file.as_deref(), engine.store(), cfg.quiet)?;
    let shown_token = tokens.first_admin().unwrap_or_default().to_string();
    restore_active_model(&engine, cfg.models_dir.as_deref());
    let http = Arc::new(HttpMetrics::default());
    let hub = Arc::new(Hub::default());
    let history = Arc::new(History::default());
    let recorder = Arc::new(Recorder::new(
        AuditLog::open(engine.store().clone())?,
        Arc::clone(&hub),
    ));
    let openapi = serde_json::to_string_pretty(&openapi::document(&routes()))?;
    let state = web::Data::new(AppState {
        engine: engine.clone(),
        tokens,
        started: Instant::now(),
        started_ms: crate::store::now_ms(),
        environment: cfg.environment.clone(),
        history: Arc::clone(&history),
        recorder: Arc::clone(&recorder),
        guard: Arc::new(std::sync::Mutex::new((0, guard::GuardStatus::none()))),
        models_dir: cfg.models_dir.clone(),
        http: Arc::clone(&http),
        hub: Arc::clone(&hub),
        openapi,
        replays: Arc::default(),
    });
    let replays = Arc::clone(&state.replays);
    let limit = cfg.body_limit;
    let server = HttpServer::new(move || {
        let timing = Arc::clone(&state.http);
        let mut app = App::new()
            .wrap(actix_web::middleware::ErrorHandlers::new().default_handler(json_errors))
            .wrap_fn(move |req, srv| {
                let started = Instant::now();
                let timing = Arc::clone(&timing);
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    let r = res.request();
                    timing.observe(
                        r.method().as_str(),
                        r.match_pattern(),
                        res.status().as_u16(),
                        started.elapsed(),
                    );
                    Ok(res)
                }
            })
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(limit));
        for route in routes() {
            app = app.route(route.path, (route.handler)(web::method(route.method)));
        }
        app.default_service(web::to(not_found))
    })
    .workers(cfg.workers)
    .shutdown_timeout(10)
    .disable_signals()
    .bind(cfg.bind)
    .map_err(|e| Error::io(format!("bind {}", cfg.bind), e))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| Error::config("bind", "the server bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(live::tick(
        engine.clone(),
        Arc::clone(&http),
        Arc::clone(&hub),
        history,
        Arc::clone(&recorder),
        cfg.stream_every,
    ));
    let stopping = Arc::clone(&hub);
    actix_web::rt::spawn(async move {
        stop.await;
        tracing::info!("stop requested; finishing requests in flight");
        // Streams never end by themselves: end them, so the graceful stop need not wait.
        stopping.close();
        // A replay running stops after its round (its job reports `stopped`).
        if let Some(r) = &replays.lock().unwrap_or_else(|e| e.into_inner()).running {
            r.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        handle.stop(true).await;
    });
    on_bound(addr, &shown_token);
    server.await.map_err(|e| Error::io("http server", e))?;
    tracing::info!("server stopped; shutting the engine down");
    engine.shutdown().await
}

/// Swaps in the checkpoint last activated through `POST /v1/models/activate`, if it is
/// still there and not the one already serving.
fn restore_active_model(engine: &Engine, models_dir: Option<&Path>) {
    let Some(dir) = models_dir else { return };
    let Ok(Some(name)) = engine.store().get_record(RecordSpace::Blob, ACTIVE_MODEL) else {
        return;
    };
    let Ok(name) = String::from_utf8(name) else {
        return;
    };
    let Ok(path) = model_dir(Some(dir), &name) else {
        tracing::warn!(name, "the activated model is gone; serving the default");
        return;
    };
    let serving = engine.model_info().map(|m| m.dir);
    if serving.as_deref() == Some(path.as_path()) {
        return;
    }
    match engine.swap_model(&path) {
        Ok(v) => tracing::info!(name, version = v, "activated model restored"),
        Err(e) => tracing::warn!(name, error = %e, "could not restore the activated model"),
    }
}
