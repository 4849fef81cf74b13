//! The engine the panel runs in-process when it is not pointed at a remote one: either
//! `attune demo` (a synthetic store and simulated users) or a store directory served as
//! `attune serve` would, both on 127.0.0.1 with a free port. The engine runs on a thread
//! of its own with its own actix `System`; stopping it resolves the service's stop
//! future, so requests in flight finish, sessions are persisted and the store flushes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::PanelError;
use crate::token::AdminToken;

/// How long the engine may take to listen (the demo's first run fills its store).
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Which local engine to run.
#[derive(Debug, Clone)]
pub enum LocalSpec {
    /// `attune demo` over this store (filled with synthetic data when empty).
    Demo(Served),
    /// `attune serve` over this store, with no simulated traffic.
    Store(Served),
}

/// What a local engine serves.
#[derive(Debug, Clone)]
pub struct Served {
    pub store: PathBuf,
    /// The checkpoint to serve (none: baselines only).
    pub model: Option<PathBuf>,
    /// The directory of checkpoints `GET /v1/models` lists.
    pub models_dir: Option<PathBuf>,
    /// The sentence encoder behind the `text` source and "find items by text" (none: off).
    pub encoder: Option<PathBuf>,
}

impl LocalSpec {
    /// The environment label the engine is started with.
    pub fn environment(&self) -> &'static str {
        match self {
            LocalSpec::Demo(_) => "demo",
            LocalSpec::Store(_) => "local",
        }
    }
}

/// A running local engine. Dropping it stops the engine and waits for it.
pub struct LocalEngine {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A local engine that listens, with its admin token.
pub struct Started {
    pub engine: LocalEngine,
    pub addr: SocketAddr,
    pub token: AdminToken,
}

type Bound = Result<(SocketAddr, String), String>;

/// Starts the engine on its own thread and waits until it listens.
pub fn start(spec: LocalSpec) -> Result<Started, PanelError> {
    let (bound_tx, bound_rx) = mpsc::channel::<Bound>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Resolves when the panel stops the engine, or when the panel is gone.
    let until = async move {
        let _ = stop_rx.await;
    };
    let announce = bound_tx.clone();
    let on_bound = move |addr: SocketAddr, token: &str| {
        let _ = announce.send(Ok((addr, token.to_string())));
    };
    let environment = spec.environment();
    let thread = std::thread::Builder::new()
        .name("attune-engine".into())
        .spawn(move || {
            let ran = match spec {
                LocalSpec::Demo(s) => run_demo(s, on_bound, until),
                LocalSpec::Store(s) => run_store(s, environment, on_bound, until),
            };
            match ran {
                Ok(()) => tracing::info!("local engine stopped"),
                Err(e) => {
                    tracing::error!(error = %e, "local engine failed");
                    // Heard only when it failed before listening.
                    let _ = bound_tx.send(Err(e.to_string()));
                }
            }
        })
        .map_err(|e| PanelError::LocalEngine(format!("cannot start its thread: {e}")))?;
    let mut engine = LocalEngine {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match bound_rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok((addr, token))) => {
            engine.addr = addr;
            tracing::info!(%addr, "local engine listening");
            Ok(Started {
                engine,
                addr,
                token: AdminToken::new(token),
            })
        }
        Ok(Err(e)) => Err(PanelError::LocalEngine(e)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(PanelError::LocalEngine(format!(
            "not listening after {} s",
            START_TIMEOUT.as_secs()
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(PanelError::LocalEngine(
            "its thread ended before it listened".into(),
        )),
    }
}

fn run_demo(
    s: Served,
    on_bound: impl FnOnce(SocketAddr, &str),
    until: impl std::future::Future<Output = ()> + 'static,
) -> attune::Result<()> {
    let summary = attune::demo::run_until(
        attune::demo::DemoConfig {
            store: s.store,
            model: s.model,
            models_dir: s.models_dir,
            encoder: s.encoder,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            quiet: true,
            ..attune::demo::DemoConfig::default()
        },
        on_bound,
        until,
    )?;
    tracing::info!(
        seconds = summary.seconds,
        recommendations = summary.recommendations,
        errors = summary.errors,
        "local demo finished"
    );
    Ok(())
}

fn run_store(
    s: Served,
    environment: &str,
    on_bound: impl FnOnce(SocketAddr, &str),
    until: impl std::future::Future<Output = ()> + 'static,
) -> attune::Result<()> {
    let engine = attune::Engine::open(attune::EngineConfig {
        store: s.store,
        model: s.model,
        encoder: s.encoder,
        ..attune::EngineConfig::default()
    })?;
    let cfg = attune::service::ServeConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        models_dir: s.models_dir,
        environment: environment.to_string(),
        // The panel holds the token; nothing goes to the terminal.
        quiet: true,
        ..attune::service::ServeConfig::default()
    };
    actix_web::rt::System::new()
        .block_on(attune::service::serve_until(engine, cfg, on_bound, until))
}

impl LocalEngine {
    /// Where the engine listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the engine gracefully and waits until it has stopped.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            tracing::info!(addr = %self.addr, "stopping the local engine");
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the local engine's thread panicked");
            }
        }
    }
}

impl Drop for LocalEngine {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The demo's default store: `$XDG_DATA_HOME/attune/demo-store`, else
/// `~/.local/share/attune/demo-store`, else `data/demo-store` (as `attune demo`).
pub fn default_demo_store() -> PathBuf {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local/share"))
        });
    match data_home {
        Some(d) => d.join("attune/demo-store"),
        None => PathBuf::from("data/demo-store"),
    }
}

/// Where to look for the shipped `models/` directory: the working directory and its
/// parents, then the executable's directory and its parents (a build under
/// `target/debug/` finds the repository's `models/`).
pub fn models_dir_candidates() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        roots.extend(dir.ancestors().map(Path::to_path_buf));
    }
    let mut seen = Vec::new();
    for r in roots {
        let m = r.join("models");
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    seen
}

/// The checkpoint to serve from a models directory, as `attune demo` picks it: the
/// directory itself if it is one, else `synthetic-default`, else the first by name.
pub fn pick_model(dir: &Path) -> Option<PathBuf> {
    if dir.join("config.json").is_file() {
        return Some(dir.to_path_buf());
    }
    let preferred = dir.join("synthetic-default");
    if preferred.join("config.json").is_file() {
        return Some(preferred);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The model and models directory a local engine serves: from `explicit` (an error when
/// it holds no checkpoint), else the first candidate directory that holds one, else none.
pub fn find_model(
    explicit: Option<&Path>,
) -> Result<(Option<PathBuf>, Option<PathBuf>), PanelError> {
    let listed = |dir: &Path| Some(dir.to_path_buf()).filter(|d| !d.join("config.json").is_file());
    if let Some(dir) = explicit {
        let model = pick_model(dir).ok_or_else(|| {
            PanelError::LocalEngine(format!(
                "--models {}: no checkpoint (a directory with config.json) in it",
                dir.display()
            ))
        })?;
        return Ok((Some(model), listed(dir)));
    }
    for dir in models_dir_candidates() {
        if let Some(model) = pick_model(&dir) {
            return Ok((Some(model), listed(&dir)));
        }
    }
    Ok((None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_preferred_checkpoint() {
        let dir = tempfile::tempdir().expect("a temp dir");
        assert_eq!(pick_model(dir.path()), None);
        for name in ["a-model", "synthetic-default"] {
            std::fs::create_dir(dir.path().join(name)).expect("a model dir");
            std::fs::write(dir.path().join(name).join("config.json"), "{}").expect("a config");
        }
        assert_eq!(
            pick_model(dir.path()),
            Some(dir.path().join("synthetic-default"))
        );
        let (model, listed) = find_model(Some(dir.path())).expect("a checkpoint");
        assert_eq!(model, Some(dir.path().join("synthetic-default")));
        assert_eq!(listed.as_deref(), Some(dir.path()));
        let (model, listed) =
            find_model(Some(&dir.path().join("a-model"))).expect("one checkpoint");
        assert_eq!(model, Some(dir.path().join("a-model")));
        assert_eq!(listed, None);
        let empty = tempfile::tempdir().expect("a temp dir");
        assert!(find_model(Some(empty.path())).is_err());
    }
}
