//! Thread priorities. On a small machine the request path (session actors, compute
//! threads, the log writer) and the background work (the learner, the store's indexer,
//! fine-tuning) share two or so cores; when both want the CPU, requests should win, or
//! the background's bursts become the requests' tail latency. Measured on 2 cores: the
//! indexer, niced to 19, still ran 4 ms rounds while a request thread waited, since the
//! scheduler lets a running thread finish its slice; Linux's `SCHED_IDLE` policy is
//! preempted as soon as a normal thread wakes, and still gets a small share of a busy
//! CPU (it is slowed, never stopped).
//!
//! The crate's one use of `unsafe`: libc calls with no memory arguments but a
//! `sched_param` read by the kernel.
#![allow(unsafe_code)]

use serde::{Deserialize, Serialize};

/// How background threads are scheduled against the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackgroundPriority {
    /// `SCHED_IDLE` (Linux): runs on what requests leave, preempted when they wake.
    #[default]
    Idle,
    /// Nice 19: a small share under load, but a running slice is not cut short.
    Low,
    /// The request path's own priority.
    Normal,
}

/// The calling thread's kernel id, or 0 where there is none.
pub(crate) fn current_tid() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Schedules thread `tid` (0: the calling thread) as `priority` says. Best effort: a
/// refusal is logged at debug level, not an error, since the engine works the same at
/// any priority (only its latency under load differs).
pub(crate) fn set_background(tid: i32, priority: BackgroundPriority) {
    #[cfg(target_os = "linux")]
    {
        let (policy, nice) = match priority {
            BackgroundPriority::Idle => (libc::SCHED_IDLE, 19),
            BackgroundPriority::Low => (libc::SCHED_OTHER, 19),
            BackgroundPriority::Normal => return,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: the kernel reads `param`, which lives across the call; a thread id
        // addresses that thread (Linux schedules threads, not processes). Lowering a
        // thread's own policy or nice value needs no privilege.
        let rc = unsafe {
            let rc = libc::sched_setscheduler(tid, policy, &param);
            if rc == 0 {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
            } else {
                rc
            }
        };
        if rc != 0 {
            tracing::debug!(
                tid,
                ?priority,
                error = %std::io::Error::last_os_error(),
                "could not lower a background thread's priority"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (tid, priority);
    }
}

/// The scheduling of thread `tid` (0: the calling thread): `Idle` for `SCHED_IDLE`, `Low`
/// for a positive nice value, else `Normal`; `None` where the platform cannot tell.
pub fn priority_of(tid: i32) -> Option<BackgroundPriority> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: both calls read integers only; getpriority may return -1 legitimately,
        // so its errors are told by errno.
        unsafe {
            let policy = libc::sched_getscheduler(tid);
            if policy < 0 {
                return None;
            }
            if policy == libc::SCHED_IDLE {
                return Some(BackgroundPriority::Idle);
            }
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            if *libc::__errno_location() != 0 {
                return None;
            }
            Some(if nice > 0 {
                BackgroundPriority::Low
            } else {
                BackgroundPriority::Normal
            })
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_thread_can_lower_its_own_priority_and_others_keep_theirs() {
        let before = priority_of(0).expect("a priority");
        for p in [BackgroundPriority::Idle, BackgroundPriority::Low] {
            let got = std::thread::spawn(move || {
                set_background(0, p);
                priority_of(0)
            })
            .join()
            .expect("thread");
            assert_eq!(got, Some(p));
        }
        assert_eq!(
            priority_of(0),
            Some(before),
            "only the thread itself is lowered"
        );
    }
}
