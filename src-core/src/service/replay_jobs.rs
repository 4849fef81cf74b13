//! Replay jobs of the live store's log (`POST /v1/replay`): one at a time on a thread of
//! its own beside the service, progress on the live stream, the newest results and their
//! HTML reports kept for `GET /v1/replay/{id}`.

use super::*;

/// Replay jobs started through `POST /v1/replay` (the newest kept).
#[derive(Default)]
pub(super) struct Replays {
    pub(super) jobs: std::collections::BTreeMap<u64, serde_json::Value>,
    /// The finished jobs' HTML reports.
    pub(super) reports: std::collections::BTreeMap<u64, Arc<str>>,
    pub(super) next: u64,
    pub(super) running: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Replay jobs kept for `GET /v1/replay/{id}`.
pub(super) const REPLAYS_KEPT: usize = 16;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReplayRequest)]
pub(super) struct ReplayBody {
    /// Strategies to compare (default: the one in force).
    #[serde(default)]
    pub(super) strategies: Vec<Strategy>,
    /// Time range, ms since the epoch.
    #[serde(default)]
    pub(super) from_ms: Option<i64>,
    #[serde(default)]
    pub(super) to_ms: Option<i64>,
    #[serde(default = "ten")]
    #[schema(minimum = 1, maximum = 1000, default = 10)]
    pub(super) k: usize,
    #[serde(default)]
    #[schema(maximum = 18_446_744_073_709_551_615_u64)]
    pub(super) seed: Option<u64>,
    /// Replay with the serving model (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub(super) model: bool,
}

pub(super) fn yes() -> bool {
    true
}

/// Starts a replay of the live store's log (admin): 202 with the job's id; progress on
/// `/v1/stream` (`event: replay`), the result at `GET /v1/replay/{id}`.
pub(super) async fn post_replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult {
    let caller = admin(&req, &state)?;
    let b: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        json(b"{}")?
    } else {
        json(&body)?
    };
    // Checked now, so that a bad request is a 400 here rather than a failed job later.
    if !(1..=1000).contains(&b.k) {
        return Err(ApiError::bad_request(format!(
            "field `k`: must be in [1, 1000], got {}",
            b.k
        )));
    }
    for (n, s) in b.strategies.iter().enumerate() {
        s.validate()
            .map_err(|e| ApiError::bad_request(format!("strategies[{n}]: {e}")))?;
    }
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

pub(super) async fn get_replay(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
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
pub(super) async fn get_replay_report(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
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
