//! The routes the control panel rests on, against a real `attune serve` on a generated
//! store with the shipped model: named tokens and the read-only role on every route the
//! OpenAPI document marks, publish with a message and a base version (409 when stale),
//! rollback as a new version, the audit log, previews that record nothing, explanations
//! whose attention rows are distributions, the guard that reverts a sustained breach
//! exactly once, the history of the live figures with its markers, and the console.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_tests::attune_bin;
use attune_tests::http::Server;
use serde_json::{json, Value};

const ADMIN: &str = "alice-admin-token-0123456789";
const READER: &str = "wall-read-token-0123456789";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A generated store (the shipped model's catalogue) served with two named tokens.
fn serve(dir: &Path) -> Server {
    let store = dir.join("store");
    let out = Command::new(attune_bin())
        .args(["generate", "--users", "300", "--store"])
        .arg(&store)
        .output()
        .expect("attune generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("# operators\nalice admin {ADMIN}\nwall read {READER}\n"),
    )
    .expect("token file");
    Server::start_on(
        &store,
        &[
            "--token-file",
            tokens.to_str().expect("utf-8"),
            "--environment",
            "staging",
        ],
    )
}

fn ok(s: &Server, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let (st, v) = s.call(method, path, token, &body.to_string());
    assert_eq!(st, 200, "{method} {path}: {v}");
    v
}

#[test]
fn every_marked_route_needs_its_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path());
    let doc = ok(&s, "GET", "/v1/openapi.json", None, Value::Null);
    let mut checked = (0, 0);
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let concrete = path.replace("{id}", "u1").replace("{file}", "x");
            let m = method.to_uppercase();
            match op["x-attune-role"].as_str() {
                Some("admin") => {
                    checked.0 += 1;
                    assert_eq!(s.call(&m, &concrete, None, "{}").0, 401, "{m} {path}");
                    let (st, body) = s.call(&m, &concrete, Some(READER), "{}");
                    assert_eq!(st, 403, "{m} {path} with a read token: {body}");
                    assert_eq!(body["error"]["code"], "forbidden");
                }
                Some("read") => {
                    checked.1 += 1;
                    assert_eq!(s.call(&m, &concrete, None, "{}").0, 401, "{m} {path}");
                    let (st, body) = s.call(&m, &concrete, Some(READER), "");
                    assert_ne!(st, 401, "{m} {path}: {body}");
                    assert_ne!(st, 403, "{m} {path}: {body}");
                }
                _ => assert!(op.get("security").is_none(), "{m} {path}"),
            }
        }
    }
    assert!(checked.0 >= 8 && checked.1 >= 2, "{checked:?}");
    // A wrong token is refused everywhere it is given, even on public routes.
    assert_eq!(
        s.call("GET", "/v1/whoami", Some("nope-nope-nope-nope"), "")
            .0,
        401
    );
    let who = ok(&s, "GET", "/v1/whoami", Some(READER), Value::Null);
    assert_eq!(who, json!({"actor": "wall", "role": "read"}));
    let info = ok(&s, "GET", "/v1/info", None, Value::Null);
    assert_eq!(info["environment"], "staging");
    assert_eq!(info["demo"], false);
    assert!(info["model"]["name"].is_string(), "{info}");
}

#[test]
fn publish_conflict_rollback_and_the_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path());
    let live = ok(&s, "GET", "/v1/strategy", None, Value::Null);
    let base = live["version"].as_u64().expect("version");
    let mut draft = live["strategy"].clone();
    draft["weights"]["pop"] = json!(0.9);
    let v = ok(
        &s,
        "PUT",
        "/v1/strategy",
        Some(ADMIN),
        json!({"strategy": draft, "message": "more popular items", "base_version": base}),
    );
    assert_eq!(v["version"], base + 1);
    assert_eq!(v["author"], "alice");
    assert_eq!(v["message"], "more popular items");
    assert_eq!(v["based_on"], base);
    // A publish based on a version no longer in force changes nothing.
    let (st, body) = s.call(
        "PUT",
        "/v1/strategy",
        Some(ADMIN),
        &json!({"strategy": draft, "message": "stale", "base_version": base}).to_string(),
    );
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert_eq!(
        ok(&s, "GET", "/v1/strategy", None, Value::Null)["version"],
        base + 1
    );
    // The old form still publishes.
    let mut bare = draft.clone();
    bare["weights"]["pop"] = json!(0.7);
    let v3 = ok(&s, "PUT", "/v1/strategy", Some(ADMIN), bare);
    assert_eq!(v3["version"], base + 2);
    // Validation without publishing names the field.
    let mut bad = draft.clone();
    bad["weights"]["pop"] = json!(99);
    let (st, body) = s.call("POST", "/v1/strategy/validate", None, &bad.to_string());
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("weights.pop"),
        "{body}"
    );
    assert_eq!(
        ok(&s, "POST", "/v1/strategy/validate", None, draft.clone()),
        json!({"ok": true})
    );
    // A rollback is a new version equal to the old one.
    let rb = ok(
        &s,
        "POST",
        "/v1/strategy/rollback",
        Some(ADMIN),
        json!({"version": base, "message": "back", "base_version": base + 2}),
    );
    assert_eq!(rb["version"], base + 3);
    let history = ok(&s, "GET", "/v1/strategy/history", None, Value::Null);
    let of = |v: u64| {
        history
            .as_array()
            .expect("history")
            .iter()
            .find(|h| h["version"] == v)
            .cloned()
            .expect("version in the history")
    };
    assert_eq!(of(base + 3)["strategy"], of(base)["strategy"]);
    assert_eq!(of(base + 3)["note"], format!("rollback to {base}"));
    // Every change is audited under the token's name, with what changed.
    let audit = ok(&s, "GET", "/v1/audit?limit=10", Some(READER), Value::Null);
    let rows = audit.as_array().expect("rows");
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        ["strategy.rollback", "strategy.publish", "strategy.publish"],
        "{audit}"
    );
    assert!(rows.iter().all(|r| r["actor"] == "alice"));
    let pop = rows[2]["detail"]["diff"]["weights.pop"][1]
        .as_f64()
        .expect("new pop");
    assert!((pop - 0.9).abs() < 1e-6, "{audit}");
    // Paging goes further back.
    let older = ok(
        &s,
        "GET",
        &format!("/v1/audit?before={}", rows[1]["seq"]),
        Some(ADMIN),
        Value::Null,
    );
    assert_eq!(older.as_array().map(Vec::len), Some(1));
    assert_eq!(s.call("GET", "/v1/audit?limit=0", Some(ADMIN), "").0, 400);
}

#[test]
fn previews_record_nothing_and_explanations_add_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path());
    let items: Vec<String> = serde_json::from_slice(
        &std::fs::read(repo().join("models/synthetic-default/items.json")).expect("items"),
    )
    .expect("item list");
    // A user whose history is one item every other step.
    let dominant = &items[7];
    let mut events = String::new();
    for i in 0..24 {
        let item = if i % 2 == 0 { dominant } else { &items[20 + i] };
        events.push_str(&format!(
            "{{\"user\": \"probe\", \"kind\": \"click\", \"item\": \"{item}\", \"ts\": {}}}\n",
            1_700_000_000 + i
        ));
    }
    assert_eq!(s.call("POST", "/v1/events", None, &events).0, 200);
    let session = ok(&s, "GET", "/v1/users/probe", None, Value::Null);
    let stats = ok(&s, "GET", "/v1/stats", None, Value::Null);

    let live = ok(
        &s,
        "POST",
        "/v1/recommend/preview",
        Some(ADMIN),
        json!({"user": "probe", "k": 10}),
    );
    let mut draft = ok(&s, "GET", "/v1/strategy", None, Value::Null)["strategy"].clone();
    for src in ["seq", "like", "purchase"] {
        draft["weights"][src] = json!(0.0);
    }
    draft["weights"]["pop"] = json!(3.0);
    let preview = ok(
        &s,
        "POST",
        "/v1/recommend/preview",
        Some(ADMIN),
        json!({"user": "probe", "k": 10, "strategy": draft}),
    );
    let names = |r: &Value| -> Vec<String> {
        r["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["item"].as_str().expect("id").to_string())
            .collect()
    };
    assert_ne!(
        names(&live),
        names(&preview),
        "a draft without the model must reorder"
    );
    assert_eq!(preview["request_id"], "preview");
    // Neither the session nor the counters moved; nothing was logged.
    assert_eq!(ok(&s, "GET", "/v1/users/probe", None, Value::Null), session);
    let after = ok(&s, "GET", "/v1/stats", None, Value::Null);
    for counter in ["recommendations", "events"] {
        assert_eq!(after[counter], stats[counter], "{counter}");
    }
    let (st, _) = s.call(
        "POST",
        "/v1/recommend/preview",
        Some(ADMIN),
        &json!({"user": "probe", "version": 999}).to_string(),
    );
    assert_eq!(st, 404);

    let e1 = ok(
        &s,
        "GET",
        "/v1/users/probe/explain?k=10",
        Some(READER),
        Value::Null,
    );
    let e2 = ok(
        &s,
        "GET",
        "/v1/users/probe/explain?k=10",
        Some(READER),
        Value::Null,
    );
    assert_eq!(e1["attention"], e2["attention"], "repeated calls agree");
    let att = &e1["attention"];
    let history: Vec<&str> = e1["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h.as_str().expect("id"))
        .collect();
    let rows: Vec<Vec<f64>> = std::iter::once(&att["mean"])
        .chain(att["heads"].as_array().expect("heads"))
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("weight"))
                .collect()
        })
        .collect();
    for r in &rows {
        assert_eq!(r.len(), history.len());
        let sum: f64 = r.iter().sum();
        assert!((sum - 1.0).abs() < 1e-3, "a row sums to {sum}");
    }
    // The item that fills half the history holds the most attention.
    let mut by_item: std::collections::HashMap<&str, f64> = Default::default();
    for (item, w) in history.iter().zip(&rows[0]) {
        *by_item.entry(item).or_default() += w;
    }
    let top = by_item
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("items");
    assert_eq!(*top.0, dominant.as_str(), "{by_item:?}");
    // Each item's stacked bar adds up to its score.
    let rec = &e1["recommendation"];
    for item in rec["items"].as_array().expect("items") {
        let total: f64 = ["seq", "like", "purchase", "itemknn", "markov", "pop"]
            .iter()
            .map(|s| {
                rec["weights"][s].as_f64().expect("w") * item["breakdown"][s].as_f64().expect("b")
            })
            .sum();
        let score = item["score"].as_f64().expect("score");
        assert!(
            (total - score).abs() < 1e-3 * score.abs().max(1.0),
            "{total} vs {score}"
        );
    }
    assert_eq!(
        ok(&s, "GET", "/v1/stats", None, Value::Null)["recommendations"],
        stats["recommendations"]
    );
    // The look-up is audited.
    let audit = ok(&s, "GET", "/v1/audit?limit=1", Some(ADMIN), Value::Null);
    assert_eq!(audit[0]["action"], "user.lookup");
    assert_eq!(audit[0]["actor"], "wall");
    assert_eq!(audit[0]["target"], "probe");
}

#[test]
fn a_sustained_breach_reverts_once_and_is_drawn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let addr = s.addr();
    let traffic = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut c = attune_tests::http::Client::new(addr);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("{{\"user\": \"t{}\", \"k\": 5}}", n % 50);
                let _ = c.call("POST", "/v1/recommend", None, body.as_bytes());
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // The guard's webhook: a listener that answers 200 and hands over what it got.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").expect("webhook listener");
    let hook_url = format!("http://{}/hooks/attune", hook.local_addr().expect("addr"));
    let (got_tx, got_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut conn, _)) = hook.accept() {
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len: usize = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if got.len() >= head_end + 4 + len {
                        break;
                    }
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = got_tx.send(String::from_utf8_lossy(&got).into_owned());
        }
    });
    let live = ok(&s, "GET", "/v1/strategy", None, Value::Null);
    let base = live["version"].as_u64().expect("version");
    let mut draft = live["strategy"].clone();
    draft["weights"]["markov"] = json!(1.5);
    // No request is that fast: every judged interval breaches.
    let v = ok(
        &s,
        "PUT",
        "/v1/strategy",
        Some(ADMIN),
        json!({"strategy": draft, "message": "guarded", "base_version": base,
               "guard": {"max_p99_ms": 0.000001, "interval_s": 1, "breach_intervals": 2,
                         "min_samples": 5, "duration_s": 60, "webhook": hook_url}}),
    );
    assert_eq!(v["guard"]["state"], "watching", "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let g = ok(&s, "GET", "/v1/strategy/guard", None, Value::Null);
        if g["state"] != "watching" || Instant::now() > deadline {
            break g;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["state"], "reverted", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .expect("reason")
            .starts_with("p99_ms"),
        "{status}"
    );
    // Not a wait for a condition: the traffic keeps breaching the limit for 3 s more, the
    // window in which a second revert would happen if the guard did not revert once.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    let history = ok(&s, "GET", "/v1/strategy/history", None, Value::Null);
    let reverts: Vec<&Value> = history
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["author"] == "guard")
        .collect();
    assert_eq!(reverts.len(), 1, "exactly one revert: {history}");
    assert_eq!(reverts[0]["strategy"], live["strategy"]);
    assert!(reverts[0]["note"]
        .as_str()
        .expect("note")
        .contains("p99_ms"));
    assert_eq!(
        ok(&s, "GET", "/v1/strategy", None, Value::Null)["version"],
        base + 2
    );
    // The revert is a marker on the charts, beside the publish.
    let h = ok(&s, "GET", "/v1/history?range_s=900", None, Value::Null);
    let kinds: Vec<&str> = h["markers"]
        .as_array()
        .expect("markers")
        .iter()
        .map(|m| m["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["publish", "revert"], "{h}");
    assert_eq!(s.call("GET", "/v1/history?range_s=0", None, "").0, 400);
    // The webhook heard of it.
    let posted = got_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the webhook was posted");
    assert!(
        posted.starts_with("POST /hooks/attune HTTP/1.1"),
        "{posted}"
    );
    assert!(posted.contains("\"event\":\"strategy.revert\""), "{posted}");
    assert_eq!(
        s.call("DELETE", "/v1/strategy/guard", Some(ADMIN), "").0,
        409
    );
}

#[test]
fn the_console_is_served_at_ui() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path());
    let r = s.request("GET", "/", None, "");
    assert_eq!((r.status, r.header("location")), (302, Some("/ui/")));
    let r = s.request("GET", "/ui/", None, "");
    let built = repo().join("ui/dist/index.html").is_file();
    if built {
        assert_eq!(r.status, 200);
        assert!(r.text().contains("<html"), "{}", r.text());
        assert!(r.header("content-security-policy").is_some());
    } else {
        // A binary built without the front end says how to build it.
        assert_eq!(r.status, 503);
        assert!(
            r.text().contains("npm --prefix ui run build"),
            "{}",
            r.text()
        );
    }
    assert_eq!(
        s.request("GET", "/ui/assets/..%2f..%2fCargo.toml", None, "")
            .status,
        404
    );
    assert_eq!(s.request("GET", "/ui/nothing.js", None, "").status, 404);
}
