//! One rule for every thread the store and the engine run: [`Supervisor::spawn`] names
//! the thread, sets its priority, runs its body under `catch_unwind`, and reports its
//! death the moment it happens, from the dying thread itself (no polling). A thread
//! dies when its body panics or returns an error; returning `Ok` is a clean stop.
//!
//! A death is a [`Fault`]: logged at error level, counted, and kept. While any fault is
//! kept the store refuses every write ([`Supervisor::check_writable`], an atomic load on
//! the write path) and the service's `/healthz` answers 503 naming the thread and why
//! (see ARCHITECTURE.md, "Supervision"). The process keeps serving reads so that callers
//! can move away, and an operator (or systemd, Kubernetes) restarts it: on the next open
//! every session, count and weight is rebuilt from the store, which holds everything that
//! was acknowledged.
//!
//! One kind of thread is restarted instead: a stateless worker ([`Restart::InPlace`],
//! the inference compute threads) whose panic loses only the batch it held. Its body is
//! run again on the same OS thread, so whoever joins it at shutdown is unaffected; more
//! than `max` restarts within `within` make its death a fault like any other.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::os::BackgroundPriority;

/// A thread that died: which, why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Fault {
    /// The thread's name (`attune-log-writer`, `attune-compute-0`, ...).
    pub thread: String,
    /// The panic message or the error it stopped with.
    pub reason: String,
    /// When it died, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "thread {} died: {}", self.thread, self.reason)
    }
}

/// What happens when a thread's body dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The death is a fault: the process stops taking writes until it is restarted.
    Never,
    /// The body runs again on the same thread, up to `max` times within `within`; one
    /// more death in that window is a fault.
    InPlace { max: u32, within: Duration },
}

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    #[cfg(test)]
    inject: std::collections::HashSet<String>,
}

#[derive(Default)]
struct Inner {
    /// Set once the first fault is kept: the write path's one check.
    failed: AtomicBool,
    restarts: AtomicU64,
    state: Mutex<State>,
}

/// The faults of the threads it started, shared by the store, the engine and the service.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("faults", &self.faults())
            .finish()
    }
}

/// The handle of a supervised thread.
#[derive(Debug)]
pub struct Supervised {
    handle: JoinHandle<()>,
    tid: i32,
}

impl Supervised {
    /// Waits for the thread to end (its death, if it died, is already reported).
    pub fn join(self) {
        let _ = self.handle.join();
    }

    /// The thread's kernel id (0 where the platform has none), to change its priority.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

thread_local! {
    /// The supervisor and name of the supervised thread running here, for [`checkpoint`].
    static CURRENT: RefCell<Option<(Supervisor, String)>> = const { RefCell::new(None) };
}

impl Supervisor {
    /// A supervisor with no faults.
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Starts `body` on a thread named `name` at `priority`; its death is reported as
    /// `restart` says. Returns once the thread runs (with its kernel id known).
    pub fn spawn<F>(
        &self,
        name: impl Into<String>,
        priority: BackgroundPriority,
        restart: Restart,
        body: F,
    ) -> Result<Supervised>
    where
        F: FnMut() -> Result<()> + Send + 'static,
    {
        let name = name.into();
        let sup = self.clone();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread_name = name.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                crate::os::set_background(0, priority);
                let _ = tid_tx.send(crate::os::current_tid());
                CURRENT.with(|c| *c.borrow_mut() = Some((sup.clone(), thread_name.clone())));
                sup.run(&thread_name, restart, body);
            })
            .map_err(|e| Error::io(format!("{name} thread"), e))?;
        let tid = tid_rx.recv().unwrap_or(0);
        Ok(Supervised { handle, tid })
    }

    fn run<F>(&self, name: &str, restart: Restart, mut body: F)
    where
        F: FnMut() -> Result<()>,
    {
        let mut deaths: VecDeque<Instant> = VecDeque::new();
        loop {
            let reason = match catch_unwind(AssertUnwindSafe(&mut body)) {
                Ok(Ok(())) => return,
                Ok(Err(e)) => format!("stopped with an error: {}", crate::error::report(&e)),
                Err(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
            };
            if let Restart::InPlace { max, within } = restart {
                let now = Instant::now();
                while deaths
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > within)
                {
                    deaths.pop_front();
                }
                if deaths.len() < max as usize {
                    deaths.push_back(now);
                    self.inner.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(thread = name, %reason, "thread died; restarting it");
                    continue;
                }
            }
            self.report(Fault {
                thread: name.to_string(),
                reason,
                at_ms: crate::store::now_ms().max(0) as u64,
            });
            return;
        }
    }

    /// Keeps `fault`: from now on writes are refused and health fails.
    pub fn report(&self, fault: Fault) {
        tracing::error!(thread = %fault.thread, reason = %fault.reason,
            "thread died: writes are refused and health fails until the process restarts");
        self.lock().faults.push(fault);
        self.inner.failed.store(true, Ordering::Release);
    }

    /// The faults kept so far, oldest first.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    /// Whether a fault is kept.
    pub fn is_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    /// Deaths of restartable threads that were restarted in place.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// `Ok` while no fault is kept; else the error every write answers.
    pub fn check_writable(&self) -> Result<()> {
        if !self.is_failed() {
            return Ok(());
        }
        Err(self.unhealthy())
    }

    /// The error a write answers while a fault is kept (the first one named).
    pub fn unhealthy(&self) -> Error {
        let faults = self.faults();
        let first = faults
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "no fault".into());
        let more = match faults.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Error::Unhealthy(format!(
            "{first}{more}; writes are refused until the service restarts \
             (everything acknowledged is in the store)"
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next [`checkpoint`] on the thread named `thread` panic (tests only).
    #[cfg(test)]
    pub(crate) fn inject_panic(&self, thread: &str) {
        self.lock().inject.insert(thread.to_string());
    }
}

/// A point where a supervised thread's loop can be made to die in tests (a no-op
/// otherwise): each thread calls it once per wake-up.
#[inline(always)]
pub(crate) fn checkpoint() {
    #[cfg(test)]
    CURRENT.with(|c| {
        if let Some((sup, name)) = c.borrow().as_ref() {
            if sup.lock().inject.remove(name) {
                panic!("fault injected into {name}");
            }
        }
    });
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with no message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_a_fault_named_after_its_thread() {
        let sup = Supervisor::new();
        sup.check_writable().expect("ok");
        let t = sup
            .spawn(
                "attune-test",
                BackgroundPriority::Normal,
                Restart::Never,
                || panic!("boom"),
            )
            .expect("ok");
        t.join();
        let faults = sup.faults();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].thread, "attune-test");
        assert!(faults[0].reason.contains("boom"), "{:?}", faults[0]);
        let e = sup.check_writable().expect_err("refused").to_string();
        assert!(e.contains("attune-test") && e.contains("boom"), "{e}");
    }

    #[test]
    fn an_error_is_a_fault_and_ok_is_a_clean_stop() {
        let sup = Supervisor::new();
        sup.spawn("clean", BackgroundPriority::Normal, Restart::Never, || {
            Ok(())
        })
        .expect("ok")
        .join();
        assert!(!sup.is_failed());
        sup.spawn(
            "failing",
            BackgroundPriority::Normal,
            Restart::Never,
            || Err(Error::internal("disk gone")),
        )
        .expect("ok")
        .join();
        assert!(sup.faults()[0].reason.contains("disk gone"));
    }

    #[test]
    fn in_place_restarts_are_bounded() {
        let sup = Supervisor::new();
        let mut runs = 0;
        let restart = Restart::InPlace {
            max: 2,
            within: Duration::from_secs(60),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        sup.spawn("worker", BackgroundPriority::Normal, restart, move || {
            runs += 1;
            let _ = tx.send(runs);
            panic!("run {runs}")
        })
        .expect("ok")
        .join();
        assert_eq!(rx.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(sup.restarts(), 2);
        assert_eq!(sup.faults().len(), 1);
        assert!(sup.faults()[0].reason.contains("run 3"));
    }

    #[test]
    fn an_injected_fault_fires_at_the_threads_checkpoint() {
        let sup = Supervisor::new();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = sup
            .spawn(
                "looper",
                BackgroundPriority::Normal,
                Restart::Never,
                move || {
                    while go_rx.recv().is_ok() {
                        checkpoint();
                    }
                    Ok(())
                },
            )
            .expect("ok");
        go_tx.send(()).expect("ok");
        sup.inject_panic("looper");
        go_tx.send(()).expect("ok");
        t.join();
        assert!(sup.faults()[0]
            .reason
            .contains("fault injected into looper"));
    }
}
