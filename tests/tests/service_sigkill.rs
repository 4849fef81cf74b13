//! `attune serve` killed with SIGKILL in the middle of a stream of writes: after a
//! restart every acknowledged event must be there, in order, and nothing that was not sent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attune_tests::http::Server;

// ---------------------------------------------------------------------------------------
// SIGKILL mid-stream
// ---------------------------------------------------------------------------------------

/// Kill-and-restart rounds.
const ROUNDS: u64 = 3;
/// Client threads posting events.
const WRITERS: u64 = 4;
/// Events per user: below the 50 that `GET /v1/users/{id}` lists in `recent`, so that
/// every acknowledged event of a user is visible there.
const EVENTS_PER_USER: u64 = 30;

/// What one writer sent: per user, every item sent and the items acknowledged, in order.
#[derive(Default)]
struct Ledger {
    sent: HashMap<String, Vec<String>>,
    acked: HashMap<String, Vec<String>>,
    acks: usize,
}

/// Posts events (single ones, JSON arrays, JSONL) until the server dies; items are unique,
/// so that each event is one step of its user's sequence.
fn write_until_killed(
    server: std::net::SocketAddr,
    round: u64,
    w: u64,
    killed: &AtomicBool,
) -> Ledger {
    let mut client = attune_tests::http::Client::new(server);
    let mut ledger = Ledger::default();
    let mut n = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (round * 131 + w);
    let kinds = ["view", "click", "cart", "purchase"];
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let batch = 1 + (rng % 4) as usize;
        let mut events = Vec::with_capacity(batch);
        for _ in 0..batch {
            let user = format!("r{round}-w{w}-u{}", n / EVENTS_PER_USER);
            let item = format!("r{round}-w{w}-i{n}");
            let body = serde_json::json!({
                "user": user,
                "kind": kinds[(n % 4) as usize],
                "item": item,
                "ts": 1_700_000_000 + round * 1_000_000 + n,
            });
            ledger
                .sent
                .entry(user.clone())
                .or_default()
                .push(item.clone());
            events.push((user, item, body));
            n += 1;
        }
        let body = match (batch, rng % 2) {
            (1, _) => events[0].2.to_string(),
            (_, 0) => serde_json::Value::from_iter(events.iter().map(|e| e.2.clone())).to_string(),
            _ => events.iter().map(|e| format!("{}\n", e.2)).collect(),
        };
        match client.call("POST", "/v1/events", None, body.as_bytes()) {
            Ok(r) if r.status == 200 => {
                assert_eq!(r.json()["accepted"], batch, "{}", r.text());
                for (user, item, _) in events {
                    ledger.acked.entry(user).or_default().push(item);
                    ledger.acks += 1;
                }
            }
            Ok(r) if r.status == 503 => std::thread::sleep(Duration::from_millis(5)),
            Ok(r) => panic!("POST /v1/events answered {}: {}", r.status, r.text()),
            Err(e) => {
                assert!(
                    killed.load(Ordering::SeqCst),
                    "writer {w} failed before the kill: {e}"
                );
                return ledger;
            }
        }
    }
}

/// Every acknowledged event of every user is in the user's history, in order, and the
/// history holds nothing that was not sent.
fn check_histories(server: &Server, ledgers: &[Ledger]) -> usize {
    let mut client = server.client();
    let mut checked = 0;
    for ledger in ledgers {
        for (user, sent) in &ledger.sent {
            let r = client
                .call("GET", &format!("/v1/users/{user}"), None, b"")
                .expect("GET /v1/users/{id}");
            assert_eq!(r.status, 200, "{}", r.text());
            let recent: Vec<String> = r.json()["recent"]
                .as_array()
                .expect("recent")
                .iter()
                .map(|v| v.as_str().expect("an item id").to_string())
                .collect();
            let sent: HashSet<&String> = sent.iter().collect();
            for item in &recent {
                assert!(sent.contains(item), "{user}: {item} was never sent");
            }
            let acked = ledger.acked.get(user).map_or(&[][..], Vec::as_slice);
            let mut it = recent.iter();
            for item in acked {
                assert!(
                    it.any(|r| r == item),
                    "{user}: acknowledged {item} is missing or out of order; history {recent:?}, acknowledged {acked:?}"
                );
            }
            checked += acked.len();
        }
    }
    checked
}

#[test]
fn acknowledged_events_survive_sigkill_of_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mut server = Server::start_on(&store, &[]);
    let mut ledgers: Vec<Ledger> = Vec::new();
    for round in 0..ROUNDS {
        let killed = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (addr, killed) = (server.addr(), Arc::clone(&killed));
                std::thread::spawn(move || write_until_killed(addr, round, w, &killed))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1000 + 500 * round));
        killed.store(true, Ordering::SeqCst);
        server.kill();
        let round_ledgers: Vec<Ledger> = writers
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect();
        let acks: usize = round_ledgers.iter().map(|l| l.acks).sum();
        assert!(acks >= 20, "round {round}: only {acks} events acknowledged");
        ledgers.extend(round_ledgers);

        server = Server::start_on(&store, &[]);
        let checked = check_histories(&server, &ledgers);
        eprintln!("round {round}: {acks} events acknowledged before SIGKILL; {checked} checked after the restart");
    }
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}
