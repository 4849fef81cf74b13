//! `attune serve` under random, malformed requests against every route: the server must
//! never crash, never answer 5xx other than 503, and answer every 4xx with the JSON error
//! shape. The requests come from `attune_tests::fuzz`.
//!
//! The fuzzer runs for `ATTUNE_FUZZ_SECS` (default 25) from a seed it prints
//! (`ATTUNE_FUZZ_SEED` replays one); `ATTUNE_FUZZ_VERBOSE=1` prints every exchange.
//! Requests that are not valid HTTP are answered by the HTTP layer before the application
//! sees them; of those only "no crash, no 5xx" is asserted, and the ones answered without
//! the JSON shape are counted in the summary.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use attune_tests::fuzz::*;
use attune_tests::http::{Response, Server};
use attune_tests::raw::exchange_raw;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Cases per seeded batch of the fuzzer.
const CASES_PER_BATCH: u32 = 500;

/// Tallies of what the fuzzer saw.
#[derive(Default, Debug)]
struct Seen {
    by_status: HashMap<u16, usize>,
    no_answer: usize,
    /// Protocol-level 4xx answered without the JSON error shape (by the HTTP layer).
    protocol_non_json: HashMap<u16, usize>,
}

fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut s: String = s.chars().take(600).collect();
    if bytes.len() > 600 {
        let _ = write!(s, "... ({} bytes)", bytes.len());
    }
    s
}

fn check_one(
    server: &RefCell<Server>,
    token: &str,
    req: &FuzzRequest,
    seen: &RefCell<Seen>,
) -> Result<(), TestCaseError> {
    let addr = server.borrow().addr();
    let bytes = req.bytes(token);
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    let answer = exchange_raw(addr, &bytes, head_only, Duration::from_secs(10));
    if !server.borrow_mut().is_alive() {
        return Err(TestCaseError::fail(format!(
            "the server died on this request: {:?}",
            shown(&bytes)
        )));
    }
    let r: Response = match answer {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) if !req.must_be_answered() => {
            seen.borrow_mut().no_answer += 1;
            return Ok(());
        }
        Ok(None) => {
            return Err(TestCaseError::fail(format!(
                "no answer to a well-formed request: {:?}",
                shown(&bytes)
            )))
        }
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "{e} on a well-formed request: {:?}",
                shown(&bytes)
            )))
        }
    };
    *seen.borrow_mut().by_status.entry(r.status).or_default() += 1;
    if std::env::var_os("ATTUNE_FUZZ_VERBOSE").is_some() {
        let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        eprintln!("{} <- {:?} {}", r.status, shown(line), shown(&r.body));
    }
    prop_assert!(
        r.status < 500 || r.status == 503,
        "answered {}: {:?} to {:?}",
        r.status,
        r.text(),
        shown(&bytes)
    );
    if r.status == 503 {
        prop_assert!(
            r.header("retry-after").is_some(),
            "a 503 without Retry-After"
        );
    }
    if (400..600).contains(&r.status) && !head_only {
        if req.well_formed() {
            prop_assert!(
                r.is_json_error(),
                "{} without the JSON error shape: {:?} to {:?}",
                r.status,
                r.text(),
                shown(&bytes)
            );
        } else if !r.is_json_error() {
            *seen
                .borrow_mut()
                .protocol_non_json
                .entry(r.status)
                .or_default() += 1;
        }
    }
    Ok(())
}

#[test]
fn malformed_requests_never_crash_the_server() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let budget = Duration::from_secs(env("ATTUNE_FUZZ_SECS").unwrap_or(25));
    let base_seed = env("ATTUNE_FUZZ_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("fuzzing for {budget:?} with ATTUNE_FUZZ_SEED={base_seed}");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_on(
        &dir.path().join("store"),
        &["--body-limit", &FUZZ_BODY_LIMIT.to_string()],
    );
    let token = server
        .token()
        .expect("the first start prints the token")
        .to_string();
    let server = RefCell::new(server);
    let seen = RefCell::new(Seen::default());
    let started = Instant::now();
    let mut requests = 0;
    // Batches of cases with seeds derived from the base one, until the time is up.
    for batch in 0u64.. {
        if started.elapsed() >= budget {
            break;
        }
        let seed = base_seed.wrapping_add(batch);
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let config = Config {
            cases: CASES_PER_BATCH,
            // A crash makes every later case fail: shrinking would only mislead.
            max_shrink_iters: 0,
            failure_persistence: None,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let result = TestRunner::new_with_rng(config, rng).run(&fuzz_request(), |req| {
            check_one(&server, &token, &req, &seen)
        });
        if let Err(e) = result {
            panic!("{e}\n(reproduce the batch with ATTUNE_FUZZ_SEED={seed})");
        }
        requests += CASES_PER_BATCH;
    }
    let mut server = server.into_inner();
    let health = server.request("GET", "/healthz", None, "");
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(server.is_alive());
    let seen = seen.into_inner();
    eprintln!(
        "{requests} requests in {:.1} s: statuses {:?}; unanswered (malformed or oversized) {}; protocol-level errors without the JSON shape {:?}",
        started.elapsed().as_secs_f64(),
        seen.by_status,
        seen.no_answer,
        seen.protocol_non_json
    );
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}
