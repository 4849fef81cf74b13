//! Free space on the store's disk, checked before a write reaches sled.
//!
//! sled does not recover from a write that fails for want of space: once an I/O error
//! reaches its log, every later write fails until the store is reopened, and what it held
//! in memory may still reach the disk at the next flush (so an answer "not written" could
//! be wrong). So the store keeps `StoreConfig::min_free_bytes` free: a write that finds
//! less refuses at once with [`Error::StorageFull`] (HTTP 507), before anything is
//! applied, so "nothing was written" is true; and once space is back the next write
//! goes through by itself. The check is one `statvfs` (a microsecond or two), made at
//! most every [`RECHECK_MS`] while more than [`PLENTY`] times the reserve is available, and
//! at every write below that: writes in one interval can take more than the reserve (a
//! test writing back to back on a tmpfs took over 1 MiB in 200 ms).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};

/// While space is plentiful, how long a measurement is trusted.
const RECHECK_MS: u64 = 200;
/// Space is plentiful above this many times `min_free_bytes`.
const PLENTY: u64 = 4;

/// Short of space: what was measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StorageFull {
    /// Bytes available on the store's file system.
    pub available_bytes: u64,
    /// Bytes the store keeps free (`min_free_bytes`).
    pub min_free_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Space {
    path: PathBuf,
    min_free: u64,
    started: Instant,
    /// When the last measurement was taken (ms since `started`, +1; 0: never).
    checked_ms: AtomicU64,
    available: AtomicU64,
    short: AtomicBool,
}

impl Space {
    pub fn new(path: PathBuf, min_free: u64) -> Space {
        Space {
            path,
            min_free,
            started: Instant::now(),
            checked_ms: AtomicU64::new(0),
            available: AtomicU64::new(u64::MAX),
            short: AtomicBool::new(false),
        }
    }

    /// `Ok` if the disk has more than `min_free_bytes` available (measured now if the
    /// last measurement is stale or found space short).
    pub fn check(&self) -> Result<()> {
        if self.min_free == 0 {
            return Ok(());
        }
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.checked_ms.load(Ordering::Relaxed);
        let close = self.available.load(Ordering::Relaxed) / PLENTY < self.min_free;
        if close || last == 0 || now - last >= RECHECK_MS {
            self.measure(now);
        }
        match self.short.load(Ordering::Relaxed) {
            false => Ok(()),
            true => Err(Error::StorageFull {
                path: self.path.clone(),
                available: self.available.load(Ordering::Relaxed),
                min_free: self.min_free,
            }),
        }
    }

    /// Measured now: `Some` while space is short.
    pub fn status(&self) -> Option<StorageFull> {
        if self.min_free == 0 {
            return None;
        }
        self.measure(self.started.elapsed().as_millis() as u64 + 1);
        self.short.load(Ordering::Relaxed).then(|| StorageFull {
            available_bytes: self.available.load(Ordering::Relaxed),
            min_free_bytes: self.min_free,
        })
    }

    fn measure(&self, now: u64) {
        match crate::os::available_bytes(&self.path) {
            Ok(avail) => {
                let short = avail < self.min_free;
                let was = self.short.swap(short, Ordering::Relaxed);
                self.available.store(avail, Ordering::Relaxed);
                if short && !was {
                    tracing::error!(available = avail, min_free = self.min_free,
                        path = %self.path.display(), "the store's disk is full: writes are refused until space returns");
                } else if was && !short {
                    tracing::info!(available = avail, "space is back: writes resume");
                }
            }
            // A file system that cannot say: never refuse on its account.
            Err(e) => tracing::debug!(error = %e, "statvfs failed"),
        }
        self.checked_ms.store(now, Ordering::Relaxed);
    }
}
