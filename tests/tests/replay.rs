//! `attune replay` as a user runs it: the JSON contract, determinism across runs, the
//! HTML report, clear errors on bad input; a log written by `attune serve` replayed with
//! the served strategy (exploration off, learner frozen) reproduces every served slate;
//! and the service's replay job (`POST /v1/replay`, `GET /v1/replay/{id}`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use attune_tests::attune_bin;
use attune_tests::http::Server;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn attune(args: &[&str]) -> std::process::Output {
    Command::new(attune_bin())
        .args(args)
        .output()
        .expect("attune runs")
}

/// A small synthetic data set as JSONL.
fn data(dir: &Path) -> PathBuf {
    let out = dir.join("data.jsonl");
    let o = attune(&[
        "generate",
        "--out",
        out.to_str().expect("utf-8"),
        "--users",
        "150",
        "--items",
        "200",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn stable(v: &mut serde_json::Value) {
    v["seconds"] = serde_json::Value::Null;
    for s in v["strategies"].as_array_mut().expect("strategies") {
        for k in [
            "seconds",
            "latency_p50_us",
            "latency_p99_us",
            "latency_buckets",
        ] {
            s[k] = serde_json::Value::Null;
        }
    }
}

#[test]
fn replay_prints_the_json_contract_is_deterministic_and_writes_a_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = data(dir.path());
    let strategy = dir.path().join("markov-heavy.json");
    std::fs::write(
        &strategy,
        r#"{"weights": {"seq": 0, "like": 0, "purchase": 0, "itemknn": 0.2, "markov": 2, "pop": 0.1}}"#,
    )
    .expect("write");
    let report = dir.path().join("report");
    let args = |with_report: bool| {
        let mut a = vec![
            "replay".to_string(),
            "--data".into(),
            file.display().to_string(),
            "--format".into(),
            "jsonl".into(),
            "--strategy".into(),
            strategy.display().to_string(),
            "--json".into(),
        ];
        if with_report {
            a.extend(["--report".into(), report.display().to_string()]);
        }
        a
    };
    let run = |with_report: bool| {
        let a = args(with_report);
        let o = attune(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("one JSON object")
    };
    let mut first = run(true);
    assert!(
        first["events"].as_u64().is_some_and(|n| n > 1000),
        "{first}"
    );
    assert!(first["seconds"].is_number());
    let s = &first["strategies"][0];
    assert_eq!(s["name"], "markov-heavy");
    for k in ["hr", "ndcg", "mrr", "coverage"] {
        assert!(
            s[k].as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)),
            "{k}: {s}"
        );
    }
    assert!(s["hr"].as_f64().is_some_and(|x| x > 0.0), "{s}");
    assert_eq!(s["windows"].as_array().map(Vec::len), Some(10));
    let mut second = run(false);
    stable(&mut first);
    stable(&mut second);
    assert_eq!(first, second, "two runs differ");
    let html = std::fs::read_to_string(report.join("index.html")).expect("index.html");
    assert!(html.contains("<svg") && html.contains("markov-heavy"));
    assert!(report.join("report.json").is_file());
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.jsonl");
    let o = attune(&[
        "replay",
        "--data",
        missing.to_str().expect("utf-8"),
        "--format",
        "jsonl",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.jsonl"));
    let file = data(dir.path());
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"candidates": 0}"#).expect("write");
    let o = attune(&[
        "replay",
        "--data",
        file.to_str().expect("utf-8"),
        "--format",
        "jsonl",
        "--strategy",
        bad.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.json") && err.contains("candidates"),
        "{err}"
    );
    let o = attune(&[
        "replay",
        "--data",
        file.to_str().expect("utf-8"),
        "--format",
        "jsonl",
        "--from",
        "2030-01-01",
        "--to",
        "2029-01-01",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = attune(&[
        "replay",
        "--data",
        file.to_str().expect("utf-8"),
        "--format",
        "jsonl",
        "--from",
        "yesterday",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--from"));
}

/// `attune serve` on `store` with the shipped models and a token file.
fn served(store: &Path, token_file: &Path) -> Server {
    Server::start_on(
        store,
        &["--token-file", token_file.to_str().expect("utf-8")],
    )
}

/// A request that must succeed; its JSON answer.
fn ok(s: &Server, method: &str, path: &str, token: Option<&str>, body: &str) -> serde_json::Value {
    let (status, v) = s.call(method, path, token, body);
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

#[test]
fn a_served_log_replays_to_the_slates_that_were_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let token_file = dir.path().join("token");
    let token = "replay-test-token-0123456789";
    std::fs::write(&token_file, token).expect("token");
    // Exploration off, learner frozen: what was served depends on the log alone.
    let strategy = r#"{"name": "served", "learning": {"adaptive": false, "learning_rate": 1.0, "update_every": 32}}"#;
    let strategy_file = dir.path().join("served.json");
    std::fs::write(&strategy_file, strategy).expect("write");
    let mut s = served(&store, &token_file);
    ok(&s, "PUT", "/v1/strategy", Some(token), strategy);
    let mut served = 0;
    for round in 0..4 {
        let events: String = (0..3)
            .flat_map(|u| {
                (0..2).map(move |j| {
                    format!(
                        "{{\"user\": \"w{u}\", \"kind\": \"click\", \"item\": \"i{}\", \"ts\": {}}}\n",
                        (u * 37 + round * 11 + j * 5) % 500,
                        1_700_000_000 + round * 10 + j
                    )
                })
            })
            .collect();
        ok(&s, "POST", "/v1/events", None, &events);
        // The replay applies each round's counts before ranking; here the learner publishes
        // them every 200 ms (at background priority, so later on a busy machine): wait
        // until the published sources include every event posted.
        let posted = 6 * (round + 1);
        let waited = std::time::Instant::now();
        loop {
            let stats = ok(&s, "GET", "/v1/stats", None, "");
            if stats["learned_events"].as_u64().expect("learned_events") >= posted {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the learner did not publish {posted} events in 30 s: {stats}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for u in 0..3 {
            let rec = ok(
                &s,
                "POST",
                "/v1/recommend",
                None,
                &format!("{{\"user\": \"w{u}\", \"k\": 8}}"),
            );
            assert_eq!(rec["items"].as_array().map(Vec::len), Some(8));
            served += 1;
        }
    }
    s.stop_gracefully(Duration::from_secs(20));
    let o = attune(&[
        "replay",
        "--store",
        store.to_str().expect("utf-8"),
        "--model",
        repo()
            .join("models/synthetic-default")
            .to_str()
            .expect("utf-8"),
        "--strategy",
        strategy_file.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let r = &v["strategies"][0];
    assert_eq!(r["served_impressions"], served, "{r}");
    assert_eq!(
        r["served_agreement"], 1.0,
        "the replay ranked differently from the service: {r}"
    );
}

#[test]
fn the_service_runs_a_replay_job_of_its_own_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let token_file = dir.path().join("token");
    let token = "replay-test-token-0123456789";
    std::fs::write(&token_file, token).expect("token");
    let mut s = served(&store, &token_file);
    let events: String = (0..200)
        .map(|i| {
            format!(
                "{{\"user\": \"v{}\", \"kind\": \"click\", \"item\": \"i{}\", \"ts\": {}}}\n",
                i % 20,
                (i * 7) % 90,
                1_700_000_000 + i
            )
        })
        .collect();
    ok(&s, "POST", "/v1/events", None, &events);
    assert_eq!(s.call("POST", "/v1/replay", None, "{}").0, 401);
    let job = ok(&s, "POST", "/v1/replay", Some(token), r#"{"k": 5}"#);
    let id = job["id"].as_u64().expect("id");
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let j = ok(&s, "GET", &format!("/v1/replay/{id}"), None, "");
        if j["status"] != "running" {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "the replay job did not finish: {j}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["report"]["events"], 200, "{done}");
    assert_eq!(done["report"]["k"], 5);
    assert_eq!(s.call("GET", "/v1/replay/999", None, "").0, 404);
    s.stop_gracefully(Duration::from_secs(20));
}

#[test]
fn ctrl_c_leaves_a_valid_partial_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("big.jsonl");
    let o = attune(&[
        "generate",
        "--out",
        out.to_str().expect("utf-8"),
        "--users",
        "3000",
        "--items",
        "300",
    ]);
    assert!(o.status.success());
    let report = dir.path().join("report");
    let mut child = Command::new(attune_bin())
        .args(["replay", "--format", "jsonl", "--json", "--data"])
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn replay");
    // Under way: the first tenth is replayed (stderr is not a terminal, so the progress
    // comes as lines). The rest of stderr is kept for the failure message.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if line.starts_with("replaying: ") {
                let _ = tx.send(());
            }
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the replay reports its first tenth");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let o = child.wait_with_output().expect("wait");
    let stderr = reader.join().expect("stderr reader");
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v["partial"], true,
        "the replay finished before the signal: {v}"
    );
    let events = v["events"].as_u64().expect("events");
    assert!(events > 0, "{v}");
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("report.json")).expect("report.json"),
    )
    .expect("valid JSON");
    assert_eq!(saved["events"], events);
    assert!(std::fs::read_to_string(report.join("index.html"))
        .expect("index.html")
        .contains("partial"));
}
