//! `attune crash-test` (kill -9 a writer, check every acknowledged event survived) and its
//! hidden child, `attune append-loop`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use attune::crash_test::{self, CrashTestOptions};
use attune::store::{Store, StoreConfig};

use crate::cli::progress;
use crate::cli::{AppendLoopArgs, CrashTestArgs};

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
        full_check_every: crash_test::FULL_CHECK_EVERY,
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
