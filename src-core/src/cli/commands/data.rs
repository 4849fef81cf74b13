//! The data commands: `attune import` and `attune generate`, and loading the data set
//! that `eval` and `train` read (files, a store, or the synthetic default).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use attune::import::{self, FileOutcome, Format, ImportOptions, ImportProgress};
use attune::store::{Store, StoreConfig};
use attune::synth::{Generator, SynthConfig};
use attune::wire;

use crate::cli::progress;
use crate::cli::{DataArgs, GenerateArgs, ImportArgs};

/// Users generated per parallel chunk (bounds memory while streaming).
const GENERATE_CHUNK: usize = 4096;

pub fn import(a: ImportArgs) -> Result<()> {
    let format: Format = a.format.parse()?;
    let store = Store::open(&a.store, StoreConfig::default())
        .with_context(|| format!("opening store {}", a.store.display()))?;
    let paths: Vec<&Path> = a.files.iter().map(PathBuf::as_path).collect();
    let opts = ImportOptions {
        skip_invalid: a.skip_invalid,
        ..ImportOptions::default()
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
        purchase_by_item: a.purchase_by_item,
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
pub(super) fn load_source(src: &DataArgs) -> Result<attune::data::Dataset> {
    if src.synthetic {
        return synthetic_dataset();
    }
    if let Some(dir) = &src.store {
        if !dir.exists() {
            bail!("store {} does not exist", dir.display());
        }
        let store = Store::open(dir, StoreConfig::default())
            .with_context(|| format!("opening store {}", dir.display()))?;
        return Ok(import::dataset_from_store_with(
            &store,
            src.whole_catalogue,
        )?);
    }
    let Some(format) = &src.format else {
        bail!("--data needs --format ({})", Format::NAMES);
    };
    let format: Format = format.parse()?;
    let paths: Vec<&Path> = src.data.iter().map(PathBuf::as_path).collect();
    let opts = ImportOptions {
        skip_invalid: src.skip_invalid,
        whole_catalogue: src.whole_catalogue,
    };
    Ok(import::load_dataset(&paths, format, &opts)?)
}

/// The default synthetic data set, generated in memory.
fn synthetic_dataset() -> Result<attune::data::Dataset> {
    let gen = Generator::new(SynthConfig::default())?;
    let cfg = gen.config();
    let mut b = attune::data::DatasetBuilder::new(format!(
        "synthetic (users {}, items {}, seed {})",
        cfg.users, cfg.items, cfg.seed
    ));
    for item in gen.items() {
        b.describe(item);
    }
    for u in 0..cfg.users {
        for ev in gen.user_events(u) {
            if let Some(item) = ev.action.item() {
                b.push(&ev.user, item, ev.ts, ev.action.kind(), ev.action.value());
            }
        }
    }
    Ok(b.finish())
}
