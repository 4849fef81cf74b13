//! One strategy's replay: a fresh engine over a scratch store, the rounds of
//! recommendations and recorded events, and the figures they give.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::compare;
use super::config::ReplayConfig;
use super::figures::{Acc, StrategyReport, WeightsAt, Window};
use super::log::{Log, LIKE_THRESHOLD};
use super::rounds::Rounds;
use crate::engine::strategy::Strategy;
use crate::engine::{Engine, EngineConfig, RecommendOptions, Recommendation};
use crate::error::{Error, Result};
use crate::event::{Action, EventKind, Timestamp};
use crate::store::{Store, StoreConfig};

/// The rank (from 1) of `item` in a recommendation, if it is there.
fn rank_of(rec: &Recommendation, item: &str) -> Option<usize> {
    rec.items.iter().position(|i| i.item == item).map(|p| p + 1)
}

/// Replays `log` with one strategy on a fresh engine over a scratch store.
pub(super) fn replay_one(
    log: &Log,
    strategy: &Strategy,
    cfg: &ReplayConfig,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(StrategyReport, u64)> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let store_dir = dir.path().join("store");
    let store_config = StoreConfig {
        fsync: false,
        ..StoreConfig::default()
    };
    {
        // The catalogue first, in a fixed order: dense item ids (and so ties) are the
        // same in every run.
        let store = Store::open(&store_dir, store_config.clone())?;
        store.put_items(&log.items)?;
        store.close()?;
    }
    // A replay asks each round's recommendations together and nothing comes after them
    // until they are answered: a batch that waits for more requests to fill (the
    // strategy's `max_queue_delay_us`) only adds that wait to every round, 7 s of 45 on
    // the ml-1m subset. Batching changes no figure here, only when a batch leaves.
    let mut serving = strategy.clone();
    serving.batching.max_queue_delay_us = 0;
    let engine = Engine::open(EngineConfig {
        store: store_dir,
        store_config,
        model: cfg.model.clone(),
        score_dtype: cfg.score_dtype,
        // With a warm-up, fine-tuning starts where the ranking does (`run_rounds`).
        finetune_every: if cfg.warm_until.is_some() {
            0
        } else {
            cfg.finetune_every
        },
        strategy: serving,
        seed: cfg.seed,
        deterministic: true,
        // Every round waits on the learner and the indexer: nothing here is background
        // work that requests should win against (the default, SCHED_IDLE, put them last
        // on the critical path).
        background_priority: crate::os::BackgroundPriority::Normal,
        // Nothing is evicted during a replay (an evicted state is restored only to 1e-4).
        session_ttl_s: 1e9,
        session_budget_bytes: u64::MAX,
        ..EngineConfig::default()
    })?;
    let result = run_rounds(log, strategy, cfg, &engine, stop, progress);
    let shutdown = futures_executor::block_on(engine.shutdown());
    let (mut report, done) = result?;
    shutdown?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok((report, done))
}

/// Ends a time window: its figures, and the weights in force at its end.
fn close_window(
    windows: &mut Vec<Window>,
    weights: &mut Vec<WeightsAt>,
    win: &mut Acc,
    done: usize,
    ts_to: Timestamp,
    engine: &Engine,
) {
    windows.push(Window {
        events_to: done as u64,
        ts_to,
        figures: std::mem::take(win).figures(),
    });
    weights.push(WeightsAt {
        events: done as u64,
        weights: engine.strategy().weights,
    });
}

fn run_rounds(
    log: &Log,
    strategy: &Strategy,
    cfg: &ReplayConfig,
    engine: &Engine,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(StrategyReport, u64)> {
    let events = &log.events;
    let n = events.len();
    // Events before `warm_until` are recorded but not ranked: the windows split the rest.
    let scored = |i: usize| cfg.warm_until.is_none_or(|t| events[i].ts >= t);
    let n_scored = (0..n).filter(|&i| scored(i)).count();
    if n_scored == 0 {
        return Err(crate::error::Error::config(
            "warm_until",
            "no event at or after it: nothing would be ranked",
        ));
    }
    let window_len = n_scored.div_ceil(cfg.windows).max(1);
    let mut scored_done = 0usize;
    let mut finetuning = cfg.warm_until.is_none();
    let mut rounds = Rounds::new(events);
    let points = log.rank_points();
    // The recommendation each user's open interaction answers: (item, request id).
    let mut answering: HashMap<String, (String, String)> = HashMap::new();
    let (mut total, mut win) = (Acc::default(), Acc::default());
    let mut windows = Vec::new();
    let mut weights = Vec::new();
    let mut recommended: HashSet<String> = HashSet::new();
    let (mut served, mut agreed) = (0u64, 0u64);
    let mut reward = 0.0f64;
    let mut per_user = compare::PerUser::new();
    let r = &strategy.reward;
    let mut done = 0usize;
    // The window boundary falls on the events replayed so far (rounds may straddle it).
    let mut next_window = window_len;
    let mut last_ts = events.first().map_or(0, |e| e.ts);
    while done < n {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let batch = rounds.next(cfg.round, cfg.lookahead);
        if batch.is_empty() {
            break;
        }
        if !finetuning && batch.iter().any(|&i| scored(i)) {
            // The warm-up is over (the learner has applied it: rounds end in a sync).
            engine.set_finetune_every(cfg.finetune_every)?;
            finetuning = true;
        }
        // 1. The recommendations: before each positive event, and at each served
        //    impression (a slate of the same size).
        let asks: Vec<(usize, usize)> = batch
            .iter()
            .filter_map(|&i| {
                let ev = &events[i];
                if !scored(i) {
                    return None;
                }
                match &ev.action {
                    Action::Impression(imp) => Some((i, imp.items.len().clamp(1, 1000))),
                    _ if points[i].is_some() => Some((i, cfg.k)),
                    _ => None,
                }
            })
            .collect();
        let answers: Vec<Result<Recommendation>> = futures_executor::block_on(
            futures_util::future::join_all(asks.iter().map(|&(i, k)| {
                engine.recommend(
                    &events[i].user,
                    k,
                    RecommendOptions {
                        log_impression: true,
                        ..RecommendOptions::default()
                    },
                )
            })),
        );
        for (&(i, _), answer) in asks.iter().zip(answers) {
            let rec = answer?;
            let ev = &events[i];
            match &ev.action {
                Action::Impression(imp) => {
                    served += 1;
                    let slate: Vec<&str> = rec.items.iter().map(|x| x.item.as_str()).collect();
                    if slate == imp.items.iter().map(String::as_str).collect::<Vec<_>>() {
                        agreed += 1;
                    }
                }
                action => {
                    let item = action.item().map(String::as_str).unwrap_or_default();
                    let rank = rank_of(&rec, item);
                    total.add(rank);
                    win.add(rank);
                    let mine = per_user.entry(ev.user.clone()).or_default();
                    mine.rankings += 1.0;
                    if let Some(r1) = rank {
                        mine.hits += 1.0;
                        mine.ndcg += 1.0 / ((r1 + 1) as f64).log2();
                        mine.mrr += 1.0 / r1 as f64;
                        for (kind, value) in points[i].iter().flatten() {
                            let gained = f64::from(match kind {
                                EventKind::Click => r.click,
                                EventKind::Cart => r.cart,
                                EventKind::Purchase => r.purchase,
                                EventKind::Rating if *value >= LIKE_THRESHOLD => r.like,
                                _ => 0.0,
                            });
                            reward += gained;
                            mine.reward += gained;
                        }
                    }
                    for it in &rec.items {
                        if !recommended.contains(&it.item) {
                            recommended.insert(it.item.clone());
                        }
                    }
                    answering.insert(ev.user.clone(), (item.to_owned(), rec.request_id));
                }
            }
        }
        // 2. The events (not the served impressions: the replay logs its own).
        let records: Vec<_> = batch
            .iter()
            .filter(|&&i| events[i].action.kind() != EventKind::Impression)
            .map(|&i| {
                let ev = &events[i];
                // Every event of an interaction answers the slate ranked at its start.
                let request = answering
                    .get(&ev.user)
                    .filter(|(item, _)| ev.action.item() == Some(item))
                    .map(|(_, r)| r.clone());
                engine.record_with(ev.clone(), request)
            })
            .collect();
        for r in futures_executor::block_on(futures_util::future::join_all(records)) {
            r?;
        }
        // 3. The learner applies the round.
        engine.sync_learner()?;
        done += batch.len();
        scored_done += batch.iter().filter(|&&i| scored(i)).count();
        last_ts = batch
            .iter()
            .map(|&i| events[i].ts)
            .max()
            .unwrap_or(last_ts)
            .max(last_ts);
        progress(batch.len() as u64);
        if scored_done >= next_window || done >= n {
            close_window(&mut windows, &mut weights, &mut win, done, last_ts, engine);
            while next_window <= scored_done {
                next_window += window_len;
            }
        }
    }
    if win.n > 0 {
        close_window(&mut windows, &mut weights, &mut win, done, last_ts, engine);
    }
    let m = engine.metrics();
    let f = total.figures();
    Ok((
        StrategyReport {
            name: strategy.name.clone(),
            hr: f.hr,
            ndcg: f.ndcg,
            mrr: f.mrr,
            coverage: recommended.len() as f64 / log.items.len().max(1) as f64,
            rankings: f.rankings,
            reward,
            latency_p50_us: m.recommend_latency_us.p50,
            latency_p99_us: m.recommend_latency_us.p99,
            latency_buckets: m.recommend_latency_us.buckets,
            served_agreement: (served > 0).then(|| agreed as f64 / served as f64),
            served_impressions: served,
            windows,
            weights,
            seconds: 0.0,
            finetune_passes: m.finetune_time_us.count,
            finetune_seconds: m.finetune_time_us.mean * m.finetune_time_us.count as f64 / 1e6,
            per_user,
        },
        done as u64,
    ))
}
