//! Offline replay of logged sessions (`attune replay`, `POST /v1/replay`): "what would
//! strategy B have done on last week's traffic?"
//!
//! The logged events are fed, in time order, through a fresh [`Engine`] per strategy
//! (the serving code path: session actors, the batching inference actor, the learner),
//! over a scratch store. Before each positive event (a click, cart or purchase, a rating
//! at or above the like threshold, or any interaction when the data holds only views)
//! the engine is asked for the user's top-k, and the rank of the event's item in it is
//! recorded; then the event is recorded, answering that recommendation, so the learner
//! learns exactly as it would live (prequential evaluation).
//!
//! **Rounds.** To use the batching inference actor, events are processed in rounds: a
//! round holds the earliest pending event of up to `round` distinct users (each user's
//! events stay in order; an event may move ahead of at most `lookahead` earlier events of
//! other users). A round's recommendations are asked together, then its events are
//! recorded, then the learner applies the round (the engine runs in deterministic mode:
//! its learner applies messages in a canonical order at these points). So two runs with
//! the same seed give identical figures, whatever the threads do.
//!
//! For a store written by `attune serve`, the impressions in its log are the moments
//! recommendations were served: the replay asks for a slate of the same size there and
//! reports how often it equals the one served (`served_agreement`).
//!
//! [`Engine`]: crate::engine::Engine

pub mod compare;
mod config;
mod figures;
mod log;
#[cfg(feature = "report")]
pub mod report;
mod rounds;
mod run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::engine::strategy::Strategy;
use crate::error::Result;

pub use config::{strategy_file, ReplayConfig};
pub use figures::{Figures, ReplayReport, StrategyReport, WeightsAt, Window};
pub use log::{Log, Source, LIKE_THRESHOLD};
use run::replay_one;

/// One strategy's result, as its thread leaves it.
type Slot = std::sync::Mutex<Option<Result<(StrategyReport, u64)>>>;

/// Progress of a replay: events done and total, over all strategies.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Replays `log` with every strategy of `cfg` (in parallel up to `cfg.parallel`).
/// `stop` ends the replay early (the report is then marked partial); `progress` gets
/// (events done, events in all) over all strategies.
pub fn replay(
    log: &Log,
    cfg: &ReplayConfig,
    stop: &AtomicBool,
    progress: Progress<'_>,
) -> Result<ReplayReport> {
    cfg.validate()?;
    let started = Instant::now();
    let mut strategies = if cfg.strategies.is_empty() {
        vec![Strategy::default()]
    } else {
        cfg.strategies.clone()
    };
    // Names tell the strategies apart in the report.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, s) in strategies.iter_mut().enumerate() {
        if s.name.is_empty() {
            s.name = format!("strategy{}", i + 1);
        }
        let c = seen.entry(s.name.clone()).or_default();
        *c += 1;
        if *c > 1 {
            s.name = format!("{}#{}", s.name, c);
        }
    }
    let total = (log.events.len() * strategies.len()) as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let tick = |n: u64| {
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        progress(d, total);
    };
    let parallel = cfg.parallel.clamp(1, strategies.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<Slot> = (0..strategies.len())
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(strategy) = strategies.get(i) else {
                    break;
                };
                let r = replay_one(log, strategy, cfg, stop, &tick);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    let mut reports = Vec::new();
    let mut events = u64::MAX;
    for slot in slots {
        let Some(r) = slot.into_inner().unwrap_or_else(|e| e.into_inner()) else {
            continue;
        };
        let (report, done) = r?;
        events = events.min(done);
        reports.push(report);
    }
    let events = if reports.is_empty() { 0 } else { events };
    let comparisons: Vec<compare::Comparison> = reports
        .iter()
        .skip(1)
        .map(|s| {
            compare::compare(
                (&reports[0].name, &reports[0].per_user),
                (&s.name, &s.per_user),
                cfg.seed,
            )
        })
        .collect();
    let verdict = compare::verdict(&comparisons, cfg.k);
    Ok(ReplayReport {
        source: log.name.clone(),
        events,
        seconds: started.elapsed().as_secs_f64(),
        k: cfg.k,
        partial: events < log.events.len() as u64,
        strategies: reports,
        comparisons,
        verdict,
    })
}

#[cfg(test)]
mod tests;
