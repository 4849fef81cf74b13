//! `attune demo`: the whole system on one machine in one command. It fills a store with
//! the default synthetic data (once; later runs reuse it), serves the shipped checkpoint
//! over HTTP exactly as `attune serve` does, and drives the service from client threads
//! with the simulator's users (who click, cart, buy and skip by their hidden tastes, and
//! change tastes after a while). A status line shows what an operator watches: request
//! rate, latency, batch size, reward and the blend weights the learner is moving.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::engine::metrics::Histogram;
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::event::{EventKind, RawEvent};
use crate::service::client::Client;
use crate::service::live::{window_quantile, LiveStats};
use crate::service::{serve_until, shutdown_signal, ServeConfig};
use crate::simulate::World;
use crate::store::{Store, StoreConfig};
use crate::synth::{Generator, SynthConfig};

/// Settings of `attune demo`.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Store directory (filled with the default synthetic data when empty).
    pub store: PathBuf,
    /// Checkpoint to serve (the shipped one by default).
    pub model: Option<PathBuf>,
    /// The models directory `GET /v1/models` lists.
    pub models_dir: Option<PathBuf>,
    /// Address of the service.
    pub bind: SocketAddr,
    /// Recommendation requests per second the simulated users send (each answered slate
    /// may add an events request).
    pub rate: f64,
    /// Client threads.
    pub clients: usize,
    /// Stop after this many seconds (0: run until interrupted).
    pub seconds: f64,
    /// Seconds after which the users' tastes change (0: never).
    pub change_after_s: f64,
    /// Seed of the users' choices.
    pub seed: u64,
    /// Admin token file (as `attune serve --token-file`).
    pub token_file: Option<PathBuf>,
    /// Print nothing (no banner, no status line): for a host that embeds the demo, such
    /// as the desktop panel.
    pub quiet: bool,
    /// The sentence encoder behind the `text` source (none: no text source).
    pub encoder: Option<PathBuf>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            store: PathBuf::from("data/demo-store"),
            model: None,
            models_dir: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rate: 200.0,
            clients: 4,
            seconds: 0.0,
            change_after_s: 60.0,
            seed: 42,
            token_file: None,
            quiet: false,
            encoder: None,
        }
    }
}

/// What a demo run did, from the clients' side.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DemoSummary {
    /// Seconds the clients ran.
    pub seconds: f64,
    /// Recommendations answered.
    pub recommendations: u64,
    /// Events requests answered.
    pub event_posts: u64,
    /// Requests that failed (status and transport errors).
    pub errors: u64,
    /// Reward the users gave (the strategy's reward of their clicks, carts, purchases).
    pub reward: f64,
    /// Recommendation latency over HTTP, client-side (ms).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Default)]
struct Counters {
    recs: AtomicU64,
    posts: AtomicU64,
    errors: AtomicU64,
    reward_milli: AtomicU64,
    latency_us: Histogram,
}

/// Fills an empty store with the default synthetic world; reports what it holds.
fn prepare_store(path: &std::path::Path, world: &World, quiet: bool) -> Result<u64> {
    let store = Store::open(path, StoreConfig::default())?;
    let have = store.next_seq();
    if have > 0 {
        if !quiet {
            println!("reusing the store {} ({have} events)", path.display());
        }
        store.close()?;
        return Ok(have);
    }
    store.put_items(&world.gen.items().collect::<Vec<_>>())?;
    let events: Vec<RawEvent> = world.histories.iter().flatten().cloned().collect();
    for chunk in events.chunks(20_000) {
        store.append(chunk)?;
    }
    tracing::info!(
        store = %path.display(),
        items = world.gen.items().count(),
        users = world.histories.len(),
        events = events.len(),
        "generated the default synthetic data"
    );
    if !quiet {
        println!(
            "generated the default synthetic data into {}: {} items, {} users, {} events",
            path.display(),
            world.gen.items().count(),
            world.histories.len(),
            events.len()
        );
    }
    let n = store.next_seq();
    store.close()?;
    Ok(n)
}

/// One client thread: its share of the rate, its share of the users.
fn drive(
    id: usize,
    cfg: &DemoConfig,
    addr: SocketAddr,
    world: &World,
    counters: &Counters,
    stop: &AtomicBool,
    reward: crate::engine::strategy::Reward,
) {
    let mut client = match Client::new(addr, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "demo client {id} cannot start");
            counters.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ (id as u64).wrapping_mul(0x9e37));
    let mut users = world.users.clone();
    let n = users.len();
    let every = Duration::from_secs_f64(cfg.clients as f64 / cfg.rate);
    let start = Instant::now();
    let mut next = start;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += every;
        // This thread's users: those whose number is `id` modulo the clients.
        let u = {
            let k = rng.gen_range(0..n.div_ceil(cfg.clients));
            (k * cfg.clients + id).min(n - 1)
        };
        let body = format!("{{\"user\": \"u{u}\", \"k\": 10}}");
        let sent = Instant::now();
        let answer = client.request("POST", "/v1/recommend", None, body.as_bytes());
        let rec = match answer {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                if !stop.load(Ordering::Relaxed) {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                if r.status == 503 {
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
            Err(_) => {
                if !stop.load(Ordering::Relaxed) {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(200));
                }
                continue;
            }
        };
        counters.latency_us.record_duration(sent.elapsed());
        counters.recs.fetch_add(1, Ordering::Relaxed);
        let slate: Vec<u32> = rec
            .json()
            .ok()
            .and_then(|v| {
                v["items"].as_array().map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i["item"].as_str()?.strip_prefix('i')?.parse().ok())
                        .collect()
                })
            })
            .unwrap_or_default();
        let changed =
            cfg.change_after_s > 0.0 && start.elapsed().as_secs_f64() >= cfg.change_after_s;
        let feedback = world.respond(&mut users[u], &slate, changed, &mut rng);
        if feedback.is_empty() {
            continue;
        }
        let ts = crate::store::now_ms() as f64 / 1000.0;
        let mut r = 0.0f32;
        let lines: Vec<String> = feedback
            .iter()
            .map(|(kind, item)| {
                r += match kind {
                    EventKind::Click => reward.click,
                    EventKind::Cart => reward.cart,
                    EventKind::Purchase => reward.purchase,
                    _ => 0.0,
                };
                format!(
                    "{{\"user\": \"u{u}\", \"kind\": \"{}\", \"item\": \"i{item}\", \"ts\": {ts:.3}}}",
                    kind.as_str()
                )
            })
            .collect();
        match client.request("POST", "/v1/events", None, lines.join("\n").as_bytes()) {
            Ok(resp) if resp.status == 200 => {
                counters.posts.fetch_add(1, Ordering::Relaxed);
                counters
                    .reward_milli
                    .fetch_add((r * 1000.0).round() as u64, Ordering::Relaxed);
            }
            _ if stop.load(Ordering::Relaxed) => {}
            _ => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Prints the status line once a second (every 5 s when stdout is not a terminal).
fn report(engine: &Engine, counters: &Counters, stop: &AtomicBool, started: Instant) {
    let tty = std::io::stdout().is_terminal();
    let mut prev = (
        counters.recs.load(Ordering::Relaxed) + counters.posts.load(Ordering::Relaxed),
        counters.latency_us.snapshot(),
        engine.metrics(),
    );
    let mut at = Instant::now();
    let every = if tty { 1.0 } else { 5.0 };
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if at.elapsed().as_secs_f64() < every {
            continue;
        }
        let reqs = counters.recs.load(Ordering::Relaxed) + counters.posts.load(Ordering::Relaxed);
        let lat = counters.latency_us.snapshot();
        let m = engine.metrics();
        let secs = at.elapsed().as_secs_f64();
        // The engine's side of the interval, as the live stream computes it.
        let live = LiveStats::between(&prev.2, &m, 0, 0, at.elapsed());
        let w = live.weights;
        let line = format!(
            "{:>5.0}s  {:>6.0} req/s  p50 {:>5.2} ms  p99 {:>6.2} ms  batch {:>4.1}  reward {:>8.0} ({:+.0}/s)  errors {}  weights seq {:.2} like {:.2} purchase {:.2} itemknn {:.2} markov {:.2} pop {:.2} text {:.2}",
            started.elapsed().as_secs_f64(),
            (reqs - prev.0) as f64 / secs,
            window_quantile(&prev.1, &lat, 0.5) / 1000.0,
            window_quantile(&prev.1, &lat, 0.99) / 1000.0,
            live.batch_mean,
            counters.reward_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            live.reward_per_s,
            counters.errors.load(Ordering::Relaxed),
            w.seq,
            w.like,
            w.purchase,
            w.itemknn,
            w.markov,
            w.pop,
            w.text,
        );
        let mut out = std::io::stdout().lock();
        let _ = if tty {
            write!(out, "\r\x1b[2K{line}")
        } else {
            writeln!(out, "{line}")
        };
        let _ = out.flush();
        prev = (reqs, lat, m);
        at = Instant::now();
    }
    if tty {
        println!();
    }
}

/// Runs the demo until interrupted (or `cfg.seconds`); returns what the clients saw.
pub fn run(cfg: DemoConfig) -> Result<DemoSummary> {
    let seconds = cfg.seconds;
    let stop_when = async move {
        if seconds > 0.0 {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = actix_web::rt::time::sleep(Duration::from_secs_f64(seconds)) => {}
            }
        } else {
            shutdown_signal().await;
        }
    };
    run_until(cfg, |_, _| {}, stop_when)
}

/// Runs the demo on the calling thread until `stop` resolves (`cfg.seconds` is not
/// looked at); `on_bound` gets the service's address and admin token once it listens
/// and the simulated users have started. The desktop panel runs its local engine so.
pub fn run_until(
    cfg: DemoConfig,
    on_bound: impl FnOnce(SocketAddr, &str),
    until: impl std::future::Future<Output = ()> + 'static,
) -> Result<DemoSummary> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0 && cfg.rate <= 100_000.0) {
        return Err(Error::config(
            "rate",
            format!("must be in (0, 100000] requests/s, got {}", cfg.rate),
        ));
    }
    if !(1..=64).contains(&cfg.clients) {
        return Err(Error::config(
            "clients",
            format!("must be in [1, 64], got {}", cfg.clients),
        ));
    }
    if !(cfg.seconds.is_finite() && cfg.seconds >= 0.0) {
        return Err(Error::config(
            "seconds",
            "must be 0 (until interrupted) or positive",
        ));
    }
    let world = Arc::new(World::new(
        Generator::new(SynthConfig::default())?,
        SynthConfig::default().users,
        10,
        cfg.seed,
    ));
    prepare_store(&cfg.store, &world, cfg.quiet)?;
    let engine = Engine::open(EngineConfig {
        store: cfg.store.clone(),
        model: cfg.model.clone(),
        encoder: cfg.encoder.clone(),
        ..EngineConfig::default()
    })?;
    let reward = engine.strategy().strategy.reward;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut threads = Vec::new();
    let watched = engine.clone();
    let serve_cfg = ServeConfig {
        bind: cfg.bind,
        token_file: cfg.token_file.clone(),
        models_dir: cfg.models_dir.clone(),
        environment: "demo".into(),
        quiet: cfg.quiet,
        ..ServeConfig::default()
    };
    let announce = on_bound;
    let on_bound = |addr: SocketAddr, token: &str| {
        if !cfg.quiet {
            println!("Attune demo: serving http://{addr}");
            println!("  console: http://{addr}/ui/");
            println!("  admin token: {token}");
            println!("  API description: http://{addr}/v1/openapi.json   live figures: http://{addr}/v1/stream   Prometheus: http://{addr}/metrics");
            if let Some(m) = &cfg.model {
                println!("  model: {}", m.display());
            }
            match &cfg.encoder {
                Some(e) => println!(
                    "  text encoder: {} (the `text` source; find items by text in the console)",
                    e.display()
                ),
                None => println!(
                    "  no text encoder (scripts/fetch-encoder.sh fetches one): no `text` source"
                ),
            }
            println!(
                "  {} simulated users at {} recommendations/s{}; Ctrl-C stops",
                world.users.len(),
                cfg.rate,
                if cfg.change_after_s > 0.0 {
                    format!(", tastes change after {} s", cfg.change_after_s)
                } else {
                    String::new()
                }
            );
            let _ = std::io::stdout().flush();
        }
        for id in 0..cfg.clients {
            let (cfg, world, counters, stop) = (
                cfg.clone(),
                Arc::clone(&world),
                Arc::clone(&counters),
                Arc::clone(&stop),
            );
            threads.push(std::thread::spawn(move || {
                drive(id, &cfg, addr, &world, &counters, &stop, reward)
            }));
        }
        if !cfg.quiet {
            let (engine, counters, stop) = (watched, Arc::clone(&counters), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                report(&engine, &counters, &stop, started)
            }));
        }
        announce(addr, token);
    };
    let stopping = Arc::clone(&stop);
    let stop_when = async move {
        until.await;
        // The clients stop first, so the service drains what they sent.
        stopping.store(true, Ordering::SeqCst);
    };
    let system = actix_web::rt::System::new();
    let served = system.block_on(serve_until(engine, serve_cfg, on_bound, stop_when));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    served?;
    let lat = counters.latency_us.snapshot();
    Ok(DemoSummary {
        seconds: started.elapsed().as_secs_f64(),
        recommendations: counters.recs.load(Ordering::Relaxed),
        event_posts: counters.posts.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        reward: counters.reward_milli.load(Ordering::Relaxed) as f64 / 1000.0,
        p50_ms: lat.p50 / 1000.0,
        p99_ms: lat.p99 / 1000.0,
    })
}
