//! The panel's managed state: the connection (address and admin token, behind a lock),
//! the local engine when the panel runs one, and the live-stream reader. The commands
//! call into here; this is also where a switch of engine and the final shutdown happen.

use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::api::{ApiRequest, ApiResponse};
use crate::connection::{Connection, ConnectionInfo, Endpoint, Mode};
use crate::error::PanelError;
use crate::http;
use crate::local_engine::{self, LocalEngine, LocalSpec};
use crate::stream::{Sink, Subscription};
use crate::token::{self, AdminToken};

/// How long probing an engine on `connect` may take per request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The state `.manage()` hands to the commands: a cheap handle on shared parts.
#[derive(Clone)]
pub struct Panel {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Arc<RwLock<Connection>>,
    local: Mutex<Option<LocalEngine>>,
    /// Local engines being stopped in the background after a switch; joined on shutdown.
    retiring: Mutex<Vec<JoinHandle<()>>>,
    stream: Mutex<Option<Subscription>>,
}

impl Panel {
    /// A panel on `connection`, owning `local` when the engine runs in-process.
    pub fn new(connection: Connection, local: Option<LocalEngine>) -> Panel {
        Panel {
            inner: Arc::new(Inner {
                connection: Arc::new(RwLock::new(connection)),
                local: Mutex::new(local),
                retiring: Mutex::default(),
                stream: Mutex::default(),
            }),
        }
    }

    /// Starts a local engine (`attune demo` or a store served as `attune serve`) and a
    /// panel connected to it.
    pub fn start_local(spec: LocalSpec, notes: Vec<String>) -> Result<Panel, PanelError> {
        let (mode, model_found) = match &spec {
            LocalSpec::Demo(s) => (Mode::LocalDemo, s.model.is_some()),
            LocalSpec::Store(s) => (Mode::Store, s.model.is_some()),
        };
        let environment = spec.environment().to_string();
        let started = local_engine::start(spec)?;
        let connection = Connection {
            endpoint: Endpoint::from_addr(started.addr),
            token: Some(started.token),
            mode,
            environment: Some(environment),
            model_found,
            notes,
        };
        Ok(Panel::new(connection, Some(started.engine)))
    }

    /// A panel on a running engine at `url`, with the admin token of `token_file`.
    pub fn start_remote(url: &str, token_file: Option<&str>) -> Result<Panel, PanelError> {
        let connection = probe_remote(url, token_file)?;
        Ok(Panel::new(connection, None))
    }

    fn current(&self) -> Connection {
        self.inner
            .connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The connection as the web view may see it.
    pub fn info(&self) -> ConnectionInfo {
        self.current().info()
    }

    /// Forwards one checked call to the engine (blocking).
    pub fn api_call(&self, request: &ApiRequest) -> Result<ApiResponse, PanelError> {
        request.forward(&self.current())
    }

    /// Switches to the engine at `url` (blocking: it probes the engine first). The local
    /// engine, if any, is stopped in the background unless `url` is its own address.
    pub fn connect(
        &self,
        url: &str,
        token_file: Option<&str>,
    ) -> Result<ConnectionInfo, PanelError> {
        let endpoint = Endpoint::parse(url)?;
        let mut local = self.inner.local.lock().unwrap_or_else(|e| e.into_inner());
        let own = local
            .as_ref()
            .is_some_and(|l| Endpoint::from_addr(l.addr()) == endpoint);
        let info = if own {
            // The local engine again: keep its connection, with the file's token if given.
            let token = token_file
                .map(|f| token::read_token_file(std::path::Path::new(f)))
                .transpose()?;
            let mut c = self
                .inner
                .connection
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(t) = token {
                c.token = Some(t);
            }
            c.info()
        } else {
            let next = probe_remote(url, token_file)?;
            let info = next.info();
            *self
                .inner
                .connection
                .write()
                .unwrap_or_else(|e| e.into_inner()) = next;
            if let Some(engine) = local.take() {
                let stopping = std::thread::Builder::new()
                    .name("attune-engine-stop".into())
                    .spawn(move || engine.stop())
                    .map_err(|e| {
                        PanelError::Internal(format!("cannot stop the local engine: {e}"))
                    })?;
                self.inner
                    .retiring
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(stopping);
            }
            info
        };
        drop(local);
        if let Some(s) = self
            .inner
            .stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            s.reconnect();
        }
        tracing::info!(url = info.url, mode = ?info.mode, "connected");
        Ok(info)
    }

    /// Starts delivering the live stream to `sink`, replacing (and stopping) the previous
    /// subscription.
    pub fn subscribe(&self, sink: impl Sink) {
        let mut stream = self.inner.stream.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = stream.take() {
            old.stop();
        }
        *stream = Some(Subscription::start(
            Arc::clone(&self.inner.connection),
            sink,
        ));
    }

    /// Whether a stream reader runs.
    pub fn is_streaming(&self) -> bool {
        self.inner
            .stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(Subscription::is_running)
    }

    /// Stops the stream reader and the local engine (gracefully: the store flushes), and
    /// waits for both. Called when the app exits.
    pub fn shutdown(&self) {
        if let Some(s) = self
            .inner
            .stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            s.stop();
        }
        let local = self
            .inner
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(engine) = local {
            engine.stop();
        }
        let retiring: Vec<_> = self
            .inner
            .retiring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in retiring {
            let _ = t.join();
        }
    }
}

/// Checks that `url` answers as an Attune engine, that the token file's token (if any) is
/// accepted, and reads what the engine says about itself.
fn probe_remote(url: &str, token_file: Option<&str>) -> Result<Connection, PanelError> {
    let endpoint = Endpoint::parse(url)?;
    let token: Option<AdminToken> = token_file
        .map(|f| token::read_token_file(std::path::Path::new(f)))
        .transpose()?;
    let get = |path: &str, token: Option<&AdminToken>| {
        http::send(
            &endpoint,
            http::Request {
                method: "GET",
                path,
                token,
                body: None,
            },
            PROBE_TIMEOUT,
        )
        .map_err(|source| PanelError::Unreachable {
            url: endpoint.url(),
            source,
        })
    };
    let bad = |message: String| PanelError::BadAnswer {
        url: endpoint.url(),
        message,
    };
    let health = get("/healthz", None)?;
    if health.status != 200 {
        return Err(bad(format!(
            "GET /healthz answered {}; is this an Attune engine?",
            health.status
        )));
    }
    let json = |r: &http::Response| serde_json::from_slice::<serde_json::Value>(&r.body).ok();
    let mut notes = Vec::new();
    if let (Some(t), Some(file)) = (&token, token_file) {
        let who = get("/v1/whoami", Some(t))?;
        match who.status {
            200 => {
                let role = json(&who)
                    .and_then(|v| v["role"].as_str().map(str::to_string))
                    .unwrap_or_default();
                if role != "admin" {
                    notes.push(format!(
                        "the token of {file} has the role {role:?} here: admin routes will be refused"
                    ));
                }
            }
            401 | 403 => {
                return Err(PanelError::TokenFile(format!(
                    "{file}: the engine at {} does not accept this token",
                    endpoint.url()
                )))
            }
            // An engine without `/v1/whoami`: the token is checked on the first admin call.
            _ => {}
        }
    }
    let info = get("/v1/info", None)
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| json(&r));
    let environment = info
        .as_ref()
        .and_then(|v| v["environment"].as_str().map(str::to_string));
    let model_found = match info.as_ref().and_then(|v| v.get("model")) {
        Some(model) => !model.is_null(),
        // An engine without `/v1/info`: ask which model serves.
        None => get("/v1/models", None)
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| json(&r))
            .is_some_and(|v| !v["serving"].is_null()),
    };
    if !model_found {
        notes.push("the engine serves no attention model (baselines only)".into());
    }
    if token.is_none() {
        notes.push("no admin token: admin routes (publishing a strategy, ...) will answer 401; reconnect with a token file".into());
    }
    Ok(Connection {
        endpoint,
        token,
        mode: Mode::Remote,
        environment,
        model_found,
        notes,
    })
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The stream reader first: it reads from the engine about to stop.
        if let Some(s) = self
            .stream
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            s.stop();
        }
    }
}
