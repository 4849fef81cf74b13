//! Thread priorities. On a small machine the request path (session actors, compute
//! threads, the log writer) and the background work (the learner, the store's indexer,
//! fine-tuning) share two or so cores; when both want the CPU, requests should win, or
//! the background's bursts become the requests' tail latency. Measured on 2 cores: the
//! indexer, niced to 19, still ran 4 ms rounds while a request thread waited, since the
//! scheduler lets a running thread finish its slice; Linux's `SCHED_IDLE` policy is
//! preempted as soon as a normal thread wakes, and still gets a small share of a busy
//! CPU (it is slowed, never stopped).
//!
//! It also holds the one process-wide memory knob serving wants,
//! [`avoid_huge_pages`]: the request path allocates and frees small buffers all the time,
//! and with transparent huge pages each page the allocator hands back and reuses is
//! faulted in again as a whole 2 MiB page, zeroed (measured on 2 cores at 20,000
//! recommendations/s: `clear_page_erms` 5% of the CPU, the engine's p99 2.9–3.4 ms with
//! them against 1.7 ms without).
//!
//! And [`available_bytes`], the free space the store keeps a reserve of.
//!
//! The crate's one use of `unsafe`: libc calls with no memory arguments but a
//! `sched_param` read by the kernel and a `statvfs` it fills.
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

/// Bytes available to this process on the file system holding `path` (`statvfs`).
pub(crate) fn available_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
        // SAFETY: `c` is a valid NUL-terminated string and `st` a zeroed struct the call
        // fills; both outlive the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Err(std::io::Error::other(
            "free space is not measured on this platform",
        ))
    }
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

/// Turns transparent huge pages off for this process (Linux `PR_SET_THP_DISABLE`; memory
/// already in huge pages stays so). For serving processes: the request path's small,
/// short-lived allocations make the allocator return pages and fault them in again,
/// and each fault of a huge page zeroes 2 MiB. Training, with its large long-lived
/// buffers, is better left with them. The `attune serve`, `attune demo` and `attune simulate`
/// commands call it; a host embedding the engine decides for its own process. Returns whether
/// the process now runs without them (false where the platform cannot say or refused).
pub fn avoid_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments only; PR_SET_THP_DISABLE changes this
        // process's memory policy, nothing that Rust's memory model relies on.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not turn transparent huge pages off"
            );
        }
        huge_pages_avoided() == Some(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Whether [`avoid_huge_pages`] is in effect for this process; `None` where the platform
/// cannot tell.
pub fn huge_pages_avoided() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments only, reading a flag.
        let rc = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        (rc >= 0).then_some(rc == 1)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_can_be_turned_off_for_the_process() {
        // Other tests of this binary run in the same process: they only lose huge pages.
        assert!(avoid_huge_pages());
        assert_eq!(huge_pages_avoided(), Some(true));
    }

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
