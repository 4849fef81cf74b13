//! `attune serve` as a real process on a real port: routes, auth, JSON errors,
//! read-your-writes over HTTP, Prometheus text, and a graceful stop on SIGTERM.

use attune_tests::http::Server;

/// One request on a fresh connection; returns (status, body).
fn http(s: &Server, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let r = s.request(method, path, token, body);
    (r.status, r.text())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `promtool check metrics` (Prometheus's own linter) finds nothing in `exposition`.
fn promtool_accepts(exposition: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Some(promtool) = attune_tests::tool("promtool") else {
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("promtool reads");
    let out = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{exposition}"
    );
}

#[test]
fn the_service_answers_guards_and_stops_gracefully() {
    let s = Server::start();
    let token = s.token().expect("the first start prints the admin token");
    let (st, body) = http(&s, "GET", "/healthz", None, "");
    assert_eq!(st, 200, "{body}");

    // Events: JSONL, durable on the answer; then a recommendation sees them.
    let events = "{\"user\": \"web1\", \"kind\": \"click\", \"item\": \"i5\", \"ts\": 1700000000}\n\
                  {\"user\": \"web1\", \"kind\": \"click\", \"item\": \"i9\", \"ts\": 1700000001}\n";
    let (st, body) = http(&s, "POST", "/v1/events", None, events);
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["accepted"], 2);
    let (st, body) = http(
        &s,
        "POST",
        "/v1/recommend",
        None,
        r#"{"user": "web1", "k": 5}"#,
    );
    assert_eq!(st, 200, "{body}");
    let rec = json(&body);
    let items: Vec<&str> = rec["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["item"].as_str().expect("id"))
        .collect();
    assert_eq!(items.len(), 5);
    assert!(
        !items.contains(&"i5") && !items.contains(&"i9"),
        "seen items recommended: {items:?}"
    );
    assert!(rec["items"][0]["breakdown"]["seq"].is_number());
    let (st, body) = http(&s, "GET", "/v1/users/web1", None, "");
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["recent"], serde_json::json!(["i5", "i9"]));

    // Malformed input: a 400 naming the problem, nothing written.
    let (st, body) = http(
        &s,
        "POST",
        "/v1/events",
        None,
        "{\"user\": \"web1\", \"kind\": \"click\", \"ts\": 1}\n{oops",
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(json(&body)["error"]["code"], "bad_request");
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .expect("message")
            .contains("item"),
        "{body}"
    );
    let (_, body) = http(&s, "GET", "/v1/users/web1", None, "");
    assert_eq!(
        json(&body)["interactions"],
        2,
        "a rejected body wrote something"
    );
    let (st, body) = http(&s, "POST", "/v1/recommend", None, r#"{"usr": "web1"}"#);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("usr"), "{body}");
    let (st, body) = http(&s, "GET", "/v1/nothing", None, "");
    assert_eq!(
        (st, json(&body)["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Admin routes: 401 without a token or with a wrong one, success with it.
    let strategy =
        r#"{"weights": {"seq": 1, "like": 0, "purchase": 0, "itemknn": 0, "markov": 0, "pop": 2}}"#;
    let (st, body) = http(&s, "PUT", "/v1/strategy", None, strategy);
    assert_eq!(
        (st, json(&body)["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (st, _) = http(
        &s,
        "PUT",
        "/v1/strategy",
        Some("not-the-token-at-all"),
        strategy,
    );
    assert_eq!(st, 401);
    let (st, body) = http(&s, "PUT", "/v1/strategy", Some(token), strategy);
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["version"], 2);
    let (st, body) = http(
        &s,
        "PUT",
        "/v1/strategy",
        Some(token),
        r#"{"candidates": 0}"#,
    );
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("candidates"), "{body}");
    let (_, body) = http(&s, "GET", "/v1/strategy", None, "");
    assert_eq!(json(&body)["version"], 2);
    let (st, body) = http(
        &s,
        "POST",
        "/v1/strategy/rollback",
        Some(token),
        r#"{"version": 1}"#,
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["version"], 3);
    let (_, body) = http(&s, "GET", "/v1/strategy/history", None, "");
    assert_eq!(json(&body).as_array().expect("history").len(), 3);

    // Catalogue: admin writes, anyone reads; an unknown item is a JSON 404.
    let item = r#"{"kind": "item", "item": "new-1", "title": "Brand new", "tags": ["fresh"]}"#;
    let (st, _) = http(&s, "POST", "/v1/items", None, item);
    assert_eq!(st, 401);
    let (st, body) = http(&s, "POST", "/v1/items", Some(token), item);
    assert_eq!(st, 200, "{body}");
    let (st, body) = http(&s, "GET", "/v1/items/new-1", None, "");
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["tags"], serde_json::json!(["fresh"]));
    let (st, body) = http(&s, "GET", "/v1/items/nope", None, "");
    assert_eq!(
        (st, json(&body)["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // Only items tagged `fresh`: the new item is the one candidate.
    let (st, body) = http(
        &s,
        "POST",
        "/v1/recommend",
        None,
        r#"{"user": "web2", "k": 3, "context": {"include_tags": ["fresh"]}}"#,
    );
    assert_eq!(st, 200, "{body}");
    let items = json(&body)["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(items[0]["item"], "new-1");

    // Figures.
    let (st, body) = http(&s, "GET", "/metrics", None, "");
    assert_eq!(st, 200);
    assert!(body.contains("attune_recommendations_total 2"), "{body}");
    assert!(
        body.contains("attune_blend_weight{source=\"pop\"}"),
        "{body}"
    );
    assert!(
        body.contains("attune_recommend_latency_seconds_bucket"),
        "{body}"
    );
    promtool_accepts(&body);
    let (st, body) = http(&s, "GET", "/v1/stats", None, "");
    assert_eq!(st, 200);
    assert_eq!(json(&body)["events"], 2);

    // SIGTERM: a graceful stop with exit code 0.
    let mut s = s;
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
}
