//! The engine's own routes: health, events, recommendations, users, items, models, stats,
//! the live stream and the OpenAPI document.

use super::*;

/// `GET /healthz`: 200 `ok`, or 503 `failing` with what makes the service refuse writes: a
/// thread of the store or the engine died, or a write failed (`faults`; see
/// ARCHITECTURE.md, "Supervision"), or the disk is short of space (`storage_full`).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    /// `ok`, or `failing` while a fault is kept (writes are refused then).
    #[schema(pattern = "^(ok|failing)$")]
    status: &'static str,
    /// Seconds since the service started.
    uptime_s: f64,
    /// Why it is failing: each thread that died, oldest first (absent when `ok`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    faults: Vec<crate::supervise::Fault>,
    /// Set while the store's disk has less free space than it keeps: writes answer 507
    /// until space is freed, then resume by themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_full: Option<crate::store::StorageFull>,
}

/// What a write took: `POST /v1/events` and `POST /v1/items`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Accepted {
    /// Records written (all of the body's).
    accepted: usize,
    /// The events' sequence numbers in the log (events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    seqs: Option<Vec<u64>>,
}

/// `DELETE /v1/users/{id}`: what forgetting a user removed.
#[derive(Serialize, Clone, utoipa::ToSchema)]
pub(super) struct Forgotten {
    user: String,
    /// Events deleted from the log.
    events: u64,
    /// Chunks of the user index deleted.
    index_chunks: usize,
    /// Whether a session snapshot was deleted.
    session_snapshot: bool,
}

/// `POST /v1/models/activate`: the new model version and what serves now.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Activated {
    version: u64,
    model: Option<crate::engine::ModelInfo>,
}

pub(super) async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let faults = state.engine.faults();
    let storage_full = state.engine.store().storage_full();
    let ok = faults.is_empty() && storage_full.is_none();
    let mut r = match ok {
        true => HttpResponse::Ok(),
        false => HttpResponse::ServiceUnavailable(),
    };
    r.json(Health {
        status: if ok { "ok" } else { "failing" },
        uptime_s: state.started.elapsed().as_secs_f64(),
        faults,
        storage_full,
    })
}

/// One event, a JSON array of events, or JSONL; answered once every event is durable.
pub(super) async fn post_events(state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
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
    // A body is refused whole when the store cannot take writes as it arrives.
    if let Err(e) = state.engine.store().writable() {
        let mut e = ApiError::from(e);
        e.message = format!("{}; 0 of the body's events were written", e.message);
        return Err(e);
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
    let mut unknown = 0;
    for (n, h) in handles.into_iter().enumerate() {
        let r = match h.await {
            Ok(r) => r,
            Err(e) => Err(Error::internal_from("recording the event", e)),
        };
        match r {
            Ok(seq) => seqs.push(seq),
            Err(e) => {
                unknown += usize::from(e.outcome_unknown());
                if failed.is_none() {
                    failed = Some((n + 1, ApiError::from(e)));
                }
            }
        }
    }
    if let Some((n, mut e)) = failed {
        let others = match unknown {
            0 => "the others were not written".to_string(),
            u => format!(
                "{u} may or may not be durable (the disk or the engine failed under them; \
                 check after the service restarts before sending them again), the others \
                 were not written"
            ),
        };
        e.message = format!(
            "event {n}: {}; {} of the body's events were written and are durable, {others}",
            e.message,
            seqs.len()
        );
        return Err(e);
    }
    Ok(HttpResponse::Ok().json(Accepted {
        accepted: seqs.len(),
        seqs: Some(seqs),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RecommendRequest)]
pub(super) struct RecommendBody {
    #[schema(schema_with = crate::wire::id_schema)]
    pub(super) user: String,
    #[serde(default = "ten")]
    #[schema(minimum = 1, maximum = 1000, default = 10)]
    pub(super) k: usize,
    #[serde(default)]
    pub(super) context: RecommendOptions,
}

pub(super) fn ten() -> usize {
    10
}

pub(super) async fn post_recommend(state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
    let b: RecommendBody = json(&body)?;
    let rec = state.engine.recommend(&b.user, b.k, b.context).await?;
    Ok(HttpResponse::Ok().json(rec))
}

pub(super) async fn get_user(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let info = state.engine.session_info(&path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(info))
}

/// Forgets a user (admin): their events, index, session and id.
pub(super) async fn delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let caller = admin(&req, &state)?;
    let user = path.into_inner();
    match state.engine.forget_user(&user).await? {
        Some(f) => {
            let detail = Forgotten {
                user: user.clone(),
                events: f.events,
                index_chunks: f.index_chunks,
                session_snapshot: f.session_snapshot,
            };
            // The audit log keeps no copy of the id: earlier entries naming it are
            // rewritten, and this one names the user by number.
            let number = format!("user #{}", f.number);
            if let Err(e) = state.recorder.log.redact(&user, &number) {
                tracing::error!(error = %e, "could not redact the audit log");
            }
            let audited = serde_json::json!({
                "events": f.events,
                "index_chunks": f.index_chunks,
                "session_snapshot": f.session_snapshot,
            });
            audit(&state, &caller, "user.forget", &number, audited);
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
pub(super) fn available_models(dir: &Path) -> Vec<serde_json::Value> {
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

pub(super) async fn get_models(state: web::Data<AppState>) -> HttpResponse {
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Activate)]
pub(super) struct ActivateBody {
    /// A checkpoint directory under --models.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^(?!\.\.?$)[^/\\\u0000]+$"
    )]
    pub(super) name: String,
}

/// Key of the activated model's name in the store's blob space (restored on restart).
pub(super) const ACTIVE_MODEL: &[u8] = b"active_model";

/// The checkpoint directory `name` names under the models directory.
pub(super) fn model_dir(models_dir: Option<&Path>, name: &str) -> Result<PathBuf, ApiError> {
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
pub(super) async fn activate_model(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult {
    let caller = admin(&req, &state)?;
    let b: ActivateBody = json(&body)?;
    let path = model_dir(state.models_dir.as_deref(), &b.name)?;
    // Until noted below, the new version is this activation's, not a swap the engine made.
    let _activation = state.recorder.activation();
    let engine = state.engine.clone();
    // Loading reads and checks the weights: off the HTTP worker.
    let version = web::block(move || engine.swap_model(&path))
        .await
        .map_err(|e| ApiError::from(Error::internal_from("loading the model", e)))??;
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
    Ok(HttpResponse::Ok().json(Activated { version, model }))
}

/// Server-sent events: `stats` once a second, `strategy` and `model` on changes.
pub(super) async fn stream(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(state.hub.subscribe())
}

pub(super) async fn get_openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi.clone())
}

pub(super) async fn get_item(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
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
pub(super) async fn post_items(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult {
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
    Ok(HttpResponse::Ok().json(Accepted {
        accepted: items.len(),
        seqs: None,
    }))
}

/// The records of a body: a JSON array, or JSON lines (one object is one line), numbered
/// from 1.
pub(super) fn records_of(text: &str) -> Result<Vec<(usize, String)>, ApiError> {
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

pub(super) async fn stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.engine.metrics())
}

/// `GET /v1/items/{id}/similar?k=10`: the items whose text is nearest to the item's.
pub(super) async fn similar_items(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let k = query::<usize>(&req, "k", &["k"])?.unwrap_or(10);
    let engine = state.engine.clone();
    let id = path.into_inner();
    let found = web::block(move || engine.similar_items(&id, k))
        .await
        .map_err(|e| ApiError::from(Error::internal_from("finding similar items", e)))??;
    Ok(HttpResponse::Ok().json(found))
}

/// `GET /v1/items/search?q=TEXT&k=10`: the items whose text is nearest to a free text
/// (encoded by the text encoder on a blocking thread).
pub(super) async fn search_items(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    let params =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    if let Some(other) = params.keys().find(|k| !["q", "k"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {other:?} (allowed: q, k)"
        )));
    }
    let q = params
        .get("q")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("query `q`: the text to search for is required"))?;
    let k = match params.get("k") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("query `k`: {v:?} is not a valid value")))?,
        None => 10,
    };
    let engine = state.engine.clone();
    let found = web::block(move || engine.search_items(&q, k))
        .await
        .map_err(|e| ApiError::from(Error::internal_from("searching items", e)))??;
    Ok(HttpResponse::Ok().json(found))
}
