//! `attune serve` routes beyond the basics, as a real process: the OpenAPI document lists
//! every route the server answers, forgetting a user over HTTP leaves nothing of them in
//! the store, models are listed and activated (and stay activated across a restart), the
//! live stream pushes figures and strategy changes and ends on SIGTERM, the TOML config
//! file works and its mistakes are reported with file and line, and `attune demo` runs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use attune_tests::attune_bin;
use attune_tests::http::Server;

/// Starts `attune serve ARGS` on `store`.
fn start(args: &[&str], store: &Path) -> Server {
    Server::launch(args, store)
}

/// A graceful stop within 20 s.
fn stop(mut s: Server) {
    s.stop_gracefully(Duration::from_secs(20));
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A token file, so that restarts know the token.
fn token_file(dir: &Path) -> (PathBuf, String) {
    let token = "test-admin-token-0123456789".to_string();
    let path = dir.join("token");
    std::fs::write(&path, &token).expect("token file");
    (path, token)
}

#[test]
fn openapi_lists_every_route_and_the_server_answers_every_listed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tf, token) = token_file(dir.path());
    let store = dir.path().join("store");
    let models = repo().join("models");
    let s = start(
        &[
            "--bind",
            "127.0.0.1:0",
            "--store",
            store.to_str().expect("utf-8"),
            "--models",
            models.to_str().expect("utf-8"),
            "--token-file",
            tf.to_str().expect("utf-8"),
        ],
        &store,
    );
    let (st, doc) = s.call("GET", "/v1/openapi.json", None, "");
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    // The routes the issue names, each in the document.
    let contract = [
        ("post", "/v1/events"),
        ("post", "/v1/recommend"),
        ("get", "/v1/users/{id}"),
        ("delete", "/v1/users/{id}"),
        ("get", "/v1/items/{id}"),
        ("post", "/v1/items"),
        ("get", "/v1/strategy"),
        ("put", "/v1/strategy"),
        ("get", "/v1/strategy/history"),
        ("post", "/v1/strategy/rollback"),
        ("get", "/v1/models"),
        ("post", "/v1/models/activate"),
        ("get", "/v1/stats"),
        ("get", "/metrics"),
        ("get", "/v1/stream"),
        ("get", "/healthz"),
        ("get", "/v1/openapi.json"),
    ];
    for (m, p) in contract {
        assert!(
            paths.get(p).and_then(|o| o.get(m)).is_some(),
            "{m} {p} missing from the document"
        );
    }
    // Every documented operation is served: no "no route" answer, and admin ones are
    // marked and refuse a request without the token.
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            let concrete = path.replace("{id}", "someone");
            if concrete == "/v1/stream" {
                continue; // endless; checked below
            }
            let (st, body) = s.call(&method.to_uppercase(), &concrete, None, "{}");
            let no_route = body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no route"));
            assert!(
                !no_route && st != 405,
                "{method} {path} is documented but not served ({st} {body})"
            );
            if op.get("security").is_some() {
                assert_eq!(
                    st, 401,
                    "{method} {path} is admin but answered {st} without a token"
                );
            }
        }
    }
    // The strategy history pages.
    let (st, h) = s.call("GET", "/v1/strategy/history?limit=1", None, "");
    assert_eq!((st, h.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(
        s.call("GET", "/v1/strategy/history?limit=x", None, "").0,
        400
    );
    // A known path with another method: 405 naming the methods allowed.
    let r = s.request("DELETE", "/v1/recommend", None, "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    // And a route that exists nowhere is not served.
    let (st, body) = s.call("GET", "/v1/nowhere", None, "");
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let _ = token;
    stop(s);
}

#[test]
fn a_forgotten_user_leaves_nothing_in_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tf, token) = token_file(dir.path());
    let store = dir.path().join("store");
    let args = [
        "--bind",
        "127.0.0.1:0",
        "--store",
        store.to_str().expect("utf-8"),
        "--token-file",
        tf.to_str().expect("utf-8"),
    ];
    let s = start(&args, &store);
    let events: String = (0..30)
        .map(|i| {
            format!(
                "{{\"user\": \"{}\", \"kind\": \"click\", \"item\": \"i{}\", \"ts\": {}}}\n",
                if i % 3 == 0 { "stays" } else { "leaves" },
                i % 7,
                1_700_000_000 + i
            )
        })
        .collect();
    let (st, body) = s.call("POST", "/v1/events", None, &events);
    assert_eq!(st, 200, "{body}");
    let (st, _) = s.call(
        "POST",
        "/v1/recommend",
        None,
        r#"{"user": "leaves", "k": 3}"#,
    );
    assert_eq!(st, 200);
    // Admin only.
    let (st, _) = s.call("DELETE", "/v1/users/leaves", None, "");
    assert_eq!(st, 401);
    let (st, _) = s.call(
        "DELETE",
        "/v1/users/leaves",
        Some("wrong-token-wrong-token"),
        "",
    );
    assert_eq!(st, 401);
    let (st, body) = s.call("DELETE", "/v1/users/leaves", Some(&token), "");
    assert_eq!(st, 200, "{body}");
    assert!(body["events"].as_u64().is_some_and(|n| n >= 20), "{body}");
    let (st, body) = s.call("DELETE", "/v1/users/leaves", Some(&token), "");
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (st, body) = s.call("GET", "/v1/users/leaves", None, "");
    assert_eq!(st, 200);
    assert_eq!(body["interactions"], 0, "{body}");
    let (_, body) = s.call("GET", "/v1/users/stays", None, "");
    assert_eq!(body["interactions"], 10, "{body}");
    stop(s);
    // The store itself: no event, id or record of the user.
    let st =
        attune::store::Store::open(&store, attune::store::StoreConfig::default()).expect("open");
    assert_eq!(st.user_id("leaves"), None);
    let mut users = std::collections::BTreeSet::new();
    for ev in st.all_events() {
        let (_, ev) = ev.expect("readable");
        users.insert(st.user_name(ev.user).expect("named user"));
    }
    assert_eq!(
        users.into_iter().collect::<Vec<_>>(),
        vec!["stays".to_string()]
    );
    assert!(st
        .get_record(attune::store::RecordSpace::Session, b"leaves")
        .expect("read")
        .is_none());
    st.close().expect("close");
}

/// Copies a checkpoint (its files, not `last/`).
fn copy_checkpoint(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read checkpoint") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn models_are_listed_activated_and_stay_active_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tf, token) = token_file(dir.path());
    let models = dir.path().join("models");
    let shipped = repo().join("models/synthetic-default");
    copy_checkpoint(&shipped, &models.join("synthetic-default"));
    copy_checkpoint(&shipped, &models.join("candidate"));
    let store = dir.path().join("store");
    let args = [
        "--bind",
        "127.0.0.1:0",
        "--store",
        store.to_str().expect("utf-8"),
        "--models",
        models.to_str().expect("utf-8"),
        "--token-file",
        tf.to_str().expect("utf-8"),
    ];
    let s = start(&args, &store);
    let (st, body) = s.call("GET", "/v1/models", None, "");
    assert_eq!(st, 200);
    let names: Vec<&str> = body["available"]
        .as_array()
        .expect("available")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["candidate", "synthetic-default"]);
    assert!(body["serving"]["dir"]
        .as_str()
        .is_some_and(|d| d.ends_with("synthetic-default")));
    assert_eq!(body["serving"]["version"], 1);
    for (bad, status) in [
        (r#"{"name": "../models"}"#, 400),
        (r#"{"name": "nope"}"#, 404),
        (r#"{"nam": "x"}"#, 400),
    ] {
        let (st, body) = s.call("POST", "/v1/models/activate", Some(&token), bad);
        assert_eq!(st, status, "{bad}: {body}");
    }
    let (st, _) = s.call(
        "POST",
        "/v1/models/activate",
        None,
        r#"{"name": "candidate"}"#,
    );
    assert_eq!(st, 401);
    let (st, body) = s.call(
        "POST",
        "/v1/models/activate",
        Some(&token),
        r#"{"name": "candidate"}"#,
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["version"], 2);
    let (st, rec) = s.call("POST", "/v1/recommend", None, r#"{"user": "u1", "k": 3}"#);
    assert_eq!(st, 200);
    assert_eq!(rec["model_version"], 2);
    // A broken checkpoint is refused with a clear error, and the serving model stays.
    std::fs::create_dir_all(models.join("broken")).expect("mkdir");
    std::fs::write(models.join("broken/config.json"), "{\"dim\": 3}").expect("write");
    let (st, body) = s.call(
        "POST",
        "/v1/models/activate",
        Some(&token),
        r#"{"name": "broken"}"#,
    );
    assert!(st == 422 || st == 400, "{st} {body}");
    let (_, body) = s.call("GET", "/v1/models", None, "");
    assert!(
        body["serving"]["dir"]
            .as_str()
            .is_some_and(|d| d.ends_with("candidate")),
        "{body}"
    );
    stop(s);
    let s = start(&args, &store);
    let (_, body) = s.call("GET", "/v1/models", None, "");
    assert!(
        body["serving"]["dir"]
            .as_str()
            .is_some_and(|d| d.ends_with("candidate")),
        "the activation did not survive the restart: {body}"
    );
    stop(s);
}

/// Reads server-sent events until `want` returns true for one (event name, data).
fn read_events(
    reader: &mut BufReader<TcpStream>,
    deadline: Duration,
    mut want: impl FnMut(&str, &serde_json::Value) -> bool,
) -> bool {
    let until = Instant::now() + deadline;
    let mut event = String::new();
    let mut line = String::new();
    while Instant::now() < until {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(_) => continue, // read timeout: look at the clock again
        }
        // Chunked framing: chunk-size lines and blank lines carry no field.
        let l = line.trim_end();
        if let Some(e) = l.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = l.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(d).unwrap_or(serde_json::Value::Null);
            if want(&event, &v) {
                return true;
            }
        }
    }
    false
}

#[test]
fn the_stream_pushes_figures_and_changes_and_ends_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tf, token) = token_file(dir.path());
    let store = dir.path().join("store");
    let s = start(
        &[
            "--bind",
            "127.0.0.1:0",
            "--store",
            store.to_str().expect("utf-8"),
            "--token-file",
            tf.to_str().expect("utf-8"),
        ],
        &store,
    );
    let mut stream = TcpStream::connect(s.addr()).expect("connect");
    write!(stream, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut reader = BufReader::new(stream);
    let (st, _) = s.call(
        "POST",
        "/v1/events",
        None,
        r#"{"user": "a", "kind": "click", "item": "i1", "ts": 1}"#,
    );
    assert_eq!(st, 200);
    assert!(
        read_events(&mut reader, Duration::from_secs(5), |e, d| e == "stats"
            && d["recommendations_per_s"].is_number()
            && d["weights"]["seq"].is_number()),
        "no stats frame within 5 s"
    );
    let (st, _) = s.call(
        "PUT",
        "/v1/strategy",
        Some(&token),
        r#"{"name": "streamed"}"#,
    );
    assert_eq!(st, 200);
    assert!(
        read_events(&mut reader, Duration::from_secs(5), |e, d| e == "strategy"
            && d["strategy"]["name"] == "streamed"),
        "no strategy frame"
    );
    // With the stream still open, SIGTERM stops the server promptly (stop() allows 20 s;
    // the stream must not hold it for the whole shutdown timeout).
    let t = Instant::now();
    stop(s);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(
        read_events(&mut reader, Duration::from_secs(2), |e, _| e == "shutdown"),
        "the stream did not end with a shutdown event"
    );
}

#[test]
fn a_config_file_sets_the_flags_and_its_mistakes_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("attune.toml");
    std::fs::write(
        &cfg,
        "store = \"store\"\nbind = \"127.0.0.1:0\"\nbody_limit = 200\n\n[engine.strategy]\nname = \"from-file\"\n",
    )
    .expect("write");
    let s = start(
        &["--config", cfg.to_str().expect("utf-8")],
        &dir.path().join("store"),
    );
    assert!(
        dir.path().join("store").is_dir(),
        "store not relative to the file"
    );
    let (_, body) = s.call("GET", "/v1/strategy", None, "");
    assert_eq!(body["strategy"]["name"], "from-file");
    let big = format!("{{\"user\": \"{}\", \"k\": 3}}", "x".repeat(300));
    let (st, body) = s.call("POST", "/v1/recommend", None, &big);
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    stop(s);
    // Mistakes: exit 1 and a message naming the file and the line.
    std::fs::write(
        &cfg,
        "store = \"store\"\nbind = \"127.0.0.1:0\"\nworkers = \"many\"\n",
    )
    .expect("write");
    let out = Command::new(attune_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attune.toml:3:"), "{err}");
    let out = Command::new(attune_bin())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store"));
}

#[test]
fn the_demo_serves_and_drives_itself_then_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("demo-store");
    let run = || {
        Command::new(attune_bin())
            .current_dir(repo())
            .args([
                "demo",
                "--bind",
                "127.0.0.1:0",
                "--seconds",
                "4",
                "--rate",
                "100",
                "--store",
            ])
            .arg(&store)
            .output()
            .expect("run demo")
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("generated the default synthetic data"),
        "{text}"
    );
    assert!(text.contains("admin token: "), "{text}");
    let summary = text.lines().last().expect("summary");
    let recs: u64 = summary
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(recs >= 100, "{summary}");
    assert!(summary.contains(" 0 errors"), "{summary}");
    // The second run reuses the store.
    let out = run();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("reusing the store"));
}
