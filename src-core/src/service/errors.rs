//! Errors as the service answers them: `ApiError` (status, code, message) as JSON
//! `{"error": {"code", "message"}}`, the mapping of every engine error to a status, the
//! framework's own errors (413, 405) in the same shape, and 404/405 for unknown routes.

use super::*;

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(super) struct ErrorBody<'a> {
    pub(super) error: ErrorInner<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorInner<'a> {
    pub(super) code: &'a str,
    pub(super) message: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                r.insert_header((header::RETRY_AFTER, "1"));
            }
            // Space comes back on an operator's time scale, not a request's.
            StatusCode::INSUFFICIENT_STORAGE => {
                r.insert_header((header::RETRY_AFTER, "10"));
            }
            _ => {}
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
    /// Every variant's status, spelled out: a new variant must be placed here.
    fn from(e: Error) -> Self {
        let message = crate::error::report(&e);
        let (status, code) = match e {
            // The request is wrong: fix it and send it again.
            Error::BadRequest(_)
            | Error::InvalidConfig { .. }
            | Error::Parse { .. }
            | Error::UnknownFormat(_)
            | Error::EmptyData(_)
            | Error::BadBackup { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::NotFound(_) | Error::UnknownModel { .. } => (StatusCode::NOT_FOUND, "not_found"),
            // The state moved or is busy with this very thing (a stale base version, a
            // user being forgotten, a file already imported).
            Error::Conflict(_) | Error::AlreadyImported { .. } => {
                (StatusCode::CONFLICT, "conflict")
            }
            Error::Checkpoint { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "bad_model"),
            // Retry later.
            Error::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Error::ShutDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            // Not transient: this process must be restarted (or callers moved elsewhere).
            Error::Unhealthy(_) => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
            // The disk failed under this write: its outcome is unknown.
            Error::Flush(_) | Error::StorageFailed { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_failed")
            }
            Error::Unconfirmed(_) => (StatusCode::SERVICE_UNAVAILABLE, "unconfirmed"),
            // Transient: nothing was written; retry once space is freed.
            Error::StorageFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            // Ours: the operator's logs and the store's health say more.
            Error::Internal { .. }
            | Error::Sled(_)
            | Error::Locked(_)
            | Error::SchemaMismatch { .. }
            | Error::Corrupt { .. }
            | Error::IdSpaceExhausted(_)
            | Error::Candle(_)
            | Error::Io { .. }
            | Error::Json(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, message)
    }
}

/// Turns the framework's own error responses (an oversized body, a wrong method) into the
/// JSON error shape.
pub(super) fn json_errors<B>(
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
pub(super) fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| a == b || (a.starts_with('{') && !b.is_empty()))
}

/// No route: 405 with `Allow` when the path exists under other methods, else 404.
pub(super) async fn not_found(req: HttpRequest) -> HttpResponse {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: Error) -> (u16, String) {
        let a = ApiError::from(e);
        (a.status.as_u16(), a.code.to_string())
    }

    #[test]
    fn each_kind_of_failure_has_its_status() {
        assert_eq!(status(Error::BadRequest("k".into())).0, 400);
        assert_eq!(status(Error::Conflict("being forgotten".into())).0, 409);
        assert_eq!(
            status(Error::Unavailable("learner".into())),
            (503, "unavailable".into())
        );
        assert_eq!(status(Error::ShutDown), (503, "shutting_down".into()));
        assert_eq!(status(Error::internal("x")), (500, "internal".into()));
        let unknown = Error::UnknownModel {
            name: "m".into(),
            known: "pop".into(),
        };
        assert_eq!(status(unknown).0, 404);
        let full = Error::StorageFull {
            path: "s".into(),
            available: 10,
            min_free: 20,
        };
        assert_eq!(status(full), (507, "storage_full".into()));
        let failed = Error::Flush(Arc::new(sled::Error::Unsupported("x".into())));
        assert!(failed.outcome_unknown());
        assert_eq!(status(failed), (503, "storage_failed".into()));
        assert_eq!(
            status(Error::Unhealthy("dead".into())),
            (503, "unhealthy".into())
        );
        assert_eq!(
            status(Error::Unconfirmed("lost".into())),
            (503, "unconfirmed".into())
        );
    }

    #[test]
    fn a_full_disk_asks_to_retry_later() {
        let full = ApiError::from(Error::StorageFull {
            path: "s".into(),
            available: 10,
            min_free: 20,
        })
        .error_response();
        assert_eq!(full.status().as_u16(), 507);
        assert!(full.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn a_message_carries_its_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::internal_from("writing the snapshot", io);
        let a = ApiError::from(e);
        assert_eq!(
            a.message,
            "internal failure: writing the snapshot: disk on fire"
        );
        let e = Error::io("/tmp/x", std::io::Error::other("gone"));
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(crate::error::report(&e), "/tmp/x: gone");
    }
}
