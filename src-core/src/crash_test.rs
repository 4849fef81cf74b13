//! Crash testing of the store's durability contract: a child process appends events from
//! several threads and prints an acknowledgement after each append returns; the parent
//! kills it with SIGKILL at a random moment, reopens the store and checks that every
//! acknowledged event is present, in order, and that the log and the per-user index agree.
//!
//! Used by the test suite (a few dozen rounds) and by `attune crash-test` (as many as asked).
//!
//! After each round only what the round added is read back (the events past those already
//! verified, the index of their users, the round's acknowledgements); every
//! [`CrashTestOptions::full_check_every`] rounds and after the last, the whole store is
//! checked against every acknowledgement, so damage a later round did to earlier data is
//! still found. Checking everything every round made 1,000 rounds quadratic (28 min).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::event::{Action, Event, RawEvent};
use crate::store::{Store, StoreConfig};

/// How long a child appends before stopping on its own if nobody kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// One acknowledged append, as printed by the child: `ack TAG WRITER C0 C1 S0 S1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub tag: String,
    pub writer: usize,
    /// Counter of the first and last event of the batch (their timestamps, in ms).
    pub counters: (u64, u64),
    /// Sequence numbers of the first and last event.
    pub seqs: (u64, u64),
}

impl Ack {
    fn parse(line: &str) -> Option<Ack> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 7 || f[0] != "ack" {
            return None;
        }
        Some(Ack {
            tag: f[1].to_owned(),
            writer: f[2].parse().ok()?,
            counters: (f[3].parse().ok()?, f[4].parse().ok()?),
            seqs: (f[5].parse().ok()?, f[6].parse().ok()?),
        })
    }
}

fn writer_user(tag: &str, writer: usize) -> String {
    format!("{tag}-w{writer}")
}

/// The child side: `writers` threads append batches of 1–20 events until killed (or for
/// at most a minute), printing an [`Ack`] line after each append returns.
pub fn append_loop(store: &Store, writers: usize, tag: &str, out: impl Write + Send) -> Result<()> {
    let out = Arc::new(Mutex::new(out));
    let deadline = Instant::now() + CHILD_LIFETIME;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let out = Arc::clone(&out);
                s.spawn(move || -> Result<()> {
                    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(w as u64);
                    let user = writer_user(tag, w);
                    let mut counter = 0u64;
                    while Instant::now() < deadline {
                        let n = rng.gen_range(1..=20u64);
                        let batch: Vec<RawEvent> = (counter..counter + n)
                            .map(|c| Event {
                                user: user.clone(),
                                ts: c as i64,
                                action: Action::Click {
                                    item: format!("i{}", c % 97),
                                },
                            })
                            .collect();
                        let seqs = store.append(&batch)?;
                        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                        writeln!(
                            o,
                            "ack {tag} {w} {counter} {} {} {}",
                            counter + n - 1,
                            seqs.start,
                            seqs.end - 1
                        )
                        .and_then(|_| o.flush())
                        .map_err(|e| Error::io("stdout", e))?;
                        counter += n;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::internal("a writer thread panicked"))??;
        }
        Ok(())
    })
}

/// Checks a reopened store against the acknowledgements of earlier rounds.
///
/// Every acknowledged event is present with its content and order; sequence numbers are
/// gap-free; every item event has its per-user index entry. Returns the number of events.
pub fn verify(store: &Store, acks: &[Ack]) -> std::result::Result<u64, String> {
    verify_since(store, &mut Verified::default(), acks)
}

/// What the checks so far established, carried from round to round.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// Events checked: sequence numbers `0..events` are present and gap-free.
    pub events: u64,
    /// Item events per user among them (what the user's index must hold).
    index: HashMap<u32, u64>,
}

/// Checks what a round added: the events from `verified.events` on (gap-free), the index
/// of the users they belong to, and `acks` (the round's), which must lie among them.
/// Advances `verified`; returns the number of events.
pub fn verify_since(
    store: &Store,
    verified: &mut Verified,
    acks: &[Ack],
) -> std::result::Result<u64, String> {
    let (users, _) = store.interners();
    let mut n = verified.events;
    let mut by_seq: HashMap<u64, Event> = HashMap::new();
    let mut touched: Vec<u32> = Vec::new();
    for ev in store.events(verified.events..u64::MAX) {
        let (seq, ev) = ev.map_err(|e| format!("reading the log: {e}"))?;
        if seq != n {
            return Err(format!("sequence gap: expected {n}, found {seq}"));
        }
        n += 1;
        if ev.action.item().is_some() {
            *verified.index.entry(ev.user).or_default() += 1;
            touched.push(ev.user);
        }
        by_seq.insert(seq, ev);
    }
    touched.sort_unstable();
    touched.dedup();
    for user in touched {
        let count = verified.index[&user];
        let h = store
            .user_history(user)
            .map_err(|e| format!("reading user {user}: {e}"))?;
        if h.len() as u64 != count {
            return Err(format!(
                "user {user}: {} index entries for {count} events",
                h.len()
            ));
        }
    }
    for ack in acks {
        if ack.seqs.0 < verified.events {
            return Err(format!(
                "acknowledged events {}..={} lie among those verified before the round ({ack:?})",
                ack.seqs.0, ack.seqs.1
            ));
        }
        check_ack(ack, &by_seq, &users)?;
    }
    verified.events = n;
    Ok(n)
}

/// `ack`'s events are in `by_seq`, each the writer's, with the counter as its timestamp.
fn check_ack(
    ack: &Ack,
    by_seq: &HashMap<u64, Event>,
    users: &crate::ids::Interner,
) -> std::result::Result<(), String> {
    let want_user = writer_user(&ack.tag, ack.writer);
    for (i, seq) in (ack.seqs.0..=ack.seqs.1).enumerate() {
        let ev = by_seq
            .get(&seq)
            .ok_or_else(|| format!("acknowledged event {seq} is missing ({ack:?})"))?;
        let user = users.name(ev.user).unwrap_or("?");
        let want_ts = (ack.counters.0 + i as u64) as i64;
        if user != want_user || ev.ts != want_ts {
            return Err(format!(
                "event {seq} is ({user}, {}), expected ({want_user}, {want_ts})",
                ev.ts
            ));
        }
    }
    Ok(())
}

/// Settings of a crash test.
#[derive(Debug, Clone)]
pub struct CrashTestOptions {
    /// The `attune` executable to run as the child.
    pub exe: PathBuf,
    /// Store directory (reused across rounds).
    pub dir: PathBuf,
    pub rounds: usize,
    pub writers: usize,
    pub seed: u64,
    /// The child is killed at a uniformly random time in `[5 ms, max_kill_after]` after it
    /// printed its first acknowledgement.
    pub max_kill_after: Duration,
    /// Every this many rounds (and after the last) the whole store is checked against
    /// every acknowledgement; the other rounds check what they added (0: every round).
    pub full_check_every: usize,
}

/// The default of [`CrashTestOptions::full_check_every`].
pub const FULL_CHECK_EVERY: usize = 100;

/// What a crash test saw.
#[derive(Debug, Clone, Default)]
pub struct CrashReport {
    pub rounds: usize,
    /// Acknowledged appends (batches), over all rounds.
    pub acks: usize,
    /// Events in the store at the end.
    pub events: u64,
}

/// Runs the rounds; stops at the first violated invariant with an error that says which.
pub fn run_crash_test(
    opts: &CrashTestOptions,
    mut on_round: impl FnMut(usize, &CrashReport),
) -> Result<CrashReport> {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(opts.seed);
    let mut acks: Vec<Ack> = Vec::new();
    let mut verified = Verified::default();
    let mut report = CrashReport::default();
    for round in 0..opts.rounds {
        let tag = format!("r{round}");
        let mut child = Command::new(&opts.exe)
            .args(["append-loop", "--store"])
            .arg(&opts.dir)
            .args(["--writers", &opts.writers.to_string(), "--tag", &tag])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io(&opts.exe, e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::internal("the child's stdout was not captured"))?;
        let (tx, rx) = crossbeam_channel::unbounded::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement (the store is open and writing), then kill
        // at a random moment.
        let first = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
            Error::internal(format!(
                "round {round}: the child acknowledged nothing in 30 s"
            ))
        })?;
        let max = opts.max_kill_after.as_micros().max(5_001) as u64;
        std::thread::sleep(Duration::from_micros(rng.gen_range(5_000..max)));
        child.kill().map_err(|e| Error::io(&opts.exe, e))?;
        let _ = child.wait();
        let _ = reader.join();
        let before = acks.len();
        for line in std::iter::once(first).chain(rx.try_iter()) {
            if let Some(ack) = Ack::parse(&line) {
                acks.push(ack);
                report.acks += 1;
            }
        }
        let store = Store::open(&opts.dir, StoreConfig::default())?;
        let last = round + 1 == opts.rounds;
        let full = last || opts.full_check_every <= 1 || (round + 1) % opts.full_check_every == 0;
        let checked = if full {
            verified = Verified::default();
            verify_since(&store, &mut verified, &acks)
        } else {
            verify_since(&store, &mut verified, &acks[before..])
        };
        report.events = checked
            .map_err(|m| Error::internal(format!("round {round}: durability violated: {m}")))?;
        report.rounds = round + 1;
        on_round(round, &report);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clicks(store: &Store, user: &str, n: u64) {
        let batch: Vec<RawEvent> = (0..n)
            .map(|c| Event {
                user: user.to_owned(),
                ts: c as i64,
                action: Action::Click {
                    item: format!("i{c}"),
                },
            })
            .collect();
        store.append(&batch).expect("append");
    }

    fn ack(tag: &str, counters: (u64, u64), seqs: (u64, u64)) -> Ack {
        Ack {
            tag: tag.to_owned(),
            writer: 0,
            counters,
            seqs,
        }
    }

    #[test]
    fn each_round_checks_what_it_added_and_finds_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
        let mut v = Verified::default();
        clicks(&store, "r0-w0", 5);
        let first = [ack("r0", (0, 4), (0, 4))];
        assert_eq!(verify_since(&store, &mut v, &first), Ok(5));
        clicks(&store, "r1-w0", 3);
        let second = [ack("r1", (0, 2), (5, 7))];
        assert_eq!(verify_since(&store, &mut v, &second), Ok(8));
        // The full check agrees with the rounds'.
        assert_eq!(
            verify(&store, &[first[0].clone(), second[0].clone()]),
            Ok(8)
        );

        // An acknowledgement of events that are not there, or of events an earlier round
        // already owned, is a violation.
        let missing = verify_since(&store, &mut v.clone(), &[ack("r2", (0, 1), (8, 9))]);
        assert!(missing.is_err_and(|m| m.contains("missing")));
        let stale = verify_since(&store, &mut v.clone(), &[ack("r2", (0, 1), (2, 3))]);
        assert!(stale.is_err_and(|m| m.contains("verified before")));
        // An acknowledgement whose events belong to another writer.
        clicks(&store, "r2-w0", 2);
        let wrong = verify_since(&store, &mut v, &[ack("r9", (0, 1), (8, 9))]);
        assert!(wrong.is_err_and(|m| m.contains("expected (r9-w0")));
    }
}
