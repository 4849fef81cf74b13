//! Forwarding the web view's REST calls to the engine. The UI names a method, a path and
//! a JSON body; the panel checks that the call stays inside the engine's API, adds the
//! admin token it holds, and hands back the status and the body (JSON, or a JSON string
//! for anything else, such as the HTML replay report).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::connection::Connection;
use crate::error::PanelError;
use crate::http;

/// How long a forwarded call may take to connect, and between reads.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Methods the panel forwards.
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// A checked call: a known method and a path inside the engine's API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

impl ApiRequest {
    /// Checks a call from the web view: the method is one of GET/POST/PUT/DELETE, and the
    /// path is under `/v1/`, or is `/healthz` or `/metrics` (with an optional query).
    pub fn new(
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiRequest, PanelError> {
        let method = METHODS
            .into_iter()
            .find(|m| m.eq_ignore_ascii_case(method))
            .ok_or_else(|| {
                PanelError::BadRequest(format!(
                    "method {method:?} is not forwarded (only {})",
                    METHODS.join(", ")
                ))
            })?;
        check_path(path)?;
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| PanelError::BadRequest(format!("body: {e}")))?;
        Ok(ApiRequest {
            method,
            path: path.to_string(),
            body,
        })
    }

    /// Sends the call to the connection's engine with its token, and reads the answer.
    pub fn forward(&self, connection: &Connection) -> Result<ApiResponse, PanelError> {
        let request = http::Request {
            method: self.method,
            path: &self.path,
            token: connection.token.as_ref(),
            body: self.body.as_deref(),
        };
        let answer = http::send(&connection.endpoint, request, CALL_TIMEOUT).map_err(|source| {
            PanelError::Unreachable {
                url: connection.endpoint.url(),
                source,
            }
        })?;
        Ok(ApiResponse {
            status: answer.status,
            body: body_value(&answer),
        })
    }
}

fn check_path(path: &str) -> Result<(), PanelError> {
    let refuse = |why: &str| PanelError::BadRequest(format!("path {path:?}: {why}"));
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse("only printable ASCII without spaces is allowed"));
    }
    let route = path.split(['?', '#']).next().unwrap_or_default();
    if path.contains('#') {
        return Err(refuse("a fragment is not part of a request"));
    }
    let inside = route.starts_with("/v1/") || route == "/healthz" || route == "/metrics";
    if !inside {
        return Err(refuse(
            "only the engine's API is reachable (/v1/..., /healthz, /metrics)",
        ));
    }
    if route
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(refuse("dot segments are not allowed"));
    }
    Ok(())
}

/// The body as JSON when it is JSON, as a JSON string otherwise, null when empty.
fn body_value(answer: &http::Response) -> serde_json::Value {
    if answer.body.is_empty() {
        return serde_json::Value::Null;
    }
    let says_json = answer
        .content_type
        .as_deref()
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    if says_json || answer.content_type.is_none() {
        if let Ok(v) = serde_json::from_slice(&answer.body) {
            return v;
        }
    }
    serde_json::Value::String(String::from_utf8_lossy(&answer.body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_is_reachable() {
        for ok in [
            "/v1/strategy",
            "/v1/history?range_s=900",
            "/v1/replay/3/report.html",
            "/healthz",
            "/metrics",
        ] {
            assert!(ApiRequest::new("GET", ok, None).is_ok(), "{ok} refused");
        }
        for bad in [
            "/",
            "/ui/",
            "/v1",
            "/v2/x",
            "/healthzz",
            "/metrics/x",
            "v1/strategy",
            "http://evil/v1/",
            "/v1/../ui/",
            "/v1/./strategy",
            "/v1/strategy HTTP/1.1\r\nX-Evil: 1",
            "/v1/strategy#frag",
        ] {
            assert!(
                ApiRequest::new("GET", bad, None).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn only_four_methods_are_forwarded() {
        assert!(ApiRequest::new("put", "/v1/strategy", None).is_ok());
        for bad in ["PATCH", "HEAD", "OPTIONS", "CONNECT", "GET /x"] {
            let e = ApiRequest::new(bad, "/v1/strategy", None).expect_err("refused");
            assert_eq!(e.code(), "bad_request");
        }
    }

    #[test]
    fn bodies_that_are_not_json_come_back_as_strings() {
        let answer = |ct: Option<&str>, body: &[u8]| http::Response {
            status: 200,
            content_type: ct.map(str::to_string),
            body: body.to_vec(),
        };
        assert_eq!(
            body_value(&answer(Some("application/json"), b"{\"v\": 3}")),
            serde_json::json!({"v": 3})
        );
        assert_eq!(
            body_value(&answer(Some("text/html; charset=utf-8"), b"<h1>3</h1>")),
            serde_json::json!("<h1>3</h1>")
        );
        assert_eq!(
            body_value(&answer(Some("text/plain"), b"42")),
            serde_json::json!("42")
        );
        assert_eq!(body_value(&answer(None, b"")), serde_json::Value::Null);
    }
}
