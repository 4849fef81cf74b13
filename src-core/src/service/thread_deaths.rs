//! Each thread of the store and the engine killed in turn under a real service (a panic
//! injected at the thread's next wake-up, see [`crate::supervise::checkpoint`]): `/healthz`
//! must answer 503 naming it, every write 503 `unhealthy`, reads go on, and every event
//! acknowledged before or after is in the store when it is reopened. The text embedder
//! (`attune-text`) is killed too where the encoder has been fetched.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::client::{Client, Response};
use super::{serve_until, ServeConfig};
use crate::engine::{Engine, EngineConfig};
use crate::event::{Action, RawEvent};
use crate::store::{Store, StoreConfig};
use crate::synth::{Generator, SynthConfig};

/// A service on a fresh store of synthetic users, with the shipped checkpoint.
struct Service {
    _dir: tempfile::TempDir,
    store: PathBuf,
    addr: SocketAddr,
    token: String,
    engine: Engine,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<crate::Result<()>>>,
}

impl Service {
    fn start(tune: impl FnOnce(&mut EngineConfig)) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        {
            let s = Store::open(&store, StoreConfig::default()).expect("store");
            let gen = Generator::new(SynthConfig::default()).expect("generator");
            s.put_items(&gen.items().collect::<Vec<_>>())
                .expect("items");
            let events: Vec<RawEvent> = (0..30).flat_map(|u| gen.user_events(u)).collect();
            s.append(&events).expect("append");
            s.close().expect("close");
        }
        let mut config = EngineConfig {
            store: store.clone(),
            model: Some(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/synthetic-default"),
            ),
            ..EngineConfig::default()
        };
        tune(&mut config);
        let engine = Engine::open(config).expect("engine");
        let served = engine.clone();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let cfg = ServeConfig {
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                quiet: true,
                ..ServeConfig::default()
            };
            let on_bound = move |addr: SocketAddr, token: &str| {
                let _ = bound_tx.send((addr, token.to_string()));
            };
            actix_web::rt::System::new().block_on(serve_until(served, cfg, on_bound, async {
                let _ = stopped.await;
            }))
        });
        let (addr, token) = bound_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the service binds");
        Service {
            _dir: dir,
            store,
            addr,
            token,
            engine,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn call(&self, method: &str, path: &str, admin: bool, body: &str) -> Response {
        let mut c = Client::new(self.addr, Duration::from_secs(30)).expect("client");
        let token = admin.then_some(self.token.as_str());
        c.request(method, path, token, body.as_bytes())
            .expect("an answer")
    }

    /// Posts one click of `user`; its sequence number if acknowledged.
    fn click(&self, user: &str, item: &str) -> (u16, Option<u64>) {
        let body = format!(r#"{{"user":"{user}","item":"{item}","kind":"click","ts":1}}"#);
        let r = self.call("POST", "/v1/events", false, &body);
        let seq = (r.status == 200)
            .then(|| r.json().ok()?["seqs"][0].as_u64())
            .flatten();
        (r.status, seq)
    }

    /// Stops the service (which shuts the engine down) and reopens the store.
    fn stop_and_reopen(mut self) -> Store {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join().expect("the service thread");
        }
        drop(self.engine);
        Store::open(&self.store, StoreConfig::default()).expect("reopen")
    }
}

/// Waits until `/healthz` fails; returns its body.
fn wait_for_failing_health(s: &Service, wake: &dyn Fn(&Service)) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.call("GET", "/healthz", false, "");
        if r.status == 503 {
            return r.json().expect("json");
        }
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(Instant::now() < deadline, "health never failed");
        wake(s);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills `thread` (woken by `wake`) and checks what the issue asks of every thread death.
fn kill(thread: &str, tune: impl FnOnce(&mut EngineConfig), wake: &dyn Fn(&Service)) {
    let s = Service::start(tune);
    // Acknowledged before the death.
    let mut acked: Vec<u64> = (0..10)
        .map(|i| s.click("steady", &format!("i{i}")))
        .map(|(status, seq)| {
            assert_eq!(status, 200);
            seq.expect("a sequence number")
        })
        .collect();
    let healthy = s.call("GET", "/healthz", false, "");
    assert_eq!(healthy.status, 200);
    assert_eq!(healthy.json().expect("ok")["status"], "ok");

    s.engine.store().supervisor().inject_panic(thread);
    let health = wait_for_failing_health(&s, wake);
    assert_eq!(health["status"], "failing", "{health}");
    assert_eq!(health["faults"][0]["thread"], thread, "{health}");
    let reason = health["faults"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("fault injected"), "{health}");
    if thread.starts_with("attune-compute") {
        assert_eq!(
            s.engine.metrics().compute_restarts,
            3,
            "restarted in place first"
        );
    }

    // Every write answers 503 naming the thread.
    let writes = [
        (
            "POST",
            "/v1/events",
            false,
            r#"{"user":"late","item":"i1","kind":"click","ts":1}"#,
        ),
        (
            "POST",
            "/v1/items",
            true,
            r#"{"kind":"item","item":"new-item","tags":["x"]}"#,
        ),
        ("DELETE", "/v1/users/steady", true, ""),
    ];
    for (method, path, admin, body) in writes {
        let r = s.call(method, path, admin, body);
        let j = r.json().unwrap_or_default();
        assert_eq!(r.status, 503, "{method} {path}: {j}");
        assert_eq!(j["error"]["code"], "unhealthy", "{method} {path}: {j}");
        let message = j["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(thread), "{method} {path}: {j}");
    }
    // Reads go on, unless the thread was the one computing them.
    if !thread.starts_with("attune-compute") {
        let r = s.call("POST", "/v1/recommend", false, r#"{"user":"steady","k":5}"#);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = s.call("GET", "/v1/users/steady", false, "");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // A write acknowledged meanwhile (none is expected) would have to be there too.
    if let (200, Some(seq)) = s.click("steady", "i99") {
        acked.push(seq);
    }
    let store = s.stop_and_reopen();
    let steady = store.user_id("steady").expect("steady's id survives");
    let history: Vec<u64> = store
        .user_history(steady)
        .expect("history")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(history, acked, "every acknowledged event, in order");
    for seq in &acked {
        let (_, ev) = store
            .events(*seq..*seq + 1)
            .next()
            .expect("the event")
            .expect("readable");
        assert!(matches!(ev.action, Action::Click { .. }));
    }
    store.close().expect("close");
}

fn post_a_click(s: &Service) {
    let _ = s.click("waker", "i3");
}

fn nothing(_: &Service) {}

#[test]
fn a_dead_log_writer_fails_health_and_refuses_writes() {
    kill("attune-log-writer", |_| {}, &post_a_click);
}

#[test]
fn a_dead_acknowledger_fails_health_and_refuses_writes() {
    kill("attune-log-acks", |_| {}, &post_a_click);
}

#[test]
fn a_dead_flusher_fails_health_and_refuses_writes() {
    kill("attune-flusher", |_| {}, &post_a_click);
}

#[test]
fn a_dead_indexer_fails_health_and_refuses_writes() {
    kill("attune-indexer", |_| {}, &nothing);
}

#[test]
fn a_dead_learner_fails_health_and_refuses_writes() {
    kill("attune-learner", |_| {}, &post_a_click);
}

#[test]
fn a_dead_janitor_fails_health_and_refuses_writes() {
    kill("attune-janitor", |c| c.sweep_every_ms = 20, &nothing);
}

#[test]
fn a_dead_fine_tuner_fails_health_and_refuses_writes() {
    kill("attune-finetune", |c| c.finetune_every = 2, &post_a_click);
}

#[test]
fn a_dead_text_embedder_fails_health_and_refuses_writes() {
    let encoder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/minilm-l6");
    if !encoder.join("model.safetensors").is_file() {
        assert!(
            std::env::var("ATTUNE_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{} is missing and ATTUNE_REQUIRE_TOOLS=1: run scripts/fetch-encoder.sh",
            encoder.display()
        );
        eprintln!("skipping: {} is missing", encoder.display());
        return;
    }
    // A new item wakes the embedder, which dies at its next turn.
    let post_an_item = |s: &Service| {
        let _ = s.call(
            "POST",
            "/v1/items",
            true,
            r#"{"kind":"item","item":"waker","title":"A waking item"}"#,
        );
    };
    kill("attune-text", |c| c.encoder = Some(encoder), &post_an_item);
}

#[test]
fn a_compute_thread_is_restarted_three_times_then_fails_health() {
    let recommend = |s: &Service| {
        let r = s.call("POST", "/v1/recommend", false, r#"{"user":"u1","k":5}"#);
        // The request whose batch died answers 503; the others are served.
        assert!(matches!(r.status, 200 | 503), "{}", r.status);
        // Inject again until the restarts are spent.
        if s.engine.faults().is_empty() {
            s.engine
                .store()
                .supervisor()
                .inject_panic("attune-compute-0");
        }
    };
    kill("attune-compute-0", |c| c.compute_threads = 1, &recommend);
}
