//! Open-loop HTTP load on `attune serve`: what the service sustains over real sockets,
//! with latency measured the way a user sees it.
//!
//! The bench starts the release `attune` binary (build it first:
//! `cargo build --release -p attune`; or point `ATTUNE_BIN` at one) on a fresh store
//! holding an ml-1m-sized synthetic data set (`attune generate --users 6000 --items 3700`,
//! then `attune import`), and offers a fixed rate of requests, 4 `POST /v1/recommend` to 1
//! `POST /v1/events`, from many users, over persistent HTTP/1.1 keep-alive connections (reqwest, one client a connection).
//!
//! Open loop: request `i` is due at `t0 + i / rate` whatever happened to the earlier ones (a
//! ticker thread releases it then, and any free connection takes it), and its latency
//! counts from that time, so waiting for a free connection is part of it (no coordinated
//! omission).
//!
//! `cargo bench -p attune-benches --bench http_load`. Environment:
//! - `HTTP_RATE`: offered requests per second (default 5000);
//! - `HTTP_SECS`: seconds of measurement (default 20), after `HTTP_WARMUP_SECS` (default 3)
//!   at the same rate that are not reported;
//! - `HTTP_CONNS`: keep-alive connections (default 128), shared by `HTTP_THREADS` client
//!   threads (default 2);
//! - `HTTP_SWEEP=1`: instead, rates `HTTP_SWEEP_RATES` (default
//!   2000,4000,6000,...,20000,24000) for `HTTP_SWEEP_SECS` each (default 5; the warm-up
//!   defaults to 10 s here), stopping at the first that fails; reports the highest rate with p99 at
//!   most `HTTP_P99_MS` (default 10) and no errors.
//!
//! - `HTTP_MODEL=shipped`: serve the shipped 500-item checkpoint instead of a
//!   random-weight one over the whole 3,700-item catalogue (the default).
//! - `HTTP_ENCODER=DIR`: serve with the text source on this sentence encoder (measured
//!   once the catalogue is embedded); by default `attune serve --no-encoder`, the
//!   service without it.
//!
//! Prints a table per run and one JSON line at the end. The server's log goes to
//! `serve.log` in the temporary directory (its path is printed).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use attune_benches::env_or as env;
use tokio::sync::mpsc;

/// Users and items of the generated data set (ml-1m-sized).
const USERS: usize = 6000;
const ITEMS: usize = 3700;
/// A request not answered within this is an error (and its connection is dropped).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// After the last request is due, how long the backlog may take to drain; what is still
/// queued then is reported as `unsent`.
const DRAIN: Duration = Duration::from_secs(5);

/// The release `attune` beside this bench's executable (`target/release/deps/..`), or
/// `ATTUNE_BIN`.
fn attune_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ATTUNE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench's target directory")?
        .join(format!("attune{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p attune` first (or set ATTUNE_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The ids of a generated JSONL file: (users, items).
fn ids_of(jsonl: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let (mut users, mut items) = (std::collections::BTreeSet::new(), Vec::new());
    for line in std::io::BufReader::new(std::fs::File::open(jsonl)?).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        match (v["kind"].as_str(), v["item"].as_str(), v["user"].as_str()) {
            (Some("item"), Some(item), _) => items.push(item.to_string()),
            (_, _, Some(user)) => {
                users.insert(user.to_string());
            }
            _ => {}
        }
    }
    Ok((users.into_iter().collect(), items))
}

/// A running `attune serve`, killed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(
    bin: &Path,
    store: &Path,
    log: &Path,
    models: &Path,
    encoder: Option<&Path>,
) -> Result<Served> {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--store"])
        .arg(store)
        .arg("--models")
        .arg(models);
    match encoder {
        Some(dir) => cmd.arg("--encoder").arg(dir),
        None => cmd.arg("--no-encoder"),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let addr = loop {
        let Some(line) = lines.next() else {
            bail!(
                "attune serve exited before listening; see {}",
                log.display()
            );
        };
        if let Some(a) = line?.strip_prefix("listening on http://") {
            break a.parse()?;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Served { child, addr })
}

/// Waits until the service has embedded its catalogue (`/v1/info` `text.pending` 0), so
/// that the measurement sees the text source's serving cost, not its start-up.
fn wait_for_text(addr: SocketAddr) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = connection()?;
    let started = Instant::now();
    rt.block_on(async {
        loop {
            let body = client
                .get(format!("http://{addr}/v1/info"))
                .send()
                .await?
                .text()
                .await?;
            let info: serde_json::Value = serde_json::from_str(&body)?;
            let text = &info["text"];
            if text["state"] != "on" {
                bail!("the text source is not on: {text}");
            }
            if text["pending"] == 0 {
                eprintln!(
                    "text source ready: {} items embedded in {:.1} s",
                    text["items"],
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("the catalogue was not embedded in 600 s: {text}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// The two routes of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    Recommend,
    Events,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Recommend => "recommend",
            Route::Events => "events",
        }
    }
}

/// One scheduled request.
struct Slot {
    i: u64,
    due: Instant,
}

/// What became of one request.
struct Outcome {
    route: Route,
    /// `200`, another status, or `io` / `timeout` / `unsent`.
    result: Result<u16, &'static str>,
    latency_us: u64,
    /// When it was answered, in seconds from the start of the measurement.
    done_s: f64,
}

/// The request bodies: user and item drawn from request `i`'s hash.
struct Mix {
    users: Vec<String>,
    items: Vec<String>,
}

/// SplitMix64: a well-mixed hash of the request number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Mix {
    fn request(&self, i: u64) -> (Route, &'static str, String) {
        let h = mix(i);
        let user = &self.users[(h % self.users.len() as u64) as usize];
        if i % 5 == 4 {
            let item = &self.items[((h >> 24) % self.items.len() as u64) as usize];
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1_700_000_000, |d| d.as_secs());
            (
                Route::Events,
                "/v1/events",
                format!(r#"{{"user":"{user}","kind":"click","item":"{item}","ts":{ts}}}"#),
            )
        } else {
            (
                Route::Recommend,
                "/v1/recommend",
                format!(r#"{{"user":"{user}","k":10}}"#),
            )
        }
    }
}

/// One keep-alive connection: a reqwest client used by one task at a time, so that it
/// holds one connection (reopened after an error or a `Connection: close`).
fn connection() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// POSTs `body` to `url` on `conn` and reads the response's status; the body is read and
/// dropped.
async fn exchange(conn: &reqwest::Client, url: &str, body: String) -> Result<u16, &'static str> {
    let sent = conn
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Err("timeout"),
        Err(_) => return Err("io"),
    };
    let status = resp.status().as_u16();
    match resp.bytes().await {
        Ok(_) => Ok(status),
        Err(e) if e.is_timeout() => Err("timeout"),
        Err(_) => Err("io"),
    }
}

/// Per-route and overall figures of one run.
#[derive(Debug, Default, Clone)]
struct Figures {
    sent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    rate: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Figures {
    /// The figures of `outcomes`, of requests due over `secs` seconds; the rate is the
    /// answered ones per second until the last answer (a run that falls behind takes longer
    /// than `secs`).
    fn of(outcomes: &[&Outcome], secs: f64) -> Figures {
        let mut f = Figures {
            sent: outcomes.len() as u64,
            ..Figures::default()
        };
        let mut lat: Vec<u64> = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            match o.result {
                Ok(200) => f.ok += 1,
                Ok(s) => *f.errors.entry(s.to_string()).or_default() += 1,
                Err(e) => *f.errors.entry(e.to_string()).or_default() += 1,
            }
            if o.result != Err("unsent") {
                lat.push(o.latency_us);
            }
        }
        lat.sort_unstable();
        let q = |p: f64| {
            if lat.is_empty() {
                return 0.0;
            }
            let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
            lat[rank - 1] as f64 / 1e3
        };
        let last = outcomes.iter().map(|o| o.done_s).fold(secs, f64::max);
        f.rate = f.ok as f64 / last;
        f.p50_ms = q(0.50);
        f.p90_ms = q(0.90);
        f.p99_ms = q(0.99);
        f.max_ms = lat.last().map_or(0.0, |&l| l as f64 / 1e3);
        f
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent, "ok": self.ok, "errors": self.errors, "rate": round1(self.rate),
            "p50_ms": round3(self.p50_ms), "p90_ms": round3(self.p90_ms),
            "p99_ms": round3(self.p99_ms), "max_ms": round3(self.max_ms),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One run's result: per route, then `all`.
struct Report {
    rate: f64,
    secs: f64,
    routes: Vec<(&'static str, Figures)>,
}

impl Report {
    fn all(&self) -> &Figures {
        &self.routes.last().expect("the `all` row is always there").1
    }

    fn print_table(&self) {
        println!(
            "offered {:.0} req/s for {:.0} s over {} connections",
            self.rate,
            self.secs,
            env("HTTP_CONNS", 128usize)
        );
        println!(
            "{:<10} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}  errors by status",
            "route", "sent", "ok", "errors", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (name, f) in &self.routes {
            let errors = if f.errors.is_empty() {
                "-".to_string()
            } else {
                f.errors
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "{:<10} {:>9} {:>9} {:>9} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {errors}",
                name,
                f.sent,
                f.ok,
                f.error_count(),
                f.rate,
                f.p50_ms,
                f.p90_ms,
                f.p99_ms,
                f.max_ms
            );
        }
    }

    fn json(&self) -> serde_json::Value {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .routes
            .iter()
            .map(|(n, f)| (n.to_string(), f.json()))
            .collect();
        serde_json::json!({"offered_rate": self.rate, "secs": self.secs, "routes": routes})
    }
}

/// Offers `rate` requests per second for `secs` seconds to `addr`; returns the outcomes
/// of requests due at or after `measure_from` seconds.
fn run(
    addr: SocketAddr,
    mix: &Arc<Mix>,
    rate: f64,
    secs: f64,
    measure_from: f64,
) -> Result<Report> {
    let threads: usize = env("HTTP_THREADS", 2usize).max(1);
    let conns: usize = env("HTTP_CONNS", 128usize).max(threads);
    let t0 = Instant::now() + Duration::from_millis(50);
    let end = t0 + Duration::from_secs_f64(secs);
    let give_up = end + DRAIN;
    let measured = t0 + Duration::from_secs_f64(measure_from);
    let mut senders = Vec::with_capacity(threads);
    let mut clients = Vec::with_capacity(threads);
    for t in 0..threads {
        let (tx, rx) = mpsc::unbounded_channel::<Slot>();
        senders.push(tx);
        let mix = Arc::clone(mix);
        let n_conns = conns / threads + usize::from(t < conns % threads);
        clients.push(std::thread::spawn(move || -> Result<Vec<Outcome>> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            let rx = Rc::new(tokio::sync::Mutex::new(rx));
            let outcomes = local.block_on(&rt, async move {
                let tasks: Vec<_> = (0..n_conns)
                    .map(|_| {
                        let (rx, mix) = (Rc::clone(&rx), Arc::clone(&mix));
                        tokio::task::spawn_local(async move {
                            let Ok(conn) = connection() else {
                                return Vec::new();
                            };
                            let urls = (
                                format!("http://{addr}/v1/recommend"),
                                format!("http://{addr}/v1/events"),
                            );
                            let mut out = Vec::new();
                            loop {
                                // Free: take the next due request (a FIFO shared by the thread's
                                // connections).
                                let slot = rx.lock().await.recv().await;
                                let Some(slot) = slot else { break };
                                let (route, path, body) = mix.request(slot.i);
                                let url = if path == "/v1/events" {
                                    &urls.1
                                } else {
                                    &urls.0
                                };
                                let result = if Instant::now() > give_up {
                                    Err("unsent")
                                } else {
                                    exchange(&conn, url, body).await
                                };
                                let latency_us = slot
                                    .due
                                    .elapsed()
                                    .as_micros()
                                    .try_into()
                                    .unwrap_or(u64::MAX);
                                if let Some(since) = slot.due.checked_duration_since(measured) {
                                    out.push(Outcome {
                                        route,
                                        result,
                                        latency_us,
                                        done_s: since.as_secs_f64() + latency_us as f64 / 1e6,
                                    });
                                }
                            }
                            out
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    if let Ok(out) = t.await {
                        all.extend(out);
                    }
                }
                all
            });
            Ok(outcomes)
        }));
    }
    // The ticker: releases request i at t0 + i / rate, to the client threads in turn.
    let total = (rate * secs).round() as u64;
    for i in 0..total {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let _ = senders[i as usize % threads].send(Slot { i, due });
    }
    drop(senders);
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.extend(
            c.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    let secs = secs - measure_from;
    let mut routes = Vec::new();
    for route in [Route::Recommend, Route::Events] {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.route == route).collect();
        routes.push((route.name(), Figures::of(&of, secs)));
    }
    let all: Vec<&Outcome> = outcomes.iter().collect();
    routes.push(("all", Figures::of(&all, secs)));
    Ok(Report { rate, secs, routes })
}

fn main() -> Result<()> {
    let bin = attune_bin()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data.jsonl");
    let store = dir.path().join("store");
    let started = Instant::now();
    run_ok(
        Command::new(&bin)
            .args(["generate", "--seed", "1"])
            .args([
                "--users",
                &USERS.to_string(),
                "--items",
                &ITEMS.to_string(),
                "--out",
            ])
            .arg(&data),
    )?;
    run_ok(
        Command::new(&bin)
            .args(["import", "--format", "jsonl", "--store"])
            .arg(&store)
            .arg(&data),
    )?;
    let (users, items) = ids_of(&data)?;
    eprintln!(
        "store: {} users, {} items ({:.1} s); server {}",
        users.len(),
        items.len(),
        started.elapsed().as_secs_f64(),
        bin.display()
    );
    // The model: a random-weight one over the whole catalogue (d 64, 2 layers, max_len
    // 200: the cost of an ml-1m-sized model), or the shipped one (`HTTP_MODEL=shipped`,
    // 500 of the items).
    let models = if std::env::var("HTTP_MODEL").as_deref() == Ok("shipped") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
    } else {
        attune_benches::random_checkpoint(dir.path(), ITEMS)
    };
    eprintln!("model: {}", models.display());
    let log = dir.path().join("serve.log");
    let encoder = std::env::var_os("HTTP_ENCODER").map(PathBuf::from);
    let server = serve(&bin, &store, &log, &models, encoder.as_deref())?;
    eprintln!("serving on {}; log {}", server.addr, log.display());
    if encoder.is_some() {
        wait_for_text(server.addr)?;
    }
    let mix = Arc::new(Mix { users, items });
    let sweep = env("HTTP_SWEEP", 0u8) == 1;
    // A sweep's first step must not pay for cold sessions (a user's first request encodes
    // their whole window): its warm-up is long enough to reach every user.
    let warmup: f64 = env("HTTP_WARMUP_SECS", if sweep { 10.0 } else { 3.0 });
    let p99_target: f64 = env("HTTP_P99_MS", 10.0);

    if sweep {
        let rates: Vec<f64> = std::env::var("HTTP_SWEEP_RATES")
            .unwrap_or_else(|_| {
                "2000,4000,6000,8000,10000,12000,14000,16000,18000,20000,24000".into()
            })
            .split(',')
            .filter_map(|r| r.trim().parse().ok())
            .collect();
        let secs: f64 = env("HTTP_SWEEP_SECS", 5.0);
        let (mut best, mut steps) = (None, Vec::new());
        for (n, &rate) in rates.iter().enumerate() {
            let from = if n == 0 { warmup } else { 0.0 };
            let report = run(server.addr, &mix, rate, from + secs, from)?;
            report.print_table();
            let all = report.all();
            let pass = all.error_count() == 0 && all.p99_ms <= p99_target;
            println!("{}\n", if pass { "PASS" } else { "FAIL" });
            steps.push(serde_json::json!({
                "rate": rate, "achieved": round1(all.rate), "p50_ms": round3(all.p50_ms),
                "p99_ms": round3(all.p99_ms), "errors": all.error_count(), "pass": pass,
            }));
            if !pass {
                break;
            }
            best = Some(rate);
            // Let the backlog of the step clear before the next.
            std::thread::sleep(Duration::from_millis(500));
        }
        match best {
            Some(r) => {
                println!("highest rate with p99 <= {p99_target} ms and no errors: {r} req/s")
            }
            None => println!("no rate met p99 <= {p99_target} ms with no errors"),
        }
        println!(
            "{}",
            serde_json::json!({
                "bench": "http_load_sweep", "p99_target_ms": p99_target,
                "conns": env("HTTP_CONNS", 128usize), "best_rate": best, "steps": steps,
            })
        );
    } else {
        let rate: f64 = env("HTTP_RATE", 5000.0);
        let secs: f64 = env("HTTP_SECS", 20.0);
        let report = run(server.addr, &mix, rate, warmup + secs, warmup)?;
        report.print_table();
        let mut json = report.json();
        json["bench"] = "http_load".into();
        json["conns"] = env("HTTP_CONNS", 128usize).into();
        println!("{json}");
    }
    Ok(())
}
