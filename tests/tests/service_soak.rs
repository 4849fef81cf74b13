//! A soak of `attune serve`: steady mixed load (4 recommendations : 1 event) at a modest
//! rate for minutes, sampling the server's resident memory, which must stay flat, and
//! counting errors, which must be none. Its own test binary so that it runs beside the
//! other tests. The same test is the long soak:
//! `ATTUNE_SOAK_SECS=1800 cargo test --release -p attune-tests --test service_soak -- --nocapture`
//! (`ATTUNE_SOAK_RATE` sets the requests per second, 400 by default).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use attune_tests::http::{Client, Server};
use attune_tests::{attune, ok_stdout};

/// Users and items of the generated store the load is drawn from.
const USERS: u64 = 1000;
const ITEMS: u64 = 1000;
/// Client threads; each sends its share of the rate on one keep-alive connection.
const THREADS: u64 = 4;
/// How often the server's memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Allowed growth of the peak RSS from the first half of the measured run to the second:
/// a ratio and a constant (allocator and store caches settle in steps).
const RSS_GROWTH_RATIO: f64 = 1.25;
const RSS_GROWTH_KIB: u64 = 16 << 10;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client thread saw.
#[derive(Default)]
struct Tally {
    requests: u64,
    errors: Vec<String>,
    /// Each request's scheduled time (seconds from the start) and its latency from then,
    /// in microseconds.
    latencies_us: Vec<(f64, u64)>,
}

/// SplitMix64: a well-mixed 64-bit hash of a counter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Sends request `g = i * THREADS + t` at `start + g / rate` until `stop`.
fn load(addr: std::net::SocketAddr, t: u64, rate: f64, start: Instant, stop: &AtomicBool) -> Tally {
    let mut client = Client::new(addr);
    let mut tally = Tally::default();
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let g = i * THREADS + t;
        let due = start + Duration::from_secs_f64(g as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let h = mix(g);
        let user = format!("u{}", h % USERS);
        let (path, body) = if g % 5 == 4 {
            let ts = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1_700_000_000, |d| d.as_secs());
            let item = format!("i{}", (h >> 20) % ITEMS);
            let body =
                format!(r#"{{"user": "{user}", "kind": "click", "item": "{item}", "ts": {ts}}}"#);
            ("/v1/events", body)
        } else {
            ("/v1/recommend", format!(r#"{{"user": "{user}", "k": 10}}"#))
        };
        let result = client.call("POST", path, None, body.as_bytes());
        let latency = due.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
        tally
            .latencies_us
            .push(((due - start).as_secs_f64(), latency));
        tally.requests += 1;
        match result {
            Ok(r) if r.status == 200 => {}
            Ok(r) => tally
                .errors
                .push(format!("{path}: {} {}", r.status, r.text())),
            Err(e) => tally.errors.push(format!("{path}: {e}")),
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn memory_stays_flat_under_steady_load() {
    let secs = env_u64("ATTUNE_SOAK_SECS", 120);
    let rate = env_u64("ATTUNE_SOAK_RATE", 400) as f64;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let store_arg = store.to_str().expect("a UTF-8 temporary path");
    ok_stdout(&attune(&[
        "generate",
        "--store",
        store_arg,
        "--users",
        &USERS.to_string(),
        "--items",
        &ITEMS.to_string(),
        "--seed",
        "5",
    ]));
    // `ATTUNE_SOAK_CACHE_MB`: sled's page cache (default 256 MiB) — a store that grows
    // fills it, so RSS rises by up to that much before it can be flat.
    let config = dir.path().join("attune.toml");
    let cache_mb = env_u64("ATTUNE_SOAK_CACHE_MB", 256);
    std::fs::write(
        &config,
        format!(
            "[engine.store_config]\ncache_capacity = {}\n",
            cache_mb << 20
        ),
    )
    .expect("config file");
    let mut server = Server::start_on(&store, &["--config", config.to_str().expect("utf-8")]);

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let (addr, stop) = (server.addr(), Arc::clone(&stop));
            std::thread::spawn(move || load(addr, t, rate, start, &stop))
        })
        .collect();
    let duration = Duration::from_secs(secs);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    while start.elapsed() < duration {
        std::thread::sleep(SAMPLE_EVERY.min(duration.saturating_sub(start.elapsed())));
        assert!(server.is_alive(), "the server died");
        let rss = server.rss_kib().expect("the server's VmRSS");
        samples.push((start.elapsed().as_secs_f64(), rss));
        if samples.len().is_multiple_of(30) {
            eprintln!(
                "soak: {:>5.0} s  RSS {} KiB",
                start.elapsed().as_secs_f64(),
                rss
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();

    let requests: u64 = tallies.iter().map(|t| t.requests).sum();
    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    // Warm-up: the first quarter (at least 10 s; new sessions encode their histories, the
    // caches fill); latencies and memory are judged after it.
    let warm = (secs as f64 / 4.0).max(10.0).min(secs as f64 / 2.0);
    let mut lat: Vec<u64> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter())
        .filter(|(due, _)| *due >= warm)
        .map(|(_, l)| *l)
        .collect();
    lat.sort_unstable();
    let max_all = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter())
        .map(|(_, l)| *l)
        .max()
        .unwrap_or(0);
    let mid = (warm + secs as f64) / 2.0;
    let peak = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    };
    let (first, second) = (peak(warm, mid), peak(mid, f64::INFINITY));
    let rss_max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let rss_start = samples.first().map_or(0, |s| s.1);
    let rss_end = samples.last().map_or(0, |s| s.1);
    eprintln!(
        "soak: {secs} s at {rate} req/s offered: {requests} requests ({:.0}/s), {} errors; \
         RSS start {} KiB, end {} KiB, max {} KiB (peak {} KiB after warm-up, {} KiB in the second half); \
         latency after warm-up p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (max {:.2} ms in the warm-up)",
        requests as f64 / elapsed,
        errors.len(),
        rss_start,
        rss_end,
        rss_max,
        first,
        second,
        percentile(&lat, 0.5) as f64 / 1e3,
        percentile(&lat, 0.99) as f64 / 1e3,
        lat.last().copied().unwrap_or(0) as f64 / 1e3,
        max_all as f64 / 1e3,
    );
    assert!(
        errors.is_empty(),
        "{} errors, the first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        requests as f64 >= 0.5 * rate * secs as f64,
        "the load fell far behind: {requests} requests in {secs} s"
    );
    assert!(
        second as f64 <= first as f64 * RSS_GROWTH_RATIO + RSS_GROWTH_KIB as f64,
        "memory grows: peak {first} KiB after warm-up, {second} KiB in the second half; samples {samples:?}"
    );
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}
