//! The per-user index: each user's sequence (item events, not impressions) in chunks of
//! [`CHUNK_ENTRIES`], maintained from the event log by a background thread.
//!
//! The log is the source of truth. The indexer follows it behind a watermark (persisted as
//! `indexed_upto`): each round reads the events between the watermark and the last
//! committed append, appends them to their users' last chunks with plain sled inserts,
//! then moves the watermark. Re-indexing an event is a no-op (entries carry their sequence
//! number), so a crash anywhere in a round is repaired by the next round after reopening.
//! Readers merge the chunks below the watermark with the log above it, so a user's
//! history always includes every committed event, indexed or not.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{decode_block, keys, UserEntry};
use crate::error::{Error, Result};
use crate::event::UserId;
use crate::supervise::{checkpoint, Restart, Supervised, Supervisor};

/// Entries per chunk value (21 bytes each: about 2.7 KB).
pub(crate) const CHUNK_ENTRIES: usize = 128;
/// Longest pause between rounds while the log is quiet.
const ROUND_INTERVAL: Duration = Duration::from_millis(20);
/// Most events indexed in one round (bounds the round's memory).
const ROUND_EVENTS: u64 = 1_000_000;

#[derive(Debug, Default)]
struct Shared {
    /// Events below this are applied to sled (appended and committed in memory).
    committed: AtomicU64,
    /// Events below this are in the index.
    indexed: AtomicU64,
    shutdown: Mutex<bool>,
    /// Set when the indexer thread died (its supervisor has reported it).
    dead: AtomicBool,
    /// Held by the indexer for each round, and by a compaction to keep it between rounds.
    round: Mutex<()>,
    wake: Condvar,
    caught_up: Condvar,
}

/// The indexer thread and its watermarks.
#[derive(Debug)]
pub(crate) struct Indexer {
    shared: Arc<Shared>,
    handle: Mutex<Option<Supervised>>,
    /// The indexer thread's kernel id (0 where the platform has none).
    tid: i32,
}

impl Indexer {
    /// Starts indexing `db` from its persisted watermark up to `committed`, on a thread
    /// supervised by `sup`.
    pub fn start(db: super::DbCell, committed: u64, sup: &Supervisor) -> Result<Self> {
        let indexed = match db.load().get(keys::meta(keys::META_INDEXED))? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| Error::Corrupt {
                key: "m indexed_upto".into(),
                reason: "not 8 bytes".into(),
            })?),
            None => 0,
        }
        .min(committed);
        let shared = Arc::new(Shared {
            committed: AtomicU64::new(committed),
            indexed: AtomicU64::new(indexed),
            ..Default::default()
        });
        let s = Arc::clone(&shared);
        // Normal priority until the engine lowers it (`set_priority`): a store opened for
        // an import or an evaluation indexes at full speed.
        let handle = sup.spawn(
            "attune-indexer",
            crate::os::BackgroundPriority::Normal,
            Restart::Never,
            move || {
                let _dying = WakeSyncersIfDying(&s);
                run(&s, &db);
                Ok(())
            },
        )?;
        Ok(Indexer {
            shared,
            tid: handle.tid(),
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Tells the indexer that events below `next_seq` are applied.
    pub fn committed(&self, next_seq: u64) {
        self.shared.committed.fetch_max(next_seq, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// Schedules the indexer thread as `priority` says (see [`crate::threads`]).
    pub fn set_priority(&self, priority: crate::os::BackgroundPriority) {
        if self.tid != 0 {
            crate::os::set_background(self.tid, priority);
        }
    }

    /// The watermark: events below it are in the index.
    pub fn indexed(&self) -> u64 {
        self.shared.indexed.load(Ordering::SeqCst)
    }

    /// Keeps the indexer between rounds while the guard lives (a compaction copies the
    /// index and its watermark as one).
    pub fn pause(&self) -> std::sync::MutexGuard<'_, ()> {
        self.shared.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until every committed event is indexed.
    pub fn sync(&self) {
        let mut stop = self
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while self.indexed() < self.shared.committed.load(Ordering::SeqCst)
            && !*stop
            && !self.shared.dead.load(Ordering::SeqCst)
        {
            self.shared.wake.notify_one();
            stop = self
                .shared
                .caught_up
                .wait_timeout(stop, ROUND_INTERVAL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Indexes what is committed and stops the thread.
    pub fn shutdown(&self) {
        *self
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.join();
        }
    }
}

/// Dropped when the indexer's body ends: if it ends by a panic, whoever waits in
/// [`Indexer::sync`] stops waiting (readers fall back to the log, as for any lag).
struct WakeSyncersIfDying<'a>(&'a Shared);

impl Drop for WakeSyncersIfDying<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.dead.store(true, Ordering::SeqCst);
            self.0.caught_up.notify_all();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(shared: &Shared, cell: &super::DbCell) {
    loop {
        checkpoint();
        let round = shared.round.lock().unwrap_or_else(|e| e.into_inner());
        let from = shared.indexed.load(Ordering::SeqCst);
        let to = shared
            .committed
            .load(Ordering::SeqCst)
            .min(from + ROUND_EVENTS);
        if to > from {
            let indexed = index_range(&cell.load(), from, to);
            drop(round);
            match indexed {
                Ok(()) => {
                    shared.indexed.store(to, Ordering::SeqCst);
                    shared.caught_up.notify_all();
                }
                Err(e) => {
                    // The log still has the events; readers fall back to it. Retry later,
                    // unless the store is closing (the next open catches up).
                    tracing::error!(error = %e, from, to, "indexing failed");
                    if *shared.shutdown.lock().unwrap_or_else(|e| e.into_inner()) {
                        return;
                    }
                    std::thread::sleep(ROUND_INTERVAL * 10);
                }
            }
            continue;
        }
        drop(round);
        let stop = shared.shutdown.lock().unwrap_or_else(|e| e.into_inner());
        if *stop {
            return;
        }
        let (stop, _) = shared
            .wake
            .wait_timeout(stop, ROUND_INTERVAL)
            .unwrap_or_else(|e| e.into_inner());
        if *stop && shared.indexed.load(Ordering::SeqCst) >= shared.committed.load(Ordering::SeqCst)
        {
            return;
        }
    }
}

/// Adds the item events with sequence numbers in `from..to` to their users' chunks and
/// moves the persisted watermark to `to`.
pub(crate) fn index_range(db: &sled::Db, from: u64, to: u64) -> Result<()> {
    let mut by_user: BTreeMap<UserId, Vec<UserEntry>> = BTreeMap::new();
    let start = match db.range(..=keys::event(from)).next_back() {
        Some(kv) => {
            let (k, _) = kv?;
            if k.first() == Some(&keys::EVENT) {
                keys::seq_of(&k).unwrap_or(from)
            } else {
                from
            }
        }
        None => from,
    };
    for kv in db.range(keys::event(start)..keys::event(to)) {
        let (k, v) = kv?;
        let (first, block) = decode_block(&k, &v)?;
        for (i, ev) in block.iter().enumerate() {
            let seq = first + i as u64;
            if !(from..to).contains(&seq) {
                continue;
            }
            if let Some(&item) = ev.action.item() {
                by_user.entry(ev.user).or_default().push(UserEntry {
                    seq,
                    item,
                    kind: ev.action.kind(),
                    ts: ev.ts,
                });
            }
        }
    }
    for (user, entries) in by_user {
        append_entries(db, user, &entries)?;
    }
    db.insert(keys::meta(keys::META_INDEXED), &to.to_be_bytes())?;
    Ok(())
}

fn append_entries(db: &sled::Db, user: UserId, entries: &[UserEntry]) -> Result<()> {
    let (mut chunk_no, mut bytes) = match db.scan_prefix(keys::user_prefix(user)).next_back() {
        Some(kv) => {
            let (k, v) = kv?;
            let no = keys::u32_at(&k, 5).ok_or_else(|| Error::Corrupt {
                key: format!("user chunk of {user}"),
                reason: "short key".into(),
            })?;
            (no, v.to_vec())
        }
        None => (0, Vec::new()),
    };
    let last_seq = bytes
        .len()
        .checked_sub(UserEntry::BYTES)
        .and_then(|at| UserEntry::decode(&bytes[at..]))
        .map(|e| e.seq);
    let mut dirty = false;
    for e in entries {
        if last_seq.is_some_and(|s| e.seq <= s) {
            continue; // indexed before a crash interrupted the round
        }
        if bytes.len() >= CHUNK_ENTRIES * UserEntry::BYTES {
            if dirty {
                db.insert(keys::user_chunk(user, chunk_no), std::mem::take(&mut bytes))?;
            }
            bytes.clear();
            chunk_no += 1;
        }
        e.encode_into(&mut bytes);
        dirty = true;
    }
    if dirty {
        db.insert(keys::user_chunk(user, chunk_no), bytes)?;
    }
    Ok(())
}

/// Reads a user's indexed entries with sequence numbers below `below`.
pub(crate) fn read_user(db: &sled::Db, user: UserId, below: u64) -> Result<Vec<UserEntry>> {
    let mut out = Vec::new();
    for kv in db.scan_prefix(keys::user_prefix(user)) {
        let (_, v) = kv?;
        if v.len() % UserEntry::BYTES != 0 {
            return Err(Error::Corrupt {
                key: format!("user chunk of {user}"),
                reason: "entries of a bad length".into(),
            });
        }
        for chunk in v.chunks_exact(UserEntry::BYTES) {
            let e = UserEntry::decode(chunk).ok_or_else(|| Error::Corrupt {
                key: format!("user chunk of {user}"),
                reason: "bad entry".into(),
            })?;
            if e.seq < below {
                out.push(e);
            }
        }
    }
    Ok(out)
}
