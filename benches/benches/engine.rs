//! The embedded engine under load: throughput and latency of recommendations with events
//! interleaved, dynamic batching against batch size 1 at the same offered load, and the
//! memory of a million users cycled through.
//!
//! `cargo bench -p attune-benches --bench engine` runs every part. Environment:
//! - `ENGINE_BENCH`: `load`, `max`, `memory` or `all` (default `all`);
//! - `ENGINE_RATE`: offered operations per second of the open-loop runs (default 25000;
//!   4 of every 5 operations are recommendations, 1 an event);
//! - `ENGINE_RUNS`: measured runs of the load, one after the other on the same engine
//!   (default 1; each with its own uncounted warm-up);
//! - `ENGINE_SECS`: seconds per run (default 10), after `ENGINE_WARMUP_SECS` (default 2)
//!   of the same load that are not counted (the steady state is what is measured);
//! - `ENGINE_TRACE=FILE`: writes each counted recommendation's time, latency and
//!   generator lateness (µs), to tell stalls from scheduling noise;
//! - `ENGINE_BACKGROUND`: the engine's `background_priority`, `idle` (default), `low` or
//!   `normal`;
//! - `ENGINE_USERS`: users cycled through by the memory run (default 1,000,000), with
//!   `ENGINE_ACTIVE` of them alive at once (default 100,000);
//! - `ENGINE_DEVICE`: `cpu` (default) or `cuda` (build with `--features attune/cuda`):
//!   where the model runs; `ENGINE_INCREMENTAL=false` runs the batched re-encoding path
//!   (the one a GPU takes) on the CPU;
//! - `ENGINE_DYNAMIC_ONLY=true`: the load run skips its batch-size-1 comparison;
//! - `ENGINE_COMPUTE_THREADS`, `ENGINE_ARBITERS`: the engine's compute threads (default:
//!   the cores, at most 4) and arbiter threads (default 1); `ENGINE_FSYNC=false` makes
//!   events durable on apply instead of on fsync (to see what the flushes cost);
//!   `ENGINE_FLUSH_INTERVAL_US` and `ENGINE_FLUSH_DELAY_US` set the store's
//!   `min_flush_interval` (default 2 ms) and `max_flush_delay` (default 0);
//! - `ENGINE_ENCODER=DIR`: the text encoder behind the `text` source (e.g.
//!   `models/minilm-l6`); the catalogue is embedded before anything is measured. Without
//!   it the engine runs without the text source;
//! - `ENGINE_SCORE_DTYPE`: the item table's precision, `f32` (default), `f16`, `bf16` or
//!   `int8` (the engine's `score_dtype`);
//! - `ENGINE_HUGE_PAGES=true`: keeps transparent huge pages, which the benchmark turns
//!   off for its process as `attune serve` does (`attune::os::avoid_huge_pages`).
//!
//! - `ENGINE_MODEL=DIR`: a trained checkpoint instead of random weights (one trained on
//!   `attune generate --items ENGINE_ITEMS` data, e.g. with `--whole-catalogue`);
//! - `ENGINE_ITEMS`: catalogue size (default 3,700, ml-1m's); from the engine's
//!   `ann_min_items` (`ENGINE_ANN_MIN_ITEMS`, default 200,000) the model's candidates
//!   come from the graph index, searched `ENGINE_ANN_EF` deep (default: the engine's, 64).
//!
//! The catalogue is ml-1m-sized (3,700 items) unless `ENGINE_ITEMS` says otherwise, the model a 2-layer, d = 64, max_len 200
//! attention model with random weights (speed does not depend on what it learned), the
//! store a fresh one warmed with 6,040 synthetic users' histories.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune::engine::metrics::Histogram;
use attune::engine::strategy::{Batching, Strategy};
use attune::engine::{Engine, EngineConfig, RecommendOptions};
use attune::event::{Action, RawEvent};
use attune::os::BackgroundPriority;
use attune::store::{Store, StoreConfig};
use attune::synth::{Generator, SynthConfig};
use attune_benches::{env_or as env, rss_kib};

// The allocator the `attune` binary uses; hosts embedding the engine choose their own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Catalogue size: `ENGINE_ITEMS` (default 3,700, ml-1m's).
static ITEMS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| env("ENGINE_ITEMS", 3700));
const USERS: usize = 6040;

/// A random-weight checkpoint over `i0..i{ITEMS-1}`, or the checkpoint `ENGINE_MODEL`
/// names (trained on `attune generate --items ENGINE_ITEMS` data, whose items the store's
/// catalogue shares).
fn model(dir: &Path) -> PathBuf {
    match std::env::var_os("ENGINE_MODEL") {
        Some(trained) => PathBuf::from(trained),
        None => attune_benches::random_checkpoint(dir, *ITEMS),
    }
}

/// A store with the catalogue and `users` synthetic histories.
fn store(dir: &Path, users: usize) -> PathBuf {
    let path = dir.join("store");
    let s = Store::open(&path, StoreConfig::default()).expect("store");
    let gen = Generator::new(SynthConfig {
        users,
        items: *ITEMS,
        ..SynthConfig::default()
    })
    .expect("generator");
    s.put_items(&gen.items().collect::<Vec<_>>())
        .expect("items");
    let mut batch = Vec::new();
    for u in 0..users {
        batch.extend(gen.user_events(u));
        if batch.len() > 50_000 {
            s.append(&batch).expect("append");
            batch.clear();
        }
    }
    s.append(&batch).expect("append");
    s.close().expect("close");
    path
}

fn click(user: usize, item: usize) -> RawEvent {
    RawEvent {
        user: format!("u{user}"),
        ts: attune_benches_now(),
        action: Action::Click {
            item: format!("i{item}"),
        },
    }
}

fn attune_benches_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Requests as a service makes them: impressions logged.
fn quiet() -> RecommendOptions {
    RecommendOptions::default()
}

struct RunResult {
    recs: u64,
    events: u64,
    overloaded: u64,
    errors: u64,
    secs: f64,
    latency: attune::engine::metrics::HistogramSnapshot,
    mean_batch: f64,
    /// Where the machine's CPU went over the counted seconds (Linux only).
    cpu: Option<CpuShare>,
}

/// The machine's CPU over a run, in cores: to tell a slow run of the engine from a run
/// that did not get the CPU (another process, or the host taking it: steal).
#[derive(Clone, Debug)]
struct CpuShare {
    cores: f64,
    busy: f64,
    this_process: f64,
    steal: f64,
    iowait: f64,
    minor_faults: u64,
    major_faults: u64,
    /// Cores by thread name, busiest first.
    threads: Vec<(String, f64)>,
}

/// Where utime sits among [`stat_fields`]' fields (the 14th field; stime follows).
const UTIME: usize = 11;

/// The numeric fields of a `/proc/.../stat` line by index, counted after the command name
/// (which may hold spaces, in parentheses): index 0 is the state (the 3rd field), so the
/// n-th field is at n - 3.
fn stat_fields(stat: &str) -> Option<impl Fn(usize) -> Option<u64> + '_> {
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(move |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()))
}

/// Cumulative ticks from `/proc/stat` (busy, steal, iowait, all) and `/proc/self/stat`
/// (this process's user and system time, then its minor and major page faults), and the
/// number of CPUs.
fn cpu_ticks() -> Option<([u64; 7], usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let v: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let cpus = lines.filter(|l| l.starts_with("cpu")).count();
    // user nice system idle iowait irq softirq steal
    let (busy, idle, iowait, steal) = (v[0] + v[1] + v[2] + v[5] + v[6], v[3], v[4], v[7]);
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let field = stat_fields(&own)?;
    let own = field(UTIME)? + field(UTIME + 1)?;
    // Minor and major page faults (the 10th and 12th fields).
    let (minflt, majflt) = (field(7)?, field(9)?);
    Some((
        [
            busy,
            steal,
            iowait,
            busy + idle + iowait + steal,
            own,
            minflt,
            majflt,
        ],
        cpus,
    ))
}

/// This process's CPU ticks by thread name (numbered threads of a pool counted together).
fn thread_ticks() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for t in tasks.flatten() {
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(t.path().join("comm")),
            std::fs::read_to_string(t.path().join("stat")),
        ) else {
            continue;
        };
        let Some(ticks) = stat_fields(&stat).and_then(|f| Some(f(UTIME)? + f(UTIME + 1)?)) else {
            continue;
        };
        let name = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '|')
            .to_string();
        *by_name.entry(name).or_insert(0) += ticks;
    }
    by_name
}

type Ticks = (
    Option<([u64; 7], usize)>,
    std::collections::BTreeMap<String, u64>,
);

fn ticks_now() -> Ticks {
    (cpu_ticks(), thread_ticks())
}

fn cpu_share((a, ta): Ticks, (b, tb): Ticks) -> Option<CpuShare> {
    let ((a, cpus), (b, _)) = (a?, b?);
    let d = |i: usize| b[i].saturating_sub(a[i]) as f64;
    let per_core = d(3) / cpus as f64;
    let mut threads: Vec<(String, f64)> = tb
        .iter()
        .map(|(name, &t)| {
            let before = ta.get(name).copied().unwrap_or(0);
            (
                name.clone(),
                t.saturating_sub(before) as f64 / per_core.max(1.0),
            )
        })
        .filter(|(_, c)| *c >= 0.005)
        .collect();
    threads.sort_by(|x, y| y.1.total_cmp(&x.1));
    (per_core > 0.0).then(|| CpuShare {
        cores: cpus as f64,
        busy: d(0) / per_core,
        this_process: d(4) / per_core,
        steal: d(1) / per_core,
        iowait: d(2) / per_core,
        minor_faults: d(5) as u64,
        major_faults: d(6) as u64,
        threads,
    })
}

/// Shortest sleep of the generator's ticker: operations due within it go out together.
const TICK: Duration = Duration::from_micros(200);

/// Offers `rate` operations per second for `warmup + secs` (open loop: each operation is
/// scheduled at its time whatever the previous ones did; latency counts from the scheduled
/// time) and reports the operations scheduled in the last `secs`, the steady state.
///
/// The schedule is kept by a ticker thread that sleeps with the OS's precise timers and
/// hands the due operations to the runtime every [`TICK`] at most; tokio's own timer
/// ticks in whole milliseconds, which would send operations in bursts up to a
/// millisecond late and count that lateness against the engine.
fn open_loop(engine: &Engine, rate: f64, secs: f64, warmup: f64, seed: u64) -> RunResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let hist = Rc::new(Histogram::default());
    let counts = Rc::new(std::cell::Cell::new((0u64, 0u64, 0u64, 0u64)));
    let trace_to = std::env::var_os("ENGINE_TRACE");
    let trace = Rc::new(std::cell::RefCell::new(Vec::<(u64, u64, u64)>::new()));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(secs);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(Instant, u64)>>();
    let ticker = std::thread::Builder::new()
        .name("bench-ticker".into())
        .spawn(move || {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut next = started;
            let mut n: u64 = seed;
            while next < end {
                let now = Instant::now();
                let mut due = Vec::new();
                while next <= now && next < end {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    due.push((next, n));
                    next += interval;
                }
                if !due.is_empty() && tx.send(due).is_err() {
                    return;
                }
                let wake = next.max(now + TICK);
                std::thread::sleep(wake.saturating_duration_since(Instant::now()));
            }
        })
        .expect("ticker thread");
    let mut before = None;
    let mut ticks_before = None;
    local.block_on(&rt, async {
        // A JoinSet reaps finished tasks in O(finished); scanning a list of handles every
        // tick cost O(in flight), which under overload (hundreds of thousands in flight)
        // made the generator itself the bottleneck.
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(due) = rx.recv().await {
            for (scheduled, n) in due {
                if before.is_none() && scheduled >= measure_from {
                    before = Some(engine.metrics());
                    ticks_before = Some(ticks_now());
                }
                let user = (n >> 33) as usize % USERS;
                let item = (n >> 17) as usize % *ITEMS;
                let (e, h, c) = (engine.clone(), Rc::clone(&hist), Rc::clone(&counts));
                let tr = trace_to.as_ref().map(|_| Rc::clone(&trace));
                let counted = scheduled >= measure_from;
                let is_event = (n >> 40).is_multiple_of(5);
                tasks.spawn_local(async move {
                    let late = scheduled.elapsed().as_micros() as u64;
                    let r = if is_event {
                        e.record(click(user, item)).await.map(|_| ())
                    } else {
                        e.recommend(&format!("u{user}"), 10, quiet())
                            .await
                            .map(|_| ())
                    };
                    if !counted {
                        return;
                    }
                    // Single-threaded: nothing runs between this read and the write below.
                    let (mut recs, mut events, mut over, mut errs) = c.get();
                    match r {
                        Ok(()) if is_event => events += 1,
                        Ok(()) => {
                            recs += 1;
                            h.record_duration(scheduled.elapsed());
                            if let Some(tr) = tr {
                                tr.borrow_mut().push((
                                    (scheduled - measure_from).as_micros() as u64,
                                    scheduled.elapsed().as_micros() as u64,
                                    late,
                                ));
                            }
                        }
                        Err(attune::Error::Overloaded { .. }) => over += 1,
                        Err(_) => errs += 1,
                    }
                    c.set((recs, events, over, errs));
                });
            }
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    });
    ticker.join().expect("ticker");
    let cpu = ticks_before.and_then(|t| cpu_share(t, ticks_now()));
    let secs = measure_from.elapsed().as_secs_f64();
    if let Some(path) = trace_to {
        // `ENGINE_TRACE=FILE`: each counted recommendation's scheduled time (from the end
        // of the warm-up), latency and how late the generator sent it, in µs: to see
        // whether the tail is spread out (scheduling) or clustered (stalls).
        // A first comment line gives the instant the times count from (on Linux, its
        // CLOCK_MONOTONIC seconds and nanoseconds), to line them up with the samples of
        // `perf record -k mono`.
        let mut text = format!("# from {measure_from:?}\n");
        for (at, lat, late) in trace.borrow().iter() {
            text.push_str(&format!("{at} {lat} {late}\n"));
        }
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("ENGINE_TRACE: {e}");
        }
    }
    let before = before.unwrap_or_else(|| engine.metrics());
    let after = engine.metrics();
    let (recs, events, overloaded, errors) = counts.get();
    RunResult {
        recs,
        events,
        overloaded,
        errors,
        secs,
        latency: hist.snapshot(),
        mean_batch: after.batch_size.mean_since(&before.batch_size),
        cpu,
    }
}

/// One recommendation for every user, so that every session is live and its model state
/// built (a session's first request encodes its whole history; later ones are incremental).
fn warm(engine: &Engine) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let t = Instant::now();
    local.block_on(&rt, async {
        for chunk in (0..USERS).collect::<Vec<_>>().chunks(256) {
            let hs: Vec<_> = chunk
                .iter()
                .map(|&u| {
                    let e = engine.clone();
                    tokio::task::spawn_local(async move {
                        e.recommend(&format!("u{u}"), 10, quiet()).await
                    })
                })
                .collect();
            for h in hs {
                h.await.expect("task").expect("warm-up recommendation");
            }
        }
    });
    println!(
        "warm-up: {USERS} sessions started and encoded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

fn open(store: &Path, model: &Path, batching: Batching) -> Engine {
    let strategy = Strategy {
        batching,
        candidates: env("ENGINE_CANDIDATES", Strategy::default().candidates),
        ..Strategy::default()
    };
    let device: String = env("ENGINE_DEVICE", "cpu".to_string());
    let engine = Engine::open(EngineConfig {
        store: store.to_path_buf(),
        model: Some(model.to_path_buf()),
        strategy: strategy.clone(),
        queue_capacity: 8192,
        incremental: env("ENGINE_INCREMENTAL", device == "cpu"),
        score_dtype: env("ENGINE_SCORE_DTYPE", attune::model::fast::ScoreDtype::F32),
        ann_min_items: env(
            "ENGINE_ANN_MIN_ITEMS",
            EngineConfig::default().ann_min_items,
        ),
        ann_ef: env("ENGINE_ANN_EF", EngineConfig::default().ann_ef),
        device,
        compute_threads: env(
            "ENGINE_COMPUTE_THREADS",
            EngineConfig::default().compute_threads,
        ),
        arbiters: env("ENGINE_ARBITERS", 1),
        encoder: std::env::var_os("ENGINE_ENCODER").map(PathBuf::from),
        background_priority: match env("ENGINE_BACKGROUND", "idle".to_string()).as_str() {
            "low" => BackgroundPriority::Low,
            "normal" => BackgroundPriority::Normal,
            _ => BackgroundPriority::Idle,
        },
        store_config: StoreConfig {
            fsync: env("ENGINE_FSYNC", true),
            max_flush_delay: Duration::from_micros(env("ENGINE_FLUSH_DELAY_US", 0)),
            min_flush_interval: Duration::from_micros(env(
                "ENGINE_FLUSH_INTERVAL_US",
                StoreConfig::default().min_flush_interval.as_micros() as u64,
            )),
            ..StoreConfig::default()
        },
        ..EngineConfig::default()
    })
    .expect("engine");
    // The store keeps the strategy of an earlier run: set this run's.
    engine.set_strategy(strategy).expect("strategy");
    let t = Instant::now();
    loop {
        let text = engine.text_status();
        if text.pending == 0 {
            if text.state == "on" {
                println!(
                    "text source on ({}): {} items embedded, {:.1} s",
                    text.encoder.unwrap_or_default(),
                    text.items,
                    t.elapsed().as_secs_f64()
                );
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    engine
}

fn print(label: &str, rate: f64, r: &RunResult) {
    println!(
        "{label:<22} offered {:>7.0}/s  recs {:>7.0}/s  events {:>6.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  mean batch {:>5.1}  overloaded {}  errors {}",
        rate * 0.8,
        r.recs as f64 / r.secs,
        r.events as f64 / r.secs,
        r.latency.p50 / 1000.0,
        r.latency.p99 / 1000.0,
        r.mean_batch,
        r.overloaded,
        r.errors
    );
    if let Some(c) = &r.cpu {
        println!(
            "  (the machine over the run, in cores of {:.0}: busy {:.2}, steal {:.2}, iowait {:.2}; this process {:.2} (time the host stole while it ran included), its page faults {} minor, {} major)",
            c.cores,
            c.busy,
            c.steal,
            c.iowait,
            c.this_process,
            c.minor_faults,
            c.major_faults
        );
        let threads: Vec<String> = c
            .threads
            .iter()
            .map(|(name, cores)| format!("{name} {cores:.2}"))
            .collect();
        println!(
            "  (this process's threads, in cores: {})",
            threads.join(", ")
        );
    }
}

fn load(dir: &Path, store_path: &Path, model_path: &Path) {
    let rate: f64 = env("ENGINE_RATE", 25_000.0);
    let secs: f64 = env("ENGINE_SECS", 10.0);
    let warmup: f64 = env("ENGINE_WARMUP_SECS", 2.0);
    let runs: u64 = env("ENGINE_RUNS", 1);
    println!(
        "== open loop, {} items, 4 recommendations : 1 event, {warmup} s of load not counted, then {secs} s per run, {runs} run(s) an engine ==",
        *ITEMS
    );
    let _ = dir;
    let dynamic = Batching {
        max_batch: env("ENGINE_MAX_BATCH", Batching::default().max_batch),
        max_queue_delay_us: env("ENGINE_DELAY_US", Batching::default().max_queue_delay_us),
    };
    println!(
        "dynamic batching: max_batch {}, max_queue_delay {} µs",
        dynamic.max_batch, dynamic.max_queue_delay_us
    );
    for (label, batching) in [
        ("dynamic batching", dynamic),
        (
            "batch size 1",
            Batching {
                max_batch: 1,
                max_queue_delay_us: 0,
            },
        ),
    ] {
        if env("ENGINE_DYNAMIC_ONLY", false) && batching.max_batch == 1 {
            continue;
        }
        let engine = open(store_path, model_path, batching);
        warm(&engine);
        for run in 0..runs {
            let r = open_loop(&engine, rate, secs, warmup, 11 + run);
            print(label, rate, &r);
        }
        let m = engine.metrics();
        println!(
            "  (engine: recommend p50 {:.0} µs p99 {:.0} µs, compute per batch p50 {:.0} µs p99 {:.0} µs, queue delay p50 {:.0} µs p99 {:.0} µs, record p50 {:.0} µs p99 {:.0} µs, {} full encodes, {} pushes, {} evictions, {} learner messages dropped)",
            m.recommend_latency_us.p50, m.recommend_latency_us.p99,
            m.compute_time_us.p50, m.compute_time_us.p99, m.queue_delay_us.p50, m.queue_delay_us.p99,
            m.record_latency_us.p50, m.record_latency_us.p99, m.state_encodes, m.state_pushes, m.sessions_evicted,
            m.learner_dropped
        );
        futures_block(engine.shutdown());
    }
}

fn max_throughput(store_path: &Path, model_path: &Path) {
    let secs: f64 = env("ENGINE_SECS", 10.0);
    let warmup: f64 = env("ENGINE_WARMUP_SECS", 2.0);
    println!("== highest offered load with p99 <= 5 ms (dynamic batching) ==");
    let engine = open(
        store_path,
        model_path,
        Batching {
            max_batch: env("ENGINE_MAX_BATCH", Batching::default().max_batch),
            max_queue_delay_us: env("ENGINE_DELAY_US", Batching::default().max_queue_delay_us),
        },
    );
    warm(&engine);
    let mut best = None;
    for rate in [
        10_000.0, 15_000.0, 20_000.0, 25_000.0, 30_000.0, 35_000.0, 40_000.0,
    ] {
        let r = open_loop(&engine, rate, secs, warmup, 13);
        print(&format!("offered {rate:.0} ops/s"), rate, &r);
        if r.latency.p99 <= 5000.0 && r.errors == 0 && r.overloaded == 0 {
            best = Some(r.recs as f64 / r.secs);
        } else {
            break;
        }
    }
    match best {
        Some(b) => println!("sustained {b:.0} recommendations/s with p99 <= 5 ms"),
        None => println!("no rate met p99 <= 5 ms"),
    }
    futures_block(engine.shutdown());
}

fn memory(dir: &Path, model_path: &Path) {
    let users: usize = env("ENGINE_USERS", 1_000_000);
    let active: usize = env("ENGINE_ACTIVE", 100_000);
    println!("== {users} users cycled through, {active} alive at once ==");
    let store_path = dir.join("memory-store");
    {
        let s = Store::open(&store_path, StoreConfig::default()).expect("store");
        let items: Vec<attune::Item> = (0..*ITEMS)
            .map(|i| attune::Item {
                id: format!("i{i}"),
                title: String::new(),
                tags: Vec::new(),
                attrs: Default::default(),
            })
            .collect();
        s.put_items(&items).expect("items");
        s.close().expect("close");
    }
    // A budget for `active` sessions of three events each: measured per session below.
    let per_session: u64 = env("ENGINE_SESSION_BYTES", 12_000);
    let budget = per_session * active as u64;
    let engine = Engine::open(EngineConfig {
        store: store_path.clone(),
        model: Some(model_path.to_path_buf()),
        session_budget_bytes: budget,
        session_ttl_s: 3600.0,
        sweep_every_ms: 200,
        queue_capacity: 65_536,
        ..EngineConfig::default()
    })
    .expect("engine");
    let (rss0, _) = rss_kib();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let peak_active = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let peak_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    local.block_on(&rt, async {
        let chunk = 2000;
        for start in (0..users).step_by(chunk) {
            let mut handles = Vec::with_capacity(chunk);
            for u in start..(start + chunk).min(users) {
                let e = engine.clone();
                handles.push(tokio::task::spawn_local(async move {
                    for j in 0..3 {
                        e.record(click(u, (u * 31 + j * 7) % *ITEMS))
                            .await
                            .expect("record");
                    }
                    e.recommend(&format!("u{u}"), 10, quiet())
                        .await
                        .expect("recommend");
                }));
            }
            for h in handles {
                h.await.expect("task");
            }
            let m = engine.metrics();
            peak_active.fetch_max(m.active_sessions, std::sync::atomic::Ordering::Relaxed);
            peak_bytes.fetch_max(m.session_bytes, std::sync::atomic::Ordering::Relaxed);
            if start.is_multiple_of(100_000) {
                let (rss, _) = rss_kib();
                println!(
                    "  {:>8} users  {:>7} active  {:>7.1} MiB in sessions  RSS {:>7.1} MiB  {:.0} s",
                    start,
                    m.active_sessions,
                    m.session_bytes as f64 / 1048576.0,
                    rss as f64 / 1024.0,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    });
    let m = engine.metrics();
    let (rss, peak) = rss_kib();
    println!(
        "cycled {users} users in {:.0} s: peak {} active sessions, {} evicted, budget {:.0} MiB, sessions at most {:.1} MiB (after each 2,000 users), now {:.1} MiB; RSS {:.0} MiB (peak {:.0} MiB, {:.0} MiB before)",
        started.elapsed().as_secs_f64(),
        peak_active.load(std::sync::atomic::Ordering::Relaxed),
        m.sessions_evicted,
        budget as f64 / 1048576.0,
        peak_bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1048576.0,
        m.session_bytes as f64 / 1048576.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        rss0 as f64 / 1024.0
    );
    futures_block(engine.shutdown());
}

fn futures_block<F: std::future::Future<Output = attune::Result<()>>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(f).expect("shutdown");
}

fn main() {
    let mode: String = env("ENGINE_BENCH", "all".to_string());
    // As `attune serve` does; `ENGINE_HUGE_PAGES=true` keeps them, for comparison.
    if !env("ENGINE_HUGE_PAGES", false) {
        attune::os::avoid_huge_pages();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let model_path = model(dir.path());
    if mode == "memory" || mode == "all" {
        memory(dir.path(), &model_path);
    }
    if mode == "memory" {
        return;
    }
    let t = Instant::now();
    let store_path = store(dir.path(), USERS);
    println!(
        "warm-up store: {USERS} users' histories in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if mode == "load" || mode == "all" {
        load(dir.path(), &store_path, &model_path);
    }
    if mode == "max" || mode == "all" {
        max_throughput(&store_path, &model_path);
    }
}
