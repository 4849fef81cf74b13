//! The routes the control panel needs beyond the engine's own: which engine this is
//! (`/v1/info`), who the caller is (`/v1/whoami`), the history of the live figures with
//! the changes drawn on them (`/v1/history`), the audit log (`/v1/audit`), a user's
//! slate explained (`/v1/users/{id}/explain`) and a slate previewed under a draft
//! (`/v1/recommend/preview`). Looking at a user is audited; previews record nothing.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::Role;
use super::history::HISTORY_STEP;
use super::{json, query, ApiError, ApiResult, AppState};
use crate::engine::strategy::Strategy;
use crate::engine::PreviewOf;

/// `GET /v1/info`: which engine this is.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Info {
    /// Always `attune`.
    name: &'static str,
    /// The engine's version.
    version: &'static str,
    /// The label of `--environment` (`demo` under `attune demo`).
    environment: String,
    demo: bool,
    /// When the service started (ms since the epoch).
    started_ms: i64,
    uptime_s: f64,
    strategy_version: u64,
    /// The model serving, if any.
    model: Option<crate::engine::ModelInfo>,
    /// Whether this binary carries the web console.
    console_built: bool,
    /// What the store holds now.
    store: StoreFigures,
    /// The text source: its encoder, items embedded and waiting (or why it is off).
    text: crate::engine::TextStatus,
}

/// The store's size in the terms an operator compares after a restore.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct StoreFigures {
    /// The next event's sequence number: events ever logged (forgotten ones included).
    next_seq: u64,
    /// User ids (forgotten users keep their number, with no name).
    users: usize,
    /// Item ids.
    items: usize,
}

pub(super) async fn info(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Info {
        name: "attune",
        version: env!("CARGO_PKG_VERSION"),
        environment: state.environment.clone(),
        demo: state.environment == "demo",
        started_ms: state.started_ms,
        uptime_s: state.started.elapsed().as_secs_f64(),
        strategy_version: state.engine.strategy().version,
        model: state.engine.model_info(),
        console_built: super::console::is_built(),
        store: StoreFigures {
            next_seq: state.engine.store().next_seq(),
            users: state.engine.store().n_users(),
            items: state.engine.store().n_items(),
        },
        text: state.engine.text_status(),
    })
}

/// `GET /v1/whoami`: the caller's name and role (a wrong token is 401).
pub(super) async fn whoami(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    let c = state.tokens.caller(&req)?;
    Ok(HttpResponse::Ok().json(c))
}

/// `GET /v1/history`: the live figures at a 10 s step, and the changes made meanwhile.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = History)]
pub(super) struct HistoryView {
    step_s: u64,
    range_s: u64,
    points: Vec<super::live::LiveStats>,
    markers: Vec<super::audit::Marker>,
}

/// Longest history a request may ask for.
const MAX_RANGE_S: u64 = 86_400;

/// `GET /v1/history?range_s=900`: the 10 s points of the last `range_s` seconds, and the
/// changes made meanwhile (from the audit log).
pub(super) async fn history(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    let range_s = query::<u64>(&req, "range_s", &["range_s"])?.unwrap_or(900);
    if !(1..=MAX_RANGE_S).contains(&range_s) {
        return Err(ApiError::bad_request(format!(
            "query `range_s`: must be in [1, {MAX_RANGE_S}] seconds, got {range_s}"
        )));
    }
    let range = Duration::from_secs(range_s);
    let points = state.history.points(range);
    let since = crate::store::now_ms() - (range_s as i64) * 1000;
    let markers = state.recorder.markers_since(since)?;
    Ok(HttpResponse::Ok().json(HistoryView {
        step_s: HISTORY_STEP.as_secs(),
        range_s,
        points,
        markers,
    }))
}

/// Largest page of the audit log.
const MAX_AUDIT_PAGE: usize = 1000;

/// `GET /v1/audit?limit=200&before=SEQ`: audit entries, newest first.
pub(super) async fn audit(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    state.tokens.require(&req, Role::Read)?;
    let allowed = ["limit", "before"];
    let limit = query::<usize>(&req, "limit", &allowed)?.unwrap_or(200);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "query `limit`: must be in [1, {MAX_AUDIT_PAGE}], got {limit}"
        )));
    }
    let before = query::<u64>(&req, "before", &allowed)?;
    Ok(HttpResponse::Ok().json(state.recorder.log.list(limit, before)?))
}

/// `GET /v1/users/{id}/explain?k=10`: the user's slate now (a preview), each item's
/// score by source, and the attention over their history. Audited as a look-up.
pub(super) async fn explain(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let caller = state.tokens.require(&req, Role::Read)?;
    let k = query::<usize>(&req, "k", &["k"])?.unwrap_or(10);
    let user = path.into_inner();
    let e = state.engine.explain(&user, k).await?;
    state.recorder.record(
        caller.name(),
        "user.lookup",
        user,
        serde_json::json!({"k": k, "history": e.history.len()}),
    )?;
    Ok(HttpResponse::Ok().json(e))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PreviewRequest)]
pub(super) struct PreviewBody {
    #[schema(schema_with = crate::wire::id_schema)]
    user: String,
    #[serde(default = "super::ten")]
    #[schema(minimum = 1, maximum = 1000, default = 10)]
    k: usize,
    /// A draft to rank under.
    #[serde(default)]
    #[schema(value_type = Option<Strategy>)]
    strategy: Option<serde_json::Value>,
    /// A stored version to rank under.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    version: Option<u64>,
}

/// `POST /v1/recommend/preview` (admin): a slate under a draft, a past version or the
/// strategy in force, recording nothing.
pub(super) async fn preview(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult {
    state.tokens.require(&req, Role::Admin)?;
    let b: PreviewBody = json(&body)?;
    let of = match (b.strategy, b.version) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `strategy` (a draft) or `version`, not both",
            ))
        }
        (Some(s), None) => PreviewOf::Draft(Box::new(Strategy::from_json(&s.to_string())?)),
        (None, Some(v)) => PreviewOf::Version(v),
        (None, None) => PreviewOf::Live,
    };
    Ok(HttpResponse::Ok().json(state.engine.preview(&b.user, b.k, of).await?))
}
