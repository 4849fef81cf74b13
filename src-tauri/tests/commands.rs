//! The panel's commands called through Tauri's IPC (the mock runtime, no display) against
//! a real engine served in-process: `api_call` forwards with the admin token, paths
//! outside the API are refused, `stream_subscribe` delivers the live figures, `connect`
//! reads token files, and no command's output ever carries the token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use attune_panel::connection::{Connection, Endpoint, Mode};
use attune_panel::local_engine::{LocalSpec, Served};
use attune_panel::panel::Panel;
use attune_panel::token::AdminToken;
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody, InvokeResponseBody};
use tauri::test::{mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewWindow, WebviewWindowBuilder};

const TOKEN: &str = "panel-test-admin-token-5f1c9e";

/// An engine served as `attune serve` does, over a temporary store, on a free port.
struct TestEngine {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestEngine {
    fn start() -> TestEngine {
        let dir = tempfile::tempdir().expect("a temp dir");
        let token_file = dir.path().join("admin.token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write the token file");
        let store = dir.path().join("store");
        let (bound_tx, bound_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let engine = attune::Engine::open(attune::EngineConfig {
                store,
                ..attune::EngineConfig::default()
            })
            .expect("the engine opens over an empty store");
            let cfg = attune::service::ServeConfig {
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                token_file: Some(token_file),
                environment: "test".into(),
                ..attune::service::ServeConfig::default()
            };
            let served = actix_web::rt::System::new().block_on(attune::service::serve_until(
                engine,
                cfg,
                move |addr, _| bound_tx.send(addr).expect("the test waits"),
                async move {
                    let _ = stop_rx.await;
                },
            ));
            served.expect("the service stops cleanly");
        });
        let addr = bound_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the service listens");
        TestEngine {
            addr,
            dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("the service thread ends");
        }
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Everything a command or channel handed to the web view, to check for the token.
type Outputs = Arc<Mutex<Vec<String>>>;

struct Harness {
    _app: App<MockRuntime>,
    webview: WebviewWindow<MockRuntime>,
    panel: Panel,
    outputs: Outputs,
    channel: mpsc::Receiver<Value>,
}

impl Harness {
    fn new(panel: Panel) -> Harness {
        let outputs: Outputs = Arc::default();
        let (tx, rx) = mpsc::channel();
        let seen = Arc::clone(&outputs);
        let tx = Mutex::new(tx);
        let builder = mock_builder().channel_interceptor(move |_, _, _, body| {
            let text = match body {
                InvokeResponseBody::Json(s) => s.clone(),
                InvokeResponseBody::Raw(b) => String::from_utf8_lossy(b).into_owned(),
            };
            seen.lock().expect("outputs lock").push(text.clone());
            if let Ok(v) = serde_json::from_str(&text) {
                let _ = tx.lock().expect("sender lock").send(v);
            }
            true
        });
        let app = attune_panel::app_builder(builder, panel.clone())
            .build(mock_context(noop_assets()))
            .expect("the mock app builds");
        let webview = WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .expect("the mock window opens");
        Harness {
            _app: app,
            webview,
            panel,
            outputs,
            channel: rx,
        }
    }

    /// Invokes `cmd` with `args` as the web view would; the answer or the error as JSON.
    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        let answer = tauri::test::get_ipc_response(
            &self.webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().expect("a URL"),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|b| b.deserialize::<Value>().expect("a JSON answer"));
        let text = match &answer {
            Ok(v) | Err(v) => v.to_string(),
        };
        self.outputs.lock().expect("outputs lock").push(text);
        answer
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        self.invoke(
            "api_call",
            json!({"method": method, "path": path, "body": body}),
        )
    }

    /// The next channel message whose event is `event`, within `within`.
    fn wait_event(&self, event: &str, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let m = self
                .channel
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {event:?} event within {within:?}: {e}"));
            if m["event"] == event {
                return m;
            }
        }
    }

    fn assert_token_never_output(&self, token: &str) {
        let outputs = self.outputs.lock().expect("outputs lock");
        assert!(!outputs.is_empty());
        for o in outputs.iter() {
            assert!(!o.contains(token), "the token reached the web view: {o}");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.panel.shutdown();
    }
}

fn remote_panel(url: &str, token: Option<&str>) -> Panel {
    Panel::new(
        Connection {
            endpoint: Endpoint::parse(url).expect("a test URL"),
            token: token.map(AdminToken::new),
            mode: Mode::Remote,
            environment: Some("test".into()),
            model_found: false,
            notes: vec![],
        },
        None,
    )
}

/// A strategy with `weights.pop` moved inside its bounds.
fn nudged(strategy: &Value) -> Value {
    let mut s = strategy.clone();
    let (pop, lo, hi) = (
        s["weights"]["pop"].as_f64().expect("weights.pop"),
        s["min_weights"]["pop"].as_f64().expect("min_weights.pop"),
        s["max_weights"]["pop"].as_f64().expect("max_weights.pop"),
    );
    let next = if pop + 0.05 <= hi {
        pop + 0.05
    } else {
        (pop - 0.05).max(lo)
    };
    s["weights"]["pop"] = json!(next);
    s
}

#[test]
fn api_call_forwards_with_the_admin_token() {
    let server = TestEngine::start();
    let h = Harness::new(remote_panel(&server.url(), Some(TOKEN)));

    let view = h
        .api("GET", "/v1/strategy", None)
        .expect("GET /v1/strategy is forwarded");
    assert_eq!(view["status"], 200, "{view}");
    let version = view["body"]["version"].as_u64().expect("a version");
    let strategy = view["body"]["strategy"].clone();

    // An admin route: it works only because the panel adds the token.
    let direct = attune::service::client::Client::new(server.addr, Duration::from_secs(10))
        .expect("a client")
        .request(
            "PUT",
            "/v1/strategy",
            None,
            nudged(&strategy).to_string().as_bytes(),
        )
        .expect("a direct answer");
    assert_eq!(direct.status, 401, "the admin route needs the token");
    let put = h
        .api("PUT", "/v1/strategy", Some(nudged(&strategy)))
        .expect("PUT is forwarded");
    assert_eq!(put["status"], 200, "{put}");
    let after = h.api("GET", "/v1/strategy", None).expect("GET again");
    assert_eq!(after["body"]["version"].as_u64(), Some(version + 1));

    // Non-JSON bodies come back as strings.
    let metrics = h.api("GET", "/metrics", None).expect("GET /metrics");
    assert_eq!(metrics["status"], 200);
    assert!(metrics["body"].is_string(), "{metrics}");
    let health = h.api("GET", "/healthz", None).expect("GET /healthz");
    assert_eq!(health["body"]["status"], "ok");

    // Outside the API: refused before anything is sent.
    for (method, path) in [
        ("GET", "/ui/"),
        ("GET", "/"),
        ("GET", "/v1/../ui/"),
        ("PATCH", "/v1/strategy"),
        ("GET", "/v1/strategy HTTP/1.1\r\nHost: x"),
    ] {
        let e = h.api(method, path, None).expect_err("refused");
        assert_eq!(e["code"], "bad_request", "{method} {path}: {e}");
        assert!(e["message"].is_string(), "{e}");
    }

    let info = h
        .invoke("connection_info", json!({}))
        .expect("connection_info");
    assert_eq!(info["mode"], "remote");
    assert_eq!(info["url"], server.url());
    assert_eq!(info["authenticated"], true);
    h.assert_token_never_output(TOKEN);
}

#[test]
fn an_engine_that_is_down_is_an_error_not_a_hang() {
    // A port nobody listens on: bind one, then free it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let h = Harness::new(remote_panel(&format!("http://{addr}"), Some(TOKEN)));
    let e = h
        .api("GET", "/v1/strategy", None)
        .expect_err("nobody listens");
    assert_eq!(e["code"], "unreachable", "{e}");
    h.assert_token_never_output(TOKEN);
}

#[test]
fn stream_subscribe_delivers_the_live_figures() {
    let mut server = TestEngine::start();
    let h = Harness::new(remote_panel(&server.url(), Some(TOKEN)));
    h.invoke("stream_subscribe", json!({"onEvent": "__CHANNEL__:7"}))
        .expect("subscribed");
    let connected = h.wait_event("connection", Duration::from_secs(10));
    assert_eq!(connected["data"]["state"], "connected", "{connected}");
    assert_eq!(connected["data"]["url"], server.url());
    let stats = h.wait_event("stats", Duration::from_secs(10));
    assert!(
        stats["data"]["recommendations_per_s"].is_number(),
        "{stats}"
    );
    // A second subscription replaces the first: still one reader, still figures.
    h.invoke("stream_subscribe", json!({"onEvent": "__CHANNEL__:8"}))
        .expect("subscribed again");
    h.wait_event("stats", Duration::from_secs(10));
    assert!(h.panel.is_streaming());

    // The engine stops: the stream says so.
    server.stop();
    let down = h.wait_event("connection", Duration::from_secs(20));
    assert_eq!(down["data"]["state"], "disconnected", "{down}");
    h.assert_token_never_output(TOKEN);
}

#[test]
fn connect_reads_the_token_file_on_the_rust_side() {
    let server = TestEngine::start();
    // The panel starts on the engine without a token: admin routes are refused.
    let h = Harness::new(remote_panel(&server.url(), None));
    let view = h.api("GET", "/v1/strategy", None).expect("GET");
    let strategy = view["body"]["strategy"].clone();
    let refused = h
        .api("PUT", "/v1/strategy", Some(nudged(&strategy)))
        .expect("forwarded");
    assert_eq!(refused["status"], 401, "{refused}");

    let tokens: PathBuf = server.dir.path().join("tokens.txt");
    std::fs::write(
        &tokens,
        format!("# people\nwatcher read some-read-token-0000\nops admin {TOKEN} # on call\n"),
    )
    .expect("write the token file");
    let info = h
        .invoke(
            "connect",
            json!({"url": server.url(), "tokenFile": tokens.to_string_lossy()}),
        )
        .expect("connected");
    assert_eq!(info["mode"], "remote");
    assert_eq!(info["authenticated"], true);
    let put = h
        .api("PUT", "/v1/strategy", Some(nudged(&strategy)))
        .expect("forwarded");
    assert_eq!(put["status"], 200, "{put}");

    // Token file errors name the file and the line.
    let broken = server.dir.path().join("broken.txt");
    std::fs::write(&broken, "ops admin\n").expect("write the broken file");
    let e = h
        .invoke(
            "connect",
            json!({"url": server.url(), "tokenFile": broken.to_string_lossy()}),
        )
        .expect_err("a broken token file");
    assert_eq!(e["code"], "token_file", "{e}");
    let message = e["message"].as_str().expect("a message");
    assert!(
        message.contains(&format!("{}:1:", broken.display())),
        "{message}"
    );
    let e = h
        .invoke("connect", json!({"url": "https://127.0.0.1:8443"}))
        .expect_err("no TLS");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("https is not supported yet")),
        "{e}"
    );
    // A failed connect leaves the connection as it was.
    let info = h.invoke("connection_info", json!({})).expect("info");
    assert_eq!(info["url"], server.url());
    assert_eq!(info["authenticated"], true);
    h.assert_token_never_output(TOKEN);
}

#[test]
fn a_local_store_engine_starts_serves_and_stops_gracefully() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = dir.path().join("store");
    for round in 0..2 {
        let panel = Panel::start_local(
            LocalSpec::Store(Served {
                store: store.clone(),
                model: None,
                models_dir: None,
                encoder: None,
            }),
            vec![],
        )
        .expect("the local engine starts");
        let h = Harness::new(panel);
        let info = h.invoke("connection_info", json!({})).expect("info");
        assert_eq!(info["mode"], "store");
        assert_eq!(info["model_found"], false);
        assert_eq!(info["environment"], "local");
        let view = h.api("GET", "/v1/strategy", None).expect("GET");
        assert_eq!(view["status"], 200);
        if round == 0 {
            let put = h
                .api(
                    "PUT",
                    "/v1/strategy",
                    Some(nudged(&view["body"]["strategy"])),
                )
                .expect("PUT");
            assert_eq!(put["status"], 200, "{put}");
        } else {
            // The version published before the restart is durable.
            assert!(view["body"]["version"].as_u64() >= Some(2), "{view}");
        }
        // Dropping the harness shuts the panel down: the engine stops and the store
        // closes, so the next round can open it again.
    }
}

#[test]
fn the_local_demo_serves_simulated_traffic() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let panel = Panel::start_local(
        LocalSpec::Demo(Served {
            store: dir.path().join("demo-store"),
            model: None,
            models_dir: None,
            encoder: attune::text::encoder::find_default(),
        }),
        vec!["no model checkpoint found".into()],
    )
    .expect("the demo starts");
    let h = Harness::new(panel);
    let info = h.invoke("connection_info", json!({})).expect("info");
    assert_eq!(info["mode"], "local-demo");
    assert_eq!(info["environment"], "demo");
    assert_eq!(info["model_found"], false);
    assert_eq!(info["authenticated"], true);
    h.invoke("stream_subscribe", json!({"onEvent": "__CHANNEL__:3"}))
        .expect("subscribed");
    // The simulated users' requests show in the live figures.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = h.wait_event("stats", Duration::from_secs(10));
        if stats["data"]["recommendations_per_s"].as_f64() > Some(0.0) {
            break;
        }
        assert!(Instant::now() < until, "no recommendations: {stats}");
    }
    let info = h.api("GET", "/v1/info", None).expect("GET /v1/info");
    assert_eq!(info["status"], 200, "{info}");
    assert_eq!(info["body"]["environment"], "demo");
    // With the fetched encoder, the Sessions and Strategy pages' "find items by text"
    // reaches it through the panel, once the catalogue is embedded.
    if info["body"]["text"]["state"] == "on" {
        let until = Instant::now() + Duration::from_secs(120);
        while h.api("GET", "/v1/info", None).expect("info")["body"]["text"]["pending"] != 0 {
            assert!(
                Instant::now() < until,
                "the demo catalogue was not embedded in 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let found = h
            .api(
                "GET",
                "/v1/items/search?q=a%20warm%20winter%20jacket&k=5",
                None,
            )
            .expect("search");
        assert_eq!(found["status"], 200, "{found}");
        let items = found["body"]["items"].as_array().expect("items");
        assert_eq!(items.len(), 5, "{found}");
        assert!(
            items
                .iter()
                .filter(|m| m["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "outerwear")))
                .count()
                >= 4,
            "{found}"
        );
    } else {
        assert!(
            std::env::var("ATTUNE_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "the demo runs without its text encoder under ATTUNE_REQUIRE_TOOLS=1: {info}"
        );
    }
    // The panel shuts down (the harness drops): the demo stops and its store closes.
}
