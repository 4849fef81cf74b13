//! `attune serve` as a real process on a real port: routes, auth, JSON errors,
//! read-your-writes over HTTP, Prometheus text, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use attune_tests::attune_bin;

struct Server {
    child: Child,
    addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut child = Command::new(attune_bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--store"])
        .arg(dir.path().join("store"))
        .arg("--models")
        .arg(models)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut addr, mut token) = (None, None);
    while addr.is_none() {
        let line = lines.next().expect("serve exited early").expect("line");
        if let Some(t) = line.strip_prefix("admin token (shown once; stored in the store): ") {
            token = Some(t.to_string());
        }
        if let Some(a) = line.strip_prefix("listening on http://") {
            addr = Some(a.to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr: addr.expect("address"),
        token: token.expect("the first start prints the admin token"),
        _dir: dir,
    }
}

/// One HTTP/1.1 request; returns (status, body).
fn http(s: &Server, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(&s.addr).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let status: u16 = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        // size in hex, CRLF, data, CRLF ... 0 CRLF CRLF
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn the_service_answers_guards_and_stops_gracefully() {
    let s = start();
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
    let (st, body) = http(&s, "PUT", "/v1/strategy", Some(&s.token), strategy);
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["version"], 2);
    let (st, body) = http(
        &s,
        "PUT",
        "/v1/strategy",
        Some(&s.token),
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
        Some(&s.token),
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
    let (st, body) = http(&s, "POST", "/v1/items", Some(&s.token), item);
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
    let (st, body) = http(&s, "GET", "/v1/stats", None, "");
    assert_eq!(st, 200);
    assert_eq!(json(&body)["events"], 2);

    // SIGTERM: a graceful stop with exit code 0.
    let mut s = s;
    let pid = s.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = s.child.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
}
