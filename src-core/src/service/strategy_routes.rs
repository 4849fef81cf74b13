//! The strategy routes: read the strategy in force and its history, validate a draft,
//! publish (with a message, the version it was based on, and an optional guard), roll
//! back, and watch or abort the guard. Every change is audited under the token's name and
//! streamed (`event: strategy`, and a chart marker).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{Caller, Role};
use super::guard::{self, Guard, GuardStatus};
use super::{audit, json, query, ApiError, ApiResult, AppState};
use crate::engine::strategy::{Publish, Strategy, StrategyVersion};

pub(super) async fn get_strategy(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.engine.strategy())
}

/// A publish with its context (the old form is a bare strategy).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    strategy: serde_json::Value,
    #[serde(default)]
    message: String,
    #[serde(default)]
    base_version: Option<u64>,
    #[serde(default)]
    guard: Option<Guard>,
}

/// Longest publish message.
const MAX_MESSAGE: usize = 2000;

pub(super) async fn put_strategy(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult {
    let caller = state.tokens.require(&req, Role::Admin)?;
    let value: serde_json::Value = json(&body)?;
    let enveloped = value.get("strategy").is_some();
    let b = if enveloped {
        serde_json::from_value::<PublishBody>(value)
            .map_err(|e| ApiError::bad_request(format!("invalid publish: {e}")))?
    } else {
        PublishBody {
            strategy: value,
            message: String::new(),
            base_version: None,
            guard: None,
        }
    };
    let s = Strategy::from_json(&b.strategy.to_string())?;
    if b.message.len() > MAX_MESSAGE {
        return Err(ApiError::bad_request(format!(
            "field `message`: at most {MAX_MESSAGE} bytes"
        )));
    }
    if let Some(g) = &b.guard {
        g.validate()?;
    }
    let before = state.engine.strategy();
    let by = Publish {
        author: caller.name().to_string(),
        message: b.message.clone(),
        base_version: b.base_version,
    };
    let v = state.engine.publish_strategy(s, "set".into(), &by)?;
    changed(&state, &caller, "strategy.publish", &before.strategy, &v);
    match b.guard {
        Some(g) => {
            let status = guard::spawn(
                state.engine.clone(),
                state.guard.clone(),
                &state.history,
                state.recorder.clone(),
                g,
                v.version,
                v.based_on.unwrap_or(before.version),
            );
            let mut answer = wire_value(&v).map_err(crate::Error::from)?;
            answer["guard"] = wire_value(&status).map_err(crate::Error::from)?;
            Ok(HttpResponse::Ok().json(answer))
        }
        None => Ok(HttpResponse::Ok().json(v)),
    }
}

/// A value as the wire writes it, through its text: an `f32` weight reads `0.2` as in every
/// other answer, not the `0.20000000298023224` that `serde_json::to_value` widens it to.
fn wire_value<T: serde::Serialize>(v: &T) -> serde_json::Result<serde_json::Value> {
    serde_json::from_str(&serde_json::to_string(v)?)
}

/// Streams and audits a new version, with the fields it changed.
fn changed(
    state: &AppState,
    caller: &Caller,
    action: &str,
    before: &Strategy,
    v: &StrategyVersion,
) {
    state.recorder.strategy_changed(v);
    let diff = super::audit::json_diff(
        &wire_value(before).unwrap_or_default(),
        &wire_value(&v.strategy).unwrap_or_default(),
    );
    audit(
        state,
        caller,
        action,
        &format!("v{}", v.version),
        serde_json::json!({
            "new_version": v.version,
            "based_on": v.based_on,
            "message": v.message,
            "note": v.note,
            "diff": diff,
        }),
    );
}

/// `POST /v1/strategy/validate`: whether a strategy would be accepted, and if not, why
/// (the field named), without publishing it.
/// `POST /v1/strategy/validate` when the strategy would be accepted.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Valid {
    /// Always `true` (a strategy that would not be accepted is a 400).
    ok: bool,
}

pub(super) async fn validate(body: web::Bytes) -> ApiResult {
    // Read as the publish reads it (integral floats taken as integers).
    let value: serde_json::Value = json(&body)?;
    Strategy::from_json(&value.to_string())?;
    Ok(HttpResponse::Ok().json(Valid { ok: true }))
}

/// Every strategy version, oldest first; `?limit=N` keeps the newest N.
pub(super) async fn strategy_history(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    let mut all = state.engine.strategy_history()?;
    if let Some(n) = query::<usize>(&req, "limit", &["limit"])? {
        let drop = all.len().saturating_sub(n);
        all.drain(..drop);
    }
    Ok(HttpResponse::Ok().json(all))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Rollback)]
pub(super) struct RollbackBody {
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    version: u64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    base_version: Option<u64>,
}

pub(super) async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult {
    let caller = state.tokens.require(&req, Role::Admin)?;
    let b: RollbackBody = json(&body)?;
    let before = state.engine.strategy();
    let v = state.engine.rollback_strategy_by(
        b.version,
        &Publish {
            author: caller.name().to_string(),
            message: b.message,
            base_version: b.base_version,
        },
    )?;
    changed(&state, &caller, "strategy.rollback", &before.strategy, &v);
    Ok(HttpResponse::Ok().json(v))
}

/// `GET /v1/strategy/guard`: the guard running, or the last one's outcome.
pub(super) async fn get_guard(state: web::Data<AppState>) -> HttpResponse {
    let g = state.guard.lock().unwrap_or_else(|e| e.into_inner());
    HttpResponse::Ok().json(&g.1)
}

/// `DELETE /v1/strategy/guard`: stops the guard running (the version stays).
pub(super) async fn abort_guard(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    let caller = state.tokens.require(&req, Role::Admin)?;
    let status: GuardStatus = {
        let mut g = state.guard.lock().unwrap_or_else(|e| e.into_inner());
        if g.1.state != "watching" {
            return Err(ApiError::new(
                actix_web::http::StatusCode::CONFLICT,
                "conflict",
                format!("no guard is running (the last one is `{}`)", g.1.state),
            ));
        }
        g.0 += 1;
        g.1.state = "aborted";
        g.1.reason = Some(format!("aborted by {}", caller.name()));
        g.1.clone()
    };
    state.recorder.stream("guard", &status);
    state.recorder.record(
        caller.name(),
        "guard.abort",
        format!("v{}", status.version.unwrap_or(0)),
        serde_json::json!({"limits": status.limits}),
    )?;
    Ok(HttpResponse::Ok().json(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_keep_the_f32_weights_as_written() {
        let s = Strategy::default();
        let v = wire_value(&s).expect("value");
        assert_eq!(v["weights"]["pop"], serde_json::json!(0.2), "{v}");
        // What the audit diff would have held before: the f32 widened to f64.
        assert_ne!(
            serde_json::to_value(&s).expect("value")["weights"]["pop"],
            serde_json::json!(0.2)
        );
        let d = super::super::audit::json_diff(&v, &{
            let mut t = s.clone();
            t.weights.pop = 0.75;
            wire_value(&t).expect("value")
        });
        assert_eq!(d["weights.pop"], serde_json::json!([0.2, 0.75]));
    }
}
