//! [`StoreConfig`]: the store's settings, with units and defaults, checked by `validate`.

use super::*;

/// Store settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Longest time a flush waits to gather more writers. Default 0: a flush starts as soon
    /// as one write is pending, and writers arriving meanwhile join the next flush.
    #[serde(with = "duration_ms")]
    pub max_flush_delay: Duration,
    /// Shortest time between the starts of two flushes while writers are concurrent (the
    /// previous flush covered several appends, or appends arrived while it ran). Default
    /// 2 ms: under a steady stream flushes are paced to at most 500 a second, while a
    /// write after a quiet spell, or from a single writer waiting on each append, is
    /// flushed at once.
    /// Each flush costs an fsync and wakes every thread of sled's I/O pool (eight), which
    /// at 1,500 flushes a second took a tenth of a core from request threads; the price is
    /// up to this much more time to acknowledge a write under load.
    #[serde(default = "default_min_flush_interval", with = "duration_ms")]
    pub min_flush_interval: Duration,
    /// sled page cache, in bytes. Default 256 MiB.
    pub cache_capacity: u64,
    /// Acknowledge writes only once they are flushed to disk. Default true; false is for
    /// scratch stores (simulations, replays), where a write is acknowledged once applied
    /// and the store is flushed on close.
    #[serde(default = "yes")]
    pub fsync: bool,
    /// Bytes kept free on the store's disk: a write that finds less available is refused
    /// before it reaches sled (`Error::StorageFull`, HTTP 507) and writes resume by
    /// themselves once space is back. Default 64 MiB; 0 turns the check off.
    #[serde(default = "default_min_free")]
    pub min_free_bytes: u64,
}

pub(super) fn default_min_free() -> u64 {
    64 << 20
}

pub(super) fn yes() -> bool {
    true
}

pub(super) fn default_min_flush_interval() -> Duration {
    Duration::from_millis(2)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_flush_delay: Duration::ZERO,
            min_flush_interval: default_min_flush_interval(),
            cache_capacity: 256 << 20,
            fsync: true,
            min_free_bytes: default_min_free(),
        }
    }
}

impl StoreConfig {
    /// Checks the knobs' ranges.
    pub fn validate(&self) -> Result<()> {
        for (knob, wait) in [
            ("store.max_flush_delay", self.max_flush_delay),
            ("store.min_flush_interval", self.min_flush_interval),
        ] {
            if wait > Duration::from_secs(1) {
                return Err(Error::config(
                    knob,
                    "must be at most 1000 ms: acknowledgements would wait that long",
                ));
            }
        }
        if self.cache_capacity < (1 << 20) {
            return Err(Error::config(
                "store.cache_capacity",
                "must be at least 1 MiB",
            ));
        }
        Ok(())
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
