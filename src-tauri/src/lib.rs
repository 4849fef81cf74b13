//! Attune's control panel as a desktop app (Tauri 2). The window shows the web console
//! (`ui/`); this side holds the connection to an engine (a local one it runs in-process,
//! or a remote `attune serve`) and its admin token, which never reaches JavaScript. The
//! UI reaches the engine only through the commands in [`commands`].

pub mod api;
pub mod args;
pub mod commands;
pub mod connection;
pub mod error;
pub mod http;
pub mod local_engine;
pub mod locale;
pub mod panel;
pub mod stream;
pub mod token;

use clap::Parser;
use tauri::{Manager, RunEvent, Runtime};

use crate::args::Args;
use crate::error::PanelError;
use crate::local_engine::{LocalSpec, Served};
use crate::panel::Panel;

/// Adds the panel's state and commands to a Tauri builder (the real one, or the mock
/// runtime's in tests).
pub fn app_builder<R: Runtime>(builder: tauri::Builder<R>, panel: Panel) -> tauri::Builder<R> {
    builder
        .manage(panel)
        .invoke_handler(tauri::generate_handler![
            commands::api::api_call,
            commands::stream::stream_subscribe,
            commands::connection::connection_info,
            commands::connection::connect,
        ])
}

/// Starts the engine or connection the arguments ask for.
pub fn start_panel(args: &Args) -> Result<Panel, PanelError> {
    if let Some(url) = &args.connect {
        let token_file = args
            .token_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        return Panel::start_remote(url, token_file.as_deref());
    }
    let (model, models_dir) = local_engine::find_model(args.models.as_deref())?;
    let mut notes = Vec::new();
    match &model {
        Some(m) => notes.push(format!("serving the model {}", m.display())),
        None => notes.push(
            "no model checkpoint found (looked for models/ beside the working directory and the executable; --models DIR names one): serving the baselines only"
                .into(),
        ),
    }
    let encoder = attune::text::encoder::find_default();
    match &encoder {
        Some(e) => notes.push(format!("text encoder {}", e.display())),
        None => notes.push(
            "no text encoder found (scripts/fetch-encoder.sh puts one in models/minilm-l6): finding items by text is off"
                .into(),
        ),
    }
    let spec = match &args.store {
        Some(store) => LocalSpec::Store(Served {
            store: store.clone(),
            model,
            models_dir,
            encoder,
        }),
        None => {
            let store = local_engine::default_demo_store();
            notes.push(format!("demo store {}", store.display()));
            LocalSpec::Demo(Served {
                store,
                model,
                models_dir,
                encoder,
            })
        }
    };
    Panel::start_local(spec, notes)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("attune_panel=info,attune=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The `attune-panel` program: parses the arguments, starts the engine or connection,
/// opens the window, and stops the local engine gracefully when the app exits (window
/// closed, Ctrl-C or SIGTERM).
pub fn run() {
    locale::apply_webview_locale_fix();
    let args = Args::parse();
    init_tracing();
    let panel = match start_panel(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("attune-panel: {e}");
            std::process::exit(1);
        }
    };
    let info = panel.info();
    tracing::info!(url = info.url, mode = ?info.mode, model_found = info.model_found, "engine ready");
    let app = app_builder(tauri::Builder::default(), panel.clone())
        .setup(|app| {
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                stop_signal().await;
                tracing::info!("signal received; closing");
                handle.exit(0);
            });
            if let Some(w) = app.get_webview_window("main") {
                tracing::debug!(label = w.label(), "window open");
            }
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("attune-panel: cannot open the window: {e}");
            panel.shutdown();
            std::process::exit(1);
        }
    };
    app.run(move |_app, event| {
        if let RunEvent::Exit = event {
            tracing::info!("exiting; stopping the engine");
            panel.shutdown();
        }
    });
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C closes the panel");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
