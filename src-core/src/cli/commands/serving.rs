//! The serving commands: `attune serve` and `attune demo`, and finding the checkpoint
//! they serve.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::{DemoArgs, ServeArgs};

/// The checkpoint shipped for the default synthetic world, if it is where it should be.
pub(crate) fn default_checkpoint() -> Option<PathBuf> {
    shipped_checkpoint("synthetic-default")
}

/// The checkpoint `models/NAME` shipped with the repository: here or beside the binary.
pub(crate) fn shipped_checkpoint(name: &str) -> Option<PathBuf> {
    let here = PathBuf::from("models").join(name);
    if here.join("config.json").is_file() {
        return Some(here);
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|a| a.join("models").join(name))
        .find(|p| p.join("config.json").is_file())
}

/// The default text encoder (`models/minilm-l6`, placed by `scripts/fetch-encoder.sh`),
/// if it was fetched: here or beside the binary.
pub(crate) fn default_encoder() -> Option<PathBuf> {
    attune::text::encoder::find_default()
}

/// The checkpoint `--models DIR` names: DIR itself, or one of its sub-directories.
fn pick_model(dir: &Path) -> Result<PathBuf> {
    if dir.join("config.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    let preferred = dir.join("synthetic-default");
    if preferred.join("config.json").is_file() {
        return Ok(preferred);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading --models {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    found.sort();
    found.into_iter().next().with_context(|| {
        format!(
            "--models {}: no checkpoint (a directory with config.json) in it",
            dir.display()
        )
    })
}

pub fn serve(a: ServeArgs) -> Result<()> {
    attune::os::avoid_huge_pages();
    let file = match &a.config {
        Some(p) => attune::service::config::ServeFile::load(p)?,
        None => attune::service::config::ServeFile::default(),
    };
    let store = a
        .store
        .clone()
        .or(file.store.clone())
        .context("no store: give --store DIR (or `store = \"DIR\"` in the --config file)")?;
    let models_dir = a.models.clone().or(file.models.clone());
    let model = match &models_dir {
        Some(d) => Some(pick_model(d)?),
        None => None,
    };
    let mut engine_cfg = file.engine(store.clone(), model.clone())?;
    if a.no_encoder {
        engine_cfg.encoder = None;
    } else if let Some(dir) = &a.encoder {
        engine_cfg.encoder = Some(dir.clone());
    } else if engine_cfg.encoder.is_none() {
        engine_cfg.encoder = default_encoder();
    }
    if let Some(dtype) = a.score_dtype {
        engine_cfg.score_dtype = dtype;
    }
    if let Some(n) = a.ann_min_items {
        engine_cfg.ann_min_items = n;
    }
    if let Some(ef) = a.ann_ef {
        engine_cfg.ann_ef = ef;
    }
    let engine = attune::Engine::open(engine_cfg)
        .with_context(|| format!("opening the engine on {}", store.display()))?;
    let defaults = attune::service::ServeConfig::default();
    let cfg = attune::service::ServeConfig {
        bind: a.bind.or(file.bind).unwrap_or(defaults.bind),
        token_file: a.token_file.clone().or(file.token_file.clone()),
        body_limit: a
            .body_limit
            .or(file.body_limit)
            .unwrap_or(defaults.body_limit),
        // A single checkpoint directory has no siblings to choose from.
        models_dir: models_dir.filter(|d| !d.join("config.json").is_file()),
        stream_every: file.stream_every().unwrap_or(defaults.stream_every),
        workers: a.workers.or(file.workers).unwrap_or(defaults.workers),
        environment: a
            .environment
            .clone()
            .or(file.environment.clone())
            .unwrap_or(defaults.environment),
        quiet: false,
    };
    let system = actix_web::rt::System::new();
    system.block_on(attune::service::serve(engine, cfg, |addr| {
        println!("listening on http://{addr}");
        println!("console http://{addr}/ui/");
        if let Some(m) = &model {
            println!("model {}", m.display());
        }
        let _ = std::io::stdout().flush();
    }))?;
    println!("stopped");
    Ok(())
}

pub fn demo(a: DemoArgs) -> Result<()> {
    // The demo serves, as `attune serve` does.
    attune::os::avoid_huge_pages();
    let model = pick_model(&a.models).with_context(|| {
        format!(
            "the demo serves the shipped checkpoint: run it from the repository root, or pass --models DIR (looked in {})",
            a.models.display()
        )
    })?;
    let summary = attune::demo::run(attune::demo::DemoConfig {
        store: a.store,
        models_dir: Some(a.models.clone()).filter(|d| !d.join("config.json").is_file()),
        model: Some(model),
        bind: a.bind,
        rate: a.rate,
        clients: a.clients,
        seconds: a.seconds,
        change_after_s: a.change_after,
        seed: a.seed,
        token_file: a.token_file,
        quiet: false,
        encoder: if a.no_encoder {
            None
        } else {
            a.encoder.clone().or_else(default_encoder)
        },
    })?;
    println!(
        "demo stopped after {:.0} s: {} recommendations, {} event posts, {} errors, reward {:.0}, recommendation latency over HTTP p50 {:.2} ms, p99 {:.2} ms",
        summary.seconds,
        summary.recommendations,
        summary.event_posts,
        summary.errors,
        summary.reward,
        summary.p50_ms,
        summary.p99_ms
    );
    Ok(())
}
