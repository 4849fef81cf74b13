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
//!
//! Files: this one holds the configuration, the shared state, the route table and the
//! server; `engine_routes`, `strategy_routes`, `panel`, `replay_jobs`, `prometheus` and
//! `console` the handlers; `errors` the error shape; `auth`, `audit`, `history`, `guard`
//! and `live` what the handlers share; `ticker` the once-a-second beat that feeds the
//! stream, the history and the audit of model swaps.

pub mod audit;
pub mod auth;
pub mod backups;
pub mod client;
pub mod config;
mod console;
mod engine_routes;
mod errors;
pub mod guard;
pub mod history;
pub mod live;
pub mod openapi;
mod panel;
mod prometheus;
mod replay_jobs;
mod strategy_routes;
#[cfg(test)]
mod thread_deaths;
mod ticker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Service as _;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde::{Deserialize, Serialize};

use crate::engine::strategy::Strategy;
use crate::engine::{Engine, RecommendOptions};
use crate::error::Error;
use crate::store::RecordSpace;
use crate::wire::{parse_record, Record};
use audit::{AuditLog, Recorder};
use auth::{Caller, Role, Tokens};
use engine_routes::*;
pub use errors::ApiError;
use errors::{json_errors, not_found};
use history::History;
use live::{HttpMetrics, Hub};
use openapi::RouteDoc;
use prometheus::prometheus;
use replay_jobs::*;

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
    /// What `/metrics` encodes (`prometheus`).
    metrics: prometheus_client::registry::Registry,
    hub: Arc<Hub>,
    openapi: String,
    replays: Arc<std::sync::Mutex<Replays>>,
}

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

/// A request body as `T`. JSON does not tell `1` from `1.0`, and neither does the OpenAPI
/// document's `integer`: a body that fails only because an integer field holds an integral
/// float (`"k": 10.0`) is read again with such numbers made integers. The error reported is
/// the first one, with its line and column.
fn json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).or_else(|first| {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .map(integral_floats_as_integers)
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| ApiError::bad_request(format!("invalid JSON: {first}")))
    })
}

/// `v` with every float that is a whole number in `i64`'s range made an integer.
fn integral_floats_as_integers(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n
            .as_f64()
            .filter(|_| n.is_f64())
            .and_then(crate::wire::whole_number)
        {
            Some(i) => Value::from(i),
            None => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral_floats_as_integers).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, integral_floats_as_integers(v)))
                .collect(),
        ),
        other => other,
    }
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
        r(Method::GET, "/healthz", "Health: 200 `ok`, or 503 `failing` naming the threads that died.", Role::None, None, (JSON, "Health"), |r| r.to(healthz)),
        r(Method::GET, "/metrics", "Prometheus text: counters, latency histograms by route, batch sizes, queue depth, sessions, reward, blend weights.", Role::None, None, ("text/plain", "Prometheus"), |r| r.to(prometheus)),
        r(Method::POST, "/v1/events", "Record events (one, a JSON array, or JSON lines); answered once durable. Everything is checked before anything is written.", Role::None, Some((EVENTS, "Events")), (JSON, "Accepted"), |r| r.to(post_events)),
        r(Method::POST, "/v1/recommend", "The k best items for a user now, with each item's score breakdown.", Role::None, Some((BODY, "RecommendRequest")), (JSON, "Recommendation"), |r| r.to(post_recommend)),
        r(Method::GET, "/v1/users/{id}", "A user's session: recent history and model state.", Role::None, None, (JSON, "Session"), |r| r.to(get_user)),
        r(Method::DELETE, "/v1/users/{id}", "Forget a user: their events, index, session snapshot and id.", Role::Admin, None, (JSON, "Forgotten"), |r| r.to(delete_user)),
        // Before `/v1/items/{id}`, which would take `search` for an id.
        r(Method::GET, "/v1/items/search", "Items whose text (title, tags, attributes) is nearest to a free text `q`, by the text encoder (`k`, default 10, at most 1000); 503 when the text source is off.", Role::None, None, (JSON, "TextMatches"), |r| r.to(search_items)),
        r(Method::GET, "/v1/items/{id}/similar", "Items whose text is nearest to this item's (`k`, default 10, at most 1000); 404 for an item without a text vector, 503 when the text source is off.", Role::None, None, (JSON, "TextMatches"), |r| r.to(similar_items)),
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
        metrics: prometheus::registry(engine.clone(), Arc::clone(&http)),
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
    actix_web::rt::spawn(ticker::tick(
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
    // `attune backup --store DIR` reaches this process through DIR/backup.sock.
    let backups = backups::Listener::start(engine.store());
    on_bound(addr, &shown_token);
    let served = server.await.map_err(|e| Error::io("http server", e));
    drop(backups);
    served?;
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
