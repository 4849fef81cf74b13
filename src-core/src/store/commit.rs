//! Group commit: many writers, one flush.
//!
//! A writer applies its batch to sled (in memory), takes a ticket, and waits until a flush
//! that started after its batch was applied has finished. One background thread runs the
//! flushes: it wakes when tickets are pending, waits until `min_flush_interval` has
//! passed since the previous flush started if that flush covered several writes or writes
//! arrived while it ran (under concurrent writers this paces the flushes; after a quiet
//! spell, or for one writer waiting on each append, it does not wait), optionally waits
//! `max_flush_delay` more to let more writers join, flushes sled (fsync), and releases
//! every ticket it covered.
//! Writers that arrive while a flush runs are covered by the next one, so concurrent
//! appends share flushes without any writer waiting longer than two flushes plus the
//! interval and the delay.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::os::BackgroundPriority;
use crate::supervise::{checkpoint, Restart, Supervised, Supervisor};

/// How many failed flushes are remembered for writers that have not woken yet.
const MAX_REMEMBERED_FAILURES: usize = 64;

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out: batches applied to sled, not necessarily durable.
    issued: u64,
    /// Tickets covered by a finished flush.
    durable: u64,
    /// Recent failed flushes: the ticket range `(from, to]` each covered, and the error.
    failures: Vec<(u64, u64, Arc<sled::Error>)>,
    shutdown: bool,
    /// Set when the flusher thread died: nothing will be flushed any more.
    dead: bool,
    flushes: u64,
    /// Async writers waiting for their ticket, released by the flusher.
    waiters: Vec<(u64, tokio::sync::oneshot::Sender<Result<()>>)>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signals writers that `durable` moved.
    durable_cv: Condvar,
    /// Signals the flusher that tickets are pending or shutdown was asked.
    pending_cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer panicking while holding this lock leaves plain counters behind: still valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The group-commit coordinator and its flusher thread.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    /// False: tickets are durable as soon as issued (scratch stores).
    fsync: bool,
    flusher: Mutex<Option<Supervised>>,
}

impl GroupCommit {
    /// Starts the flusher thread over `db`, supervised by `sup`.
    pub fn start(db: super::DbCell, pacing: Pacing, fsync: bool, sup: &Supervisor) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let flusher = sup.spawn(
            "attune-flusher",
            BackgroundPriority::Normal,
            Restart::Never,
            {
                let sup = sup.clone();
                move || {
                    let _dying = FailWaitersIfDying(&s);
                    flush_loop(&s, &db, pacing, &sup);
                    Ok(())
                }
            },
        )?;
        Ok(GroupCommit {
            shared,
            fsync,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    /// Whether tickets wait for a flush (false: a scratch store).
    pub fn durable(&self) -> bool {
        self.fsync
    }

    /// Takes a ticket for a batch that has just been applied. Call it while still holding
    /// the writer lock so tickets follow apply order.
    pub fn ticket(&self) -> Result<u64> {
        let mut st = self.shared.lock();
        if st.shutdown {
            return Err(Error::ShutDown);
        }
        if st.dead {
            return Err(flusher_dead());
        }
        st.issued += 1;
        let t = st.issued;
        if self.fsync {
            self.shared.pending_cv.notify_one();
        } else {
            st.durable = t;
        }
        Ok(t)
    }

    /// Blocks until the ticket's batch is durable.
    pub fn wait(&self, ticket: u64) -> Result<()> {
        let mut st = self.shared.lock();
        loop {
            if st.durable >= ticket {
                return ticket_outcome(&st, ticket);
            }
            if st.dead {
                return Err(flusher_dead());
            }
            st = self
                .shared
                .durable_cv
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A future-friendly [`GroupCommit::wait`]: the receiver gets the ticket's outcome once
    /// a flush covers it, without blocking a thread meanwhile.
    pub fn wait_async(&self, ticket: u64) -> tokio::sync::oneshot::Receiver<Result<()>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut st = self.shared.lock();
        if st.durable >= ticket {
            // The receiver may be gone already; nothing then waits for the outcome.
            let _ = tx.send(ticket_outcome(&st, ticket));
        } else if st.dead {
            let _ = tx.send(Err(flusher_dead()));
        } else {
            st.waiters.push((ticket, tx));
        }
        rx
    }

    /// Number of flushes run so far (for metrics and tests of grouping).
    pub fn flushes(&self) -> u64 {
        self.shared.lock().flushes
    }

    /// Flushes what is pending and stops the flusher thread.
    pub fn shutdown(&self) {
        {
            let mut st = self.shared.lock();
            st.shutdown = true;
            self.shared.pending_cv.notify_all();
        }
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            h.join();
        }
    }
}

fn flusher_dead() -> Error {
    Error::Unconfirmed(
        "thread attune-flusher died before flushing the write: it may or may not be durable".into(),
    )
}

/// Dropped when the flusher's body ends: if it ends by a panic, every writer waiting for
/// a flush is told at once instead of waiting forever.
struct FailWaitersIfDying<'a>(&'a Shared);

impl Drop for FailWaitersIfDying<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut st = self.0.lock();
        st.dead = true;
        for (_, tx) in std::mem::take(&mut st.waiters) {
            let _ = tx.send(Err(flusher_dead()));
        }
        self.0.durable_cv.notify_all();
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The outcome of a ticket that a flush covered.
fn ticket_outcome(st: &State, ticket: u64) -> Result<()> {
    match st.failures.iter().find(|f| f.0 < ticket && ticket <= f.1) {
        Some(f) => Err(Error::Flush(f.2.clone())),
        None => Ok(()),
    }
}

/// When the flusher flushes (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    pub max_flush_delay: Duration,
    pub min_flush_interval: Duration,
}

fn flush_loop(shared: &Shared, db: &super::DbCell, pacing: Pacing, sup: &Supervisor) {
    // When the last flush started, if it covered several writes or writes arrived while
    // it ran (concurrent writers, or a stream); otherwise the next flush is not paced, so
    // a writer that appends one batch at a time and waits for each is never held back.
    let mut busy_since: Option<Instant> = None;
    loop {
        {
            let mut st = shared.lock();
            while st.issued == st.durable && !st.shutdown {
                st = shared
                    .pending_cv
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if st.issued == st.durable && st.shutdown {
                return;
            }
        }
        checkpoint();
        if let Some(t) = busy_since {
            std::thread::sleep(
                (t + pacing.min_flush_interval).saturating_duration_since(Instant::now()),
            );
        }
        if !pacing.max_flush_delay.is_zero() {
            std::thread::sleep(pacing.max_flush_delay);
        }
        let started = Instant::now();
        // Every ticket up to `target` was applied to sled before it was issued.
        let (target, covered) = {
            let st = shared.lock();
            (st.issued, st.issued - st.durable)
        };
        // The database in force now: what a compaction swapped in holds every write
        // applied before it (it copies them under the writer lock).
        let outcome = db.load().flush();
        let mut st = shared.lock();
        st.flushes += 1;
        if let Err(e) = outcome {
            // After a failed fsync what reached the disk is unknown, and retrying the fsync
            // may report success for data the kernel has dropped (PostgreSQL's
            // "fsyncgate"): stop taking writes until a restart recovers from the disk.
            sup.report(crate::supervise::Fault {
                thread: "attune-flusher".into(),
                reason: format!("a flush (fsync) failed: {e}"),
                at_ms: crate::store::now_ms().max(0) as u64,
            });
            // Fail the covered tickets rather than retry forever on a broken disk.
            if st.failures.len() >= MAX_REMEMBERED_FAILURES {
                st.failures.remove(0);
            }
            let from = st.durable;
            st.failures.push((from, target, Arc::new(e)));
        }
        st.durable = st.durable.max(target);
        let durable = st.durable;
        busy_since = (covered > 1 || st.issued > durable).then_some(started);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiters)
            .into_iter()
            .partition(|(t, _)| *t <= durable);
        st.waiters = waiting;
        for (ticket, tx) in ready {
            let _ = tx.send(ticket_outcome(&st, ticket));
        }
        shared.durable_cv.notify_all();
    }
}
