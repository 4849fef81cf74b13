//! The subcommands' bodies.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use attune::crash_test::{self, CrashTestOptions};
use attune::eval::{self, Split};
use attune::import::{self, FileOutcome, Format, ImportOptions, ImportProgress};
use attune::store::{Store, StoreConfig};
use attune::synth::{Generator, SynthConfig};
use attune::wire;

use super::progress;
use super::{
    AppendLoopArgs, CrashTestArgs, DataArgs, DemoArgs, EvalArgs, GenerateArgs, ImportArgs,
    ReplayArgs, ServeArgs, SimulateArgs, TrainArgs,
};
use attune::model::train::{TrainConfig, TrainEvent};
use attune::model::Config as ModelConfig;

/// Users generated per parallel chunk (bounds memory while streaming).
const GENERATE_CHUNK: usize = 4096;

pub fn import(a: ImportArgs) -> Result<()> {
    let format: Format = a.format.parse()?;
    let store = Store::open(&a.store, StoreConfig::default())
        .with_context(|| format!("opening store {}", a.store.display()))?;
    let paths: Vec<&Path> = a.files.iter().map(PathBuf::as_path).collect();
    let opts = ImportOptions {
        skip_invalid: a.skip_invalid,
    };
    let started = Instant::now();
    let mut bar: Option<(String, bool, indicatif::ProgressBar)> = None;
    let outcomes = import::import_files(&store, &paths, format, &opts, &mut |p| {
        let (file, writing, done, total) = match p {
            ImportProgress::Parsing { file, done, total } => (file, false, done, total),
            ImportProgress::Writing { file, done, total } => (file, true, done, total),
        };
        let fresh = !matches!(&bar, Some((f, w, _)) if *f == file && *w == writing);
        if fresh {
            if let Some((_, _, b)) = bar.take() {
                b.finish_and_clear();
            }
            let b = if writing {
                progress::count(total, format!("writing {file}"))
            } else {
                progress::bytes(total, format!("parsing {file}"))
            };
            bar = Some((file, writing, b));
        }
        if let Some((_, _, b)) = &bar {
            b.set_position(done);
        }
    });
    if let Some((_, _, b)) = bar.take() {
        b.finish_and_clear();
    }
    let outcomes = outcomes?;
    let secs = started.elapsed().as_secs_f64();
    let mut lines_total = 0;
    for o in &outcomes {
        match o {
            FileOutcome::Imported {
                record,
                lines,
                skipped,
            } => {
                lines_total += lines;
                println!(
                    "imported {}: {} events, {} catalogue records from {} lines",
                    record.file, record.events, record.items, lines
                );
                if skipped.lines > 0 {
                    println!("  skipped {} invalid lines:", skipped.lines);
                    for (reason, n) in &skipped.reasons {
                        println!("    {n:>8}  {reason}");
                    }
                    for ex in &skipped.examples {
                        println!("    e.g. {ex}");
                    }
                }
            }
            FileOutcome::AlreadyImported { message, .. } => println!("skipped: {message}"),
        }
    }
    println!(
        "store {}: {} events, {} users, {} items ({:.2} s, {:.0} lines/s)",
        a.store.display(),
        store.next_seq(),
        store.n_users(),
        store.n_items(),
        secs,
        lines_total as f64 / secs.max(1e-9)
    );
    store.close()?;
    Ok(())
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    let mut cfg = SynthConfig {
        users: a.users,
        items: a.items,
        seed: a.seed,
        ..SynthConfig::default()
    };
    if let Some(s) = a.sessions {
        cfg.sessions_per_user = s;
    }
    let gen = Generator::new(cfg)?;
    let started = Instant::now();
    let bar = progress::count(a.users as u64, "generating users");
    let mut events = 0u64;
    match (&a.out, &a.store) {
        (Some(out), _) => {
            // Write to a temporary file and rename, so a failed run leaves no half file.
            let tmp = out.with_extension("jsonl.partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = BufWriter::new(file);
            for item in gen.items() {
                writeln!(w, "{}", wire::item_to_json(&item))?;
            }
            for start in (0..a.users).step_by(GENERATE_CHUNK) {
                let end = (start + GENERATE_CHUNK).min(a.users);
                let lines: Vec<String> = (start..end)
                    .into_par_iter()
                    .map(|u| {
                        let mut s = String::new();
                        for ev in gen.user_events(u) {
                            s.push_str(&wire::event_to_json(&ev).to_string());
                            s.push('\n');
                        }
                        s
                    })
                    .collect();
                for chunk in lines {
                    events += chunk.bytes().filter(|&b| b == b'\n').count() as u64;
                    w.write_all(chunk.as_bytes())?;
                }
                bar.set_position(end as u64);
            }
            w.into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, out)
                .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
        }
        (None, Some(dir)) => {
            let store = Store::open(dir, StoreConfig::default())
                .with_context(|| format!("opening store {}", dir.display()))?;
            let items: Vec<_> = gen.items().collect();
            store.put_items(&items)?;
            for start in (0..a.users).step_by(GENERATE_CHUNK) {
                let end = (start + GENERATE_CHUNK).min(a.users);
                let batch: Vec<_> = (start..end)
                    .into_par_iter()
                    .flat_map_iter(|u| gen.user_events(u))
                    .collect();
                events += batch.len() as u64;
                store.append(&batch)?;
                bar.set_position(end as u64);
            }
            store.close()?;
        }
        (None, None) => bail!("give --out FILE or --store DIR"),
    }
    bar.finish_and_clear();
    let target = a
        .out
        .as_ref()
        .or(a.store.as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!(
        "generated {} users, {} items, {events} events into {target} in {:.2} s (seed {})",
        a.users,
        a.items,
        started.elapsed().as_secs_f64(),
        a.seed
    );
    Ok(())
}

/// Loads the data set a command reads: files, a store, or the synthetic default.
fn load_source(src: &DataArgs) -> Result<attune::data::Dataset> {
    if src.synthetic {
        return synthetic_dataset();
    }
    if let Some(dir) = &src.store {
        if !dir.exists() {
            bail!("store {} does not exist", dir.display());
        }
        let store = Store::open(dir, StoreConfig::default())
            .with_context(|| format!("opening store {}", dir.display()))?;
        return Ok(import::dataset_from_store(&store)?);
    }
    let Some(format) = &src.format else {
        bail!("--data needs --format ({})", Format::NAMES);
    };
    let format: Format = format.parse()?;
    let paths: Vec<&Path> = src.data.iter().map(PathBuf::as_path).collect();
    let opts = ImportOptions {
        skip_invalid: src.skip_invalid,
    };
    Ok(import::load_dataset(&paths, format, &opts)?)
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let split: Split = a.split.parse()?;
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let dataset = load_source(&a.source)?;
    let item_names = dataset.item_names.clone();
    let device = attune::model::device("auto")?;
    let report = eval::evaluate_with(&dataset, &a.models, a.k, split, |name, train| {
        match attune::model::train::seq_spec(name) {
            Some(dir) => {
                let ck = attune::model::Checkpoint::load(&dir, &device, candle_core::DType::F32)?;
                Ok(Box::new(attune::model::scorer::SeqScorer::new(
                    name,
                    ck,
                    &item_names,
                )))
            }
            None => attune::baselines::fit(name, train),
        }
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

pub fn train(a: TrainArgs) -> Result<()> {
    let dataset = load_source(&a.source)?;
    let cfg = TrainConfig {
        model: ModelConfig {
            dim: a.dim,
            layers: a.layers,
            heads: a.heads,
            max_len: a.max_len,
            dropout: a.dropout,
            negatives: a.negatives,
            ..ModelConfig::default()
        },
        epochs: a.epochs,
        lr: a.lr,
        weight_decay: a.weight_decay,
        batch: a.batch,
        seed: a.seed,
        patience: a.patience,
        eval_every: a.eval_every,
        max_minutes: a.max_minutes,
        device: a.device.clone(),
        window_stride: a.window_stride,
        refit: a.refit,
        lr_schedule: a.lr_schedule.clone(),
    };
    eprintln!(
        "training on {}: {} users, {} items, {} interactions",
        dataset.name,
        dataset.users.len(),
        dataset.n_items(),
        dataset.n_interactions()
    );
    let bar = progress::count(0, "epoch 1");
    let report =
        attune::model::train::train(&dataset, &cfg, &a.out, a.resume, &mut |ev| match ev {
            TrainEvent::Batch {
                epoch,
                done,
                total,
                loss,
            } => {
                if done == 1 {
                    bar.set_length(total as u64);
                    bar.reset();
                }
                bar.set_message(format!("epoch {epoch} loss {loss:.4}"));
                bar.set_position(done as u64);
            }
            TrainEvent::Epoch(log) => {
                let val = log
                    .validation
                    .map(|v| format!("val HR@10 {:.4} NDCG@10 {:.4}", v.hr, v.ndcg))
                    .unwrap_or_default();
                let line = format!(
                    "epoch {:>3}  loss {:.4}  {val}  ({:.0} s)",
                    log.epoch, log.loss, log.elapsed
                );
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            TrainEvent::Refit {
                epoch,
                epochs,
                loss,
            } => {
                let line = format!("refit epoch {epoch:>3} of {epochs}  loss {loss:.4}");
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            TrainEvent::Testing => bar.set_message("ranking the test targets"),
        });
    bar.finish_and_clear();
    let r = report?;
    println!(
        "best epoch {} of {}{}: validation HR@10 {:.4} NDCG@10 {:.4}; test HR@10 {:.4} NDCG@10 {:.4} MRR {:.4}; {:.1} s; saved to {}",
        r.best_epoch,
        r.epochs_run,
        r.refit_epochs
            .map_or(String::new(), |e| format!(" (test: the model refit for {e} epochs)")),
        r.validation.hr,
        r.validation.ndcg,
        r.test.hr,
        r.test.ndcg,
        r.test.mrr,
        r.seconds,
        a.out.display()
    );
    Ok(())
}

/// The default synthetic data set, generated in memory.
fn synthetic_dataset() -> Result<attune::data::Dataset> {
    let gen = Generator::new(SynthConfig::default())?;
    let cfg = gen.config();
    let mut b = attune::data::DatasetBuilder::new(format!(
        "synthetic (users {}, items {}, seed {})",
        cfg.users, cfg.items, cfg.seed
    ));
    for u in 0..cfg.users {
        for ev in gen.user_events(u) {
            if let Some(item) = ev.action.item() {
                b.push(&ev.user, item, ev.ts, ev.action.kind(), ev.action.value());
            }
        }
    }
    Ok(b.finish())
}

pub fn crash_test(a: CrashTestArgs) -> Result<()> {
    let own_dir = a.dir.is_none();
    let dir = match a.dir {
        Some(d) => d,
        None => tempdir()?,
    };
    let opts = CrashTestOptions {
        exe: std::env::current_exe().context("locating the attune executable")?,
        dir: dir.clone(),
        rounds: a.rounds,
        writers: a.writers,
        seed: a.seed,
        max_kill_after: std::time::Duration::from_millis(300),
    };
    let bar = progress::count(a.rounds as u64, "kill -9 rounds");
    let report = crash_test::run_crash_test(&opts, |round, _| bar.set_position(round as u64 + 1));
    bar.finish_and_clear();
    let report =
        report.with_context(|| format!("the store is kept for inspection in {}", dir.display()))?;
    if own_dir {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    println!(
        "crash test passed: {} rounds, {} acknowledged appends, {} events in {}; every acknowledged event survived",
        report.rounds,
        report.acks,
        report.events,
        dir.display()
    );
    Ok(())
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("attune-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub fn append_loop(a: AppendLoopArgs) -> Result<()> {
    let store = Store::open(&a.store, StoreConfig::default())?;
    crash_test::append_loop(&store, a.writers, &a.tag, std::io::stdout())?;
    Ok(())
}

/// The checkpoint shipped for the default synthetic world, if it is where it should be.
pub(crate) fn default_checkpoint() -> Option<PathBuf> {
    let here = PathBuf::from("models/synthetic-default");
    if here.join("config.json").is_file() {
        return Some(here);
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|a| a.join("models/synthetic-default"))
        .find(|p| p.join("config.json").is_file())
}

pub fn simulate(a: SimulateArgs) -> Result<()> {
    // A serving workload (see `avoid_huge_pages`): 9.1-9.7 s instead of 10.3-11.2 s for
    // the default simulation, 147 MB peak RSS instead of 195 MB.
    attune::os::avoid_huge_pages();
    let mut strategies = Vec::new();
    for path in &a.strategies {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading strategy {}", path.display()))?;
        let mut s = attune::engine::strategy::Strategy::from_json(&text)
            .with_context(|| format!("strategy {}", path.display()))?;
        if s.name.is_empty() || s.name == "default" {
            s.name = path
                .file_stem()
                .map_or_else(|| "strategy".into(), |n| n.to_string_lossy().into_owned());
        }
        strategies.push(s);
    }
    let default_world = a.items == 500 && a.seed == 42;
    let model = if a.no_model {
        None
    } else if a.model.is_some() {
        a.model.clone()
    } else if default_world {
        default_checkpoint()
    } else {
        None
    };
    let cfg = attune::simulate::SimConfig {
        steps: a.steps,
        users: a.users,
        items: a.items,
        seed: a.seed,
        k: a.k,
        model: model.clone(),
        strategies,
        change_at: a.change_at,
        ..Default::default()
    };
    let n = if cfg.strategies.is_empty() {
        2
    } else {
        cfg.strategies.len()
    };
    let bar = progress::count((a.steps * n) as u64, "simulating");
    let started = Instant::now();
    let report = attune::simulate::simulate(&cfg, &mut |s, step| {
        bar.set_position((s * a.steps + step) as u64);
    })?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{} steps per strategy, {} users, {} items, seed {}, model {}, tastes change at {:.0}% ({:.1} s)",
        a.steps,
        a.users,
        a.items,
        a.seed,
        model.map_or_else(|| "none".into(), |m| m.display().to_string()),
        a.change_at * 100.0,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<12} {:>10} {:>8} {:>9} {:>14} {:>14}  weights at the end (seq like purchase itemknn markov pop)",
        "strategy", "reward", "ctr", "purchases", "before change", "after change"
    );
    for s in &report.strategies {
        let w = s.weights_end;
        println!(
            "{:<12} {:>10.0} {:>8.3} {:>9} {:>14.0} {:>14.0}  {:.2} {:.2} {:.2} {:.2} {:.2} {:.2}",
            s.name,
            s.reward,
            s.ctr,
            s.purchases,
            s.reward_before_change,
            s.reward_after_change,
            w.seq,
            w.like,
            w.purchase,
            w.itemknn,
            w.markov,
            w.pop
        );
    }
    if let [first, second, ..] = report.strategies.as_slice() {
        if second.reward > 0.0 {
            println!(
                "{} earns {:+.1}% reward against {}",
                first.name,
                (first.reward / second.reward - 1.0) * 100.0,
                second.name
            );
        }
    }
    Ok(())
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
    let engine_cfg = file.engine(store.clone(), model.clone())?;
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

/// Parses `--from`/`--to`: Unix seconds, or `YYYY-MM-DD[THH:MM:SS]` in UTC; ms since the
/// epoch.
fn parse_time(flag: &str, s: &str) -> Result<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    let bad = || anyhow::anyhow!("--{flag} {s:?}: expected Unix seconds or YYYY-MM-DD[THH:MM:SS]");
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let t: Vec<i64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || *ss > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000)
}

pub fn replay(a: ReplayArgs) -> Result<()> {
    use attune::replay::{self, Log, ReplayConfig, Source};
    // Ctrl-C stops the replay after its current round; the report covers what ran.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        eprintln!("\nstopping after the current round (Ctrl-C again to abort)");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                    std::process::exit(130);
                });
            }
        });
    }
    let source = match &a.store {
        Some(dir) => {
            if !dir.is_dir() {
                bail!("--store {}: no such store directory", dir.display());
            }
            Source::Store(dir.clone())
        }
        None => {
            let Some(format) = &a.format else {
                bail!("--data needs --format ({})", Format::NAMES);
            };
            Source::Files(a.data.clone(), format.parse()?)
        }
    };
    let strategies = a
        .strategies
        .iter()
        .map(|p| replay::strategy_file(p))
        .collect::<attune::Result<Vec<_>>>()?;
    let from = a
        .from
        .as_deref()
        .map(|s| parse_time("from", s))
        .transpose()?;
    let to = a.to.as_deref().map(|s| parse_time("to", s)).transpose()?;
    let cfg = ReplayConfig {
        strategies,
        model: a.model.clone(),
        from,
        to,
        k: a.k,
        seed: a.seed,
        round: a.round,
        lookahead: a.lookahead,
        ..ReplayConfig::default()
    };
    let t = Instant::now();
    let log = Log::read(&source, from, to)?;
    let read_s = t.elapsed().as_secs_f64();
    let n = (log.events.len() * cfg.strategies.len().max(1)) as u64;
    let bar = progress::Steps::new(n, "replaying");
    let report = replay::replay(&log, &cfg, &stop, &|done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    if let Some(dir) = &a.report {
        replay::report::write(&report, dir)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} events replayed{} in {:.1} s ({:.0} events/s per strategy; reading took {:.1} s), k = {}",
            report.source,
            report.events,
            if report.partial { " (stopped early: partial)" } else { "" },
            report.seconds,
            report.strategies.iter().map(|s| report.events as f64 / s.seconds.max(1e-9)).fold(f64::INFINITY, f64::min),
            read_s,
            report.k
        );
        println!(
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>10}",
            "strategy",
            "HR",
            "NDCG",
            "MRR",
            "coverage",
            "rankings",
            "reward",
            "p50 µs",
            "p99 µs",
            "served"
        );
        for s in &report.strategies {
            println!(
                "{:<20} {:>8.4} {:>8.4} {:>8.4} {:>8.3} {:>9} {:>9.0} {:>8.0} {:>8.0} {:>10}",
                s.name,
                s.hr,
                s.ndcg,
                s.mrr,
                s.coverage,
                s.rankings,
                s.reward,
                s.latency_p50_us,
                s.latency_p99_us,
                s.served_agreement.map_or("-".into(), |x| format!("{x:.3}"))
            );
        }
        if let Some(dir) = &a.report {
            println!("report: {}", dir.join("index.html").display());
        }
    }
    Ok(())
}
