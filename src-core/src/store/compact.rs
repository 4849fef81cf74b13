//! Compaction: the store's live data rewritten into a new generation of sled files, and
//! the old files deleted, so that what was removed (a forgotten user's id and events) is
//! in no file under the store any more.
//!
//! sled 0.34 keeps a removed or overwritten value in its files until its segment cleaner
//! happens to reuse the space, with no bound on when. A compaction copies every live key
//! into a fresh database in the next `data-N` directory (see `layout`), makes it the
//! store's (`CURRENT`), swaps it in under the running store, and deletes the old files.
//! Appends wait while it copies (they hold on the writer lock), as do forgetting,
//! catalogue upserts, imports, backups and the indexer; reads go on against the old files
//! until the swap. The engine runs one `compact_after_forget_s` after a forget (see
//! `EngineConfig`); `attune compact` runs one on a store that is not served.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{layout, Store};
use crate::error::Result;

/// What a compaction did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Compacted {
    /// Keys copied.
    pub keys: u64,
    /// sled's files before and after, in bytes.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// How long appends waited, in milliseconds (the whole copy).
    pub writer_pause_ms: f64,
}

impl Store {
    /// Rewrites the live data into a new generation of files and deletes the old ones.
    pub fn compact(&self) -> Result<Compacted> {
        self.writable()?;
        let _rewrites = self.rewrites();
        let _indexer = self.inner.indexer.pause();
        let _w = self.writer();
        let started = Instant::now();
        let old = self.db();
        let bytes_before = old.size_on_disk()?;
        let dir = self.path().to_path_buf();
        let current = self
            .inner
            .data_dir
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let next = layout::next_generation(&dir, &current);
        if next.exists() {
            std::fs::remove_dir_all(&next).map_err(|e| crate::Error::io(&next, e))?;
        }
        let new = super::sled_config(&next, self.inner.cache_capacity).open()?;
        let mut keys = 0u64;
        for kv in old.iter() {
            let (k, v) = kv?;
            new.insert(k, v)?;
            keys += 1;
        }
        new.flush()?;
        // The moment the new generation becomes the store.
        layout::publish(&dir, &next)?;
        self.inner.db.store(std::sync::Arc::new(new.clone()));
        *self
            .inner
            .data_dir
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = next.clone();
        drop(old);
        layout::remove_others(&dir, &next);
        let pause = started.elapsed();
        let bytes_after = new.size_on_disk()?;
        tracing::info!(keys, bytes_before, bytes_after, pause_ms = pause.as_secs_f64() * 1e3,
            generation = %next.display(), "store compacted");
        Ok(Compacted {
            keys,
            bytes_before,
            bytes_after,
            writer_pause_ms: pause.as_secs_f64() * 1e3,
        })
    }
}
