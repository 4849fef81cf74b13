//! The durable store: event log, per-user sequences, id maps, catalogue and metadata on sled.
//!
//! # Durability contract
//! * [`Store::append`] returns only after its events are on disk (sled flushed and
//!   fsynced). Concurrent appends share one flush (group commit, see [`commit`]); a flush
//!   may be delayed by up to [`StoreConfig::max_flush_delay`] to gather more writers.
//! * One append, or one imported file, is atomic: its events, the ids they introduced and
//!   the import record are written by a single sled batch. Imports too large for one batch
//!   are written in chunks under a pending marker; a crash mid-import is rolled back when
//!   the store is next opened. Catalogue records are upserts, written before the events.
//! * The per-user index is derived from the log by a background indexer (see `index`);
//!   [`Store::user_history`] merges it with the log, so it always shows every committed
//!   event.
//! * Event sequence numbers are strictly increasing in append order, and dense but where
//!   a user was forgotten ([`Store::forget_user`] leaves gaps; numbers are never reused);
//!   iterating the log yields events in that order. Per-user order is the log order.
//!
//! See `keys` for the on-disk layout.

mod commit;
mod index;
mod keys;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::event::{Event, EventKind, Item, ItemId, RawEvent, Timestamp, UserId};
use crate::ids::Interner;
use commit::{GroupCommit, Pacing};
use index::Indexer;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Imports larger than this many events are written in chunks under a pending marker.
const IMPORT_CHUNK: usize = if cfg!(test) { 100 } else { 500_000 };

/// Events per log record: an append is one record (or several, past this size).
const BLOCK_EVENTS: usize = if cfg!(test) { 16 } else { 64 };
/// Small appends rewrite the log's last block while it holds fewer events than this
/// (see `Store::apply_with`).
const TAIL_FILL: usize = if cfg!(test) { 8 } else { 16 };

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
}

fn yes() -> bool {
    true
}

fn default_min_flush_interval() -> Duration {
    Duration::from_millis(2)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_flush_delay: Duration::ZERO,
            min_flush_interval: default_min_flush_interval(),
            cache_capacity: 256 << 20,
            fsync: true,
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

/// One entry of a user's sequence, as kept in the per-user index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserEntry {
    /// The event's sequence number in the log.
    pub seq: u64,
    pub item: ItemId,
    pub kind: EventKind,
    pub ts: Timestamp,
}

impl UserEntry {
    /// Encoded size: seq (8), item (4), kind (1), ts (8).
    pub(crate) const BYTES: usize = 21;

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.item.to_be_bytes());
        out.push(self.kind.code());
        out.extend_from_slice(&self.ts.to_be_bytes());
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != Self::BYTES {
            return None;
        }
        Some(UserEntry {
            seq: u64::from_be_bytes(v[..8].try_into().ok()?),
            item: keys::u32_at(v, 8)?,
            kind: EventKind::from_code(v[12])?,
            ts: i64::from_be_bytes(v[13..21].try_into().ok()?),
        })
    }
}

/// What the store remembers of one imported file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The file's name as given.
    pub file: String,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Events appended.
    pub events: u64,
    /// Catalogue records written.
    pub items: u64,
    /// Sequence number of the first event of the file.
    pub first_seq: u64,
    /// When, in ms since the epoch.
    pub imported_at: Timestamp,
}

/// The content hash identifying an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hashes bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(Sha256::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct PendingImport {
    first_seq: u64,
    sha256: String,
}

#[derive(Debug)]
struct Writer {
    next_seq: u64,
    users: Interner,
    items: Interner,
    /// The log's last block, while it holds fewer than `TAIL_FILL` events (so later small
    /// appends rewrite it): (first seq, events).
    tail: Option<(u64, Vec<Event>)>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    db: sled::Db,
    writer: Mutex<Writer>,
    commit: GroupCommit,
    indexer: Indexer,
    /// Serialises [`Store::forget_user`] calls (the only writes that rewrite event blocks).
    forget: Mutex<()>,
}

/// A handle to an open store; cheap to clone, shared across threads.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn corrupt(key: &[u8], reason: impl Into<String>) -> Error {
    // The prefix byte is a letter; the rest is binary.
    let (prefix, rest) = key
        .split_first()
        .map_or(('?', &[][..]), |(p, r)| (*p as char, r));
    let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    Error::Corrupt {
        key: format!("{prefix}:{hex}"),
        reason: reason.into(),
    }
}

pub(crate) fn now_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (or creates) the store in directory `path`.
    ///
    /// Fails with [`Error::SchemaMismatch`] on a store of another schema version, and rolls
    /// back an import that a crash interrupted.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        config.validate()?;
        let path = path.as_ref().to_path_buf();
        if path.exists() && !path.is_dir() {
            return Err(Error::io(
                &path,
                std::io::Error::other("not a directory; a store is a directory"),
            ));
        }
        // sled releases its file lock from a background thread shortly after the last
        // handle of a closed store is dropped, so a reopen in the same process retries
        // for a moment before reporting the store as held.
        let deadline = std::time::Instant::now() + Duration::from_millis(1500);
        let db = loop {
            let opened = sled::Config::new()
                .path(&path)
                .cache_capacity(config.cache_capacity)
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => break db,
                // sled reports a held lock as an `Other` error with this text.
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::Locked(path.clone()));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::Sled(e)),
            }
        };
        check_schema(&db, &path)?;
        rollback_pending_import(&db)?;
        let floor = match db.get(keys::meta(keys::META_SEQ_FLOOR))? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| corrupt(&keys::meta(keys::META_SEQ_FLOOR), "not 8 bytes"))?,
            ),
            None => 0,
        };
        let writer = Writer {
            next_seq: last_seq(&db)?.map_or(0, |s| s + 1).max(floor),
            users: load_ids(&db, keys::SPACE_USERS)?,
            items: load_ids(&db, keys::SPACE_ITEMS)?,
            tail: None,
        };
        let commit = GroupCommit::start(
            db.clone(),
            Pacing {
                max_flush_delay: config.max_flush_delay,
                min_flush_interval: config.min_flush_interval,
            },
            config.fsync,
        )?;
        let indexer = Indexer::start(db.clone(), writer.next_seq)?;
        tracing::debug!(path = %path.display(), next_seq = writer.next_seq, "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                db,
                writer: Mutex::new(writer),
                commit,
                indexer,
                forget: Mutex::new(()),
            }),
        })
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // The writer state is rebuilt from a batch only after it is applied, so a panic while
        // holding the lock cannot leave it half-updated.
        self.inner.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends events with external ids, interning new ids. Returns their sequence numbers
    /// once they are durable.
    pub fn append(&self, events: &[RawEvent]) -> Result<Range<u64>> {
        self.append_nowait(events)?.wait()
    }

    /// Applies events with external ids (interning new ids) and returns at once, before
    /// they are durable: await [`PendingAppend::durable`] (or call
    /// [`PendingAppend::wait`]) before acknowledging them. Readers of this store see the
    /// events immediately; a crash before the flush may lose them.
    pub fn append_nowait(&self, events: &[RawEvent]) -> Result<PendingAppend> {
        self.apply_with(|w, batch| {
            let mut staged = Staged::new();
            let dense = events
                .iter()
                .map(|ev| staged.intern_event(w, ev))
                .collect::<Result<Vec<_>>>()?;
            staged.write_ids(w, batch)?;
            Ok((dense, Some(staged)))
        })
    }

    /// Appends events whose ids are already interned (dense). Durable on return.
    pub fn append_dense(&self, events: &[Event]) -> Result<Range<u64>> {
        self.append_dense_nowait(events)?.wait()
    }

    /// [`Store::append_nowait`] for events whose ids are already interned.
    pub fn append_dense_nowait(&self, events: &[Event]) -> Result<PendingAppend> {
        self.apply_with(|w, _| {
            for ev in events {
                check_dense(w, ev)?;
            }
            Ok((events.to_vec(), None))
        })
    }

    /// The append path: under the writer lock, `build` gives the events (interned) and
    /// writes the ids they introduce into the batch; the events join the batch, the batch
    /// is applied, the ids and sequence counter move on, and a group-commit ticket is
    /// taken.
    ///
    /// Small appends fill the log's last block instead of starting their own: while the
    /// last block written holds fewer than `TAIL_FILL` events, it is written again with
    /// the new events added (one insert replacing one value, atomic; its earlier events
    /// are in both versions). A running service appends a few events at a time, hundreds
    /// of times a second, and sled 0.34 keeps memory for every key it ever held, beyond
    /// its cache: one key per append made the server grow by megabytes a minute; one per
    /// 16 or more events does not. Filling only up to 16 bounds the rewriting: single
    /// events are written 8.5 times on average, batches of 12 (the engine's group commit
    /// under load) 1.5 times, against 32 and about 3 when blocks filled to 64.
    fn apply_with(
        &self,
        build: impl FnOnce(&Writer, &mut Writes) -> Result<(Vec<Event>, Option<Staged>)>,
    ) -> Result<PendingAppend> {
        let mut w = self.writer();
        let first = w.next_seq;
        let mut batch = Writes::default();
        let (dense, staged) = build(&w, &mut batch)?;
        let n = dense.len();
        let tail = match &w.tail {
            _ if n == 0 => w.tail.clone(),
            Some((at, held))
                if at + held.len() as u64 == first && held.len() + n <= BLOCK_EVENTS =>
            {
                let mut block = held.clone();
                block.extend(dense);
                put_events(&mut batch, *at, &block)?;
                (block.len() < TAIL_FILL).then_some((*at, block))
            }
            _ => {
                put_events(&mut batch, first, &dense)?;
                let last = (n - 1) / BLOCK_EVENTS * BLOCK_EVENTS;
                (n - last < TAIL_FILL).then(|| (first + last as u64, dense[last..].to_vec()))
            }
        };
        batch.apply(&self.inner.db)?;
        w.tail = tail;
        if let Some(staged) = staged {
            staged.commit(&mut w);
        }
        w.next_seq = first + n as u64;
        let range = first..w.next_seq;
        self.inner.indexer.committed(w.next_seq);
        let ticket = self.inner.commit.ticket()?;
        Ok(PendingAppend {
            store: self.clone(),
            range,
            ticket,
        })
    }

    /// Writes a record of an engine space (not flushed: see [`Store::put_record_durable`]).
    pub fn put_record(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.db.insert(record_key(space, key), value)?;
        Ok(())
    }

    /// Writes a record and returns once it is durable (shares the group commit's flushes).
    pub fn put_record_durable(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_record(space, key, value)?;
        let ticket = self.inner.commit.ticket()?;
        self.inner.commit.wait(ticket)
    }

    /// Reads a record of an engine space.
    pub fn get_record(&self, space: RecordSpace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .inner
            .db
            .get(record_key(space, key))?
            .map(|v| v.to_vec()))
    }

    /// Removes a record; returns whether there was one.
    pub fn remove_record(&self, space: RecordSpace, key: &[u8]) -> Result<bool> {
        Ok(self.inner.db.remove(record_key(space, key))?.is_some())
    }

    /// Every record of a space as `(key, value)`, in key order.
    pub fn records(&self, space: RecordSpace) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = record_key(space, &[]);
        self.inner
            .db
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k[prefix.len()..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// At most `limit` records of a space, last key first, from the one before `before`
    /// (the last one when `None`).
    pub fn records_rev(
        &self,
        space: RecordSpace,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = record_key(space, &[]);
        let end = match before {
            Some(b) => std::ops::Bound::Excluded(record_key(space, b)),
            None => {
                let mut next = prefix.clone();
                // The space's byte plus one: past every key of the space.
                if let Some(last) = next.last_mut() {
                    *last += 1;
                }
                std::ops::Bound::Excluded(next)
            }
        };
        self.inner
            .db
            .range((std::ops::Bound::Included(prefix.clone()), end))
            .rev()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k[prefix.len()..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Imports one parsed file atomically: events, catalogue records and the import record.
    ///
    /// Fails with [`Error::AlreadyImported`] when a file of the same content was imported
    /// before; nothing is written then.
    pub fn import(
        &self,
        file: &str,
        hash: &ContentHash,
        events: &[RawEvent],
        items: &[Item],
        mut progress: impl FnMut(u64),
    ) -> Result<ImportRecord> {
        let hash_key = keys::with_bytes(keys::IMPORT, &hash.0);
        let mut w = self.writer();
        if let Some(prev) = self.inner.db.get(&hash_key)? {
            let prev: ImportRecord = serde_json::from_slice(&prev)?;
            return Err(Error::AlreadyImported {
                file: file.to_owned(),
                when: format_utc(prev.imported_at),
                events: prev.events,
            });
        }
        let first = w.next_seq;
        let record = ImportRecord {
            file: file.to_owned(),
            sha256: hash.hex(),
            events: events.len() as u64,
            items: items.len() as u64,
            first_seq: first,
            imported_at: now_ms(),
        };
        let chunked = events.len() > IMPORT_CHUNK;
        if chunked {
            let pending = PendingImport {
                first_seq: first,
                sha256: hash.hex(),
            };
            self.inner.db.insert(
                keys::meta(keys::META_PENDING),
                serde_json::to_vec(&pending)?,
            )?;
        }
        self.write_catalogue(&mut w, items)?;
        let mut seq = first;
        let n_chunks = events.len().div_ceil(IMPORT_CHUNK).max(1);
        let written = (|| -> Result<()> {
            for (i, chunk) in events
                .chunks(IMPORT_CHUNK)
                .chain(
                    // A catalogue-only file still needs its import record written.
                    std::iter::once(&events[..0]).filter(|_| events.is_empty()),
                )
                .enumerate()
            {
                let mut batch = Writes::default();
                let mut staged = Staged::new();
                let dense = chunk
                    .iter()
                    .map(|ev| staged.intern_event(&w, ev))
                    .collect::<Result<Vec<_>>>()?;
                put_events(&mut batch, seq, &dense)?;
                staged.write_ids(&w, &mut batch)?;
                if i + 1 == n_chunks {
                    batch.insert(hash_key.clone(), serde_json::to_vec(&record)?);
                    if chunked {
                        batch.remove(keys::meta(keys::META_PENDING));
                    }
                }
                batch.apply(&self.inner.db)?;
                // The chunk's ids are on disk now; keep memory in step with them.
                staged.commit(&mut w);
                seq += dense.len() as u64;
                progress(seq - first);
            }
            Ok(())
        })();
        if let Err(e) = written {
            if chunked {
                // Undo the chunks already applied; ids they introduced stay (harmless).
                rollback_pending_import(&self.inner.db)?;
            }
            return Err(e);
        }
        w.next_seq = seq;
        w.tail = None;
        self.inner.indexer.committed(seq);
        let ticket = self.inner.commit.ticket()?;
        drop(w);
        self.inner.commit.wait(ticket)?;
        Ok(record)
    }

    /// Inserts or replaces catalogue records. Durable on return.
    pub fn put_items(&self, items: &[Item]) -> Result<()> {
        let ticket;
        {
            let mut w = self.writer();
            self.write_catalogue(&mut w, items)?;
            ticket = self.inner.commit.ticket()?;
        }
        self.inner.commit.wait(ticket)
    }

    /// Interns the items' ids (one batch) and upserts their records (plain inserts).
    fn write_catalogue(&self, w: &mut Writer, items: &[Item]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut staged = Staged::new();
        let ids = items
            .iter()
            .map(|item| staged.id(w, IdSpace::Item, &item.id))
            .collect::<Result<Vec<_>>>()?;
        let mut batch = Writes::default();
        staged.write_ids(w, &mut batch)?;
        batch.apply(&self.inner.db)?;
        staged.commit(w);
        for (id, item) in ids.into_iter().zip(items) {
            self.inner.db.insert(
                keys::with_id(keys::CATALOGUE, id),
                serde_json::to_vec(item)?,
            )?;
        }
        Ok(())
    }

    /// Schedules the store's background indexer thread (see [`crate::threads`]); the
    /// engine lowers it so that indexing yields the CPU to requests.
    pub fn set_background_priority(&self, priority: crate::threads::BackgroundPriority) {
        self.inner.indexer.set_priority(priority);
    }

    /// Blocks until the per-user index holds every committed event (reads never need
    /// this; benchmarks and tests of the index do).
    pub fn sync_index(&self) {
        self.inner.indexer.sync();
    }

    /// The next sequence number to be assigned (= number of events appended so far).
    pub fn next_seq(&self) -> u64 {
        self.writer().next_seq
    }

    /// Events with sequence numbers in `range`, in order.
    pub fn events(&self, range: Range<u64>) -> Box<dyn Iterator<Item = Result<(u64, Event)>> + '_> {
        // The block holding `range.start` may begin before it.
        let start = match self.inner.db.range(..=keys::event(range.start)).next_back() {
            Some(Ok((k, _))) if k.first() == Some(&keys::EVENT) => {
                keys::seq_of(&k).unwrap_or(range.start)
            }
            Some(Err(e)) => return Box::new(std::iter::once(Err(e.into()))),
            _ => range.start,
        };
        let (lo, hi) = (range.start, range.end);
        Box::new(
            self.inner
                .db
                .range(keys::event(start)..keys::event(hi))
                .flat_map(move |kv| -> Vec<Result<(u64, Event)>> {
                    match kv
                        .map_err(Error::from)
                        .and_then(|(k, v)| decode_block(&k, &v))
                    {
                        Ok((first, block)) => block
                            .into_iter()
                            .enumerate()
                            .map(|(i, ev)| (first + i as u64, ev))
                            .filter(|(seq, _)| (lo..hi).contains(seq))
                            .map(Ok)
                            .collect(),
                        Err(e) => vec![Err(e)],
                    }
                }),
        )
    }

    /// Every event, in log order.
    pub fn all_events(&self) -> Box<dyn Iterator<Item = Result<(u64, Event)>> + '_> {
        self.events(0..u64::MAX)
    }

    /// A user's sequence (item events, not impressions), in log order, including every
    /// committed event (the index below its watermark, the log above it).
    pub fn user_history(&self, user: UserId) -> Result<Vec<UserEntry>> {
        let indexed = self.inner.indexer.indexed();
        let committed = self.next_seq();
        let mut out = index::read_user(&self.inner.db, user, indexed)?;
        for ev in self.events(indexed..committed) {
            let (seq, ev) = ev?;
            if ev.user != user {
                continue;
            }
            if let Some(&item) = ev.action.item() {
                out.push(UserEntry {
                    seq,
                    item,
                    kind: ev.action.kind(),
                    ts: ev.ts,
                });
            }
        }
        Ok(out)
    }

    /// The dense id of an external user id.
    pub fn user_id(&self, name: &str) -> Option<UserId> {
        self.writer().users.get(name)
    }

    /// The external id of a dense user id.
    pub fn user_name(&self, id: UserId) -> Option<String> {
        self.writer().users.name(id).map(str::to_owned)
    }

    /// The dense id of an external item id.
    pub fn item_id(&self, name: &str) -> Option<ItemId> {
        self.writer().items.get(name)
    }

    /// The external id of a dense item id.
    pub fn item_name(&self, id: ItemId) -> Option<String> {
        self.writer().items.name(id).map(str::to_owned)
    }

    /// Snapshots of both id maps (users, items), for bulk jobs.
    pub fn interners(&self) -> (Interner, Interner) {
        let w = self.writer();
        (w.users.clone(), w.items.clone())
    }

    /// Number of known users.
    pub fn n_users(&self) -> usize {
        self.writer().users.len()
    }

    /// Number of known items (interned, with or without a catalogue record).
    pub fn n_items(&self) -> usize {
        self.writer().items.len()
    }

    /// The catalogue record of an item, if one was written.
    pub fn item(&self, id: ItemId) -> Result<Option<Item>> {
        let key = keys::with_id(keys::CATALOGUE, id);
        match self.inner.db.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Every file imported so far.
    pub fn imports(&self) -> Result<Vec<ImportRecord>> {
        self.inner
            .db
            .scan_prefix([keys::IMPORT])
            .map(|kv| Ok(serde_json::from_slice(&kv?.1)?))
            .collect()
    }

    /// Number of flushes run (group commit makes this smaller than the number of appends).
    pub fn flush_count(&self) -> u64 {
        self.inner.commit.flushes()
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// Removes everything the store keeps of one user: their events (interactions and the
    /// impressions shown to them), their per-user index, their session snapshot, and
    /// their external id (its dense number stays taken and maps to no name; the same id
    /// arriving later starts a new user). Returns `None` when the user is unknown.
    /// Durable on return.
    ///
    /// The log's blocks that held the user's events are rewritten without them in one
    /// atomic batch, so the remaining events keep their sequence numbers (the log then
    /// has gaps where the user's events were). Finding them takes one pass over the log
    /// (impressions are not indexed); appends wait only for the final part of it.
    /// Aggregates learned from the events (counts, model weights) are not per-user data
    /// and are kept. sled frees the overwritten pages in its own time; until its segment
    /// cleaner reuses them, old bytes may remain in the files, unreachable.
    pub fn forget_user(&self, name: &str) -> Result<Option<Forgotten>> {
        let _one = self.inner.forget.lock().unwrap_or_else(|e| e.into_inner());
        let Some(user) = self.user_id(name) else {
            return Ok(None);
        };
        let db = &self.inner.db;
        // Pass 1, appends going on: the blocks below the current end that hold the user's
        // events. Blocks are immutable but for this function, which runs one at a time.
        let scanned_to = self.next_seq();
        let mut blocks: Vec<sled::IVec> = Vec::new();
        let holds = |k: &[u8], v: &[u8]| -> Result<bool> {
            Ok(decode_block(k, v)?.1.iter().any(|e| e.user == user))
        };
        for kv in db.range(keys::event(0)..keys::event(scanned_to)) {
            let (k, v) = kv?;
            if holds(&k, &v)? {
                blocks.push(k);
            }
        }
        // Pass 2, appends held: the blocks written meanwhile, then one batch.
        let mut w = self.writer();
        for kv in db.range(keys::event(scanned_to)..keys::event(w.next_seq)) {
            let (k, v) = kv?;
            if holds(&k, &v)? {
                blocks.push(k);
            }
        }
        // The indexer works from the log without the writer lock: let it finish, so it
        // cannot write the user's entries back after they are removed.
        self.inner.indexer.sync();
        let mut batch = Writes::default();
        let mut out = Forgotten::default();
        for key in &blocks {
            let Some(v) = db.get(key)? else { continue };
            let (first, events) = decode_block(key, &v)?;
            batch.remove(key);
            // The runs of other users' events, each a block under its first number.
            let mut run_start = 0;
            for (i, ev) in events.iter().enumerate() {
                if ev.user == user {
                    out.events += 1;
                    if i > run_start {
                        put_events(&mut batch, first + run_start as u64, &events[run_start..i])?;
                    }
                    run_start = i + 1;
                }
            }
            if run_start < events.len() {
                put_events(&mut batch, first + run_start as u64, &events[run_start..])?;
            }
        }
        for kv in db.scan_prefix(keys::user_prefix(user)) {
            let (k, _) = kv?;
            batch.remove(k);
            out.index_chunks += 1;
        }
        let snapshot = record_key(RecordSpace::Session, name.as_bytes());
        out.session_snapshot = db.get(&snapshot)?.is_some();
        batch.remove(snapshot);
        // The id block that names the user: the name becomes empty.
        let id_key = match db
            .range(keys::id_block(keys::SPACE_USERS, 0)..=keys::id_block(keys::SPACE_USERS, user))
            .next_back()
        {
            Some(kv) => kv?,
            None => {
                return Err(corrupt(
                    &keys::id_block(keys::SPACE_USERS, user),
                    "no id block",
                ))
            }
        };
        let first =
            keys::u32_at(&id_key.0, 2).ok_or_else(|| corrupt(&id_key.0, "short id block key"))?;
        let mut names: Vec<String> =
            bincode::deserialize(&id_key.1).map_err(|e| corrupt(&id_key.0, e.to_string()))?;
        match names.get_mut((user - first) as usize) {
            Some(n) if n == name => n.clear(),
            _ => return Err(corrupt(&id_key.0, format!("does not name user {name:?}"))),
        }
        let bytes = bincode::serialize(&names).map_err(|e| corrupt(&id_key.0, e.to_string()))?;
        batch.insert(id_key.0, bytes);
        batch.insert(keys::meta(keys::META_SEQ_FLOOR), w.next_seq.to_be_bytes());
        batch.apply(db)?;
        // The last block may have been rewritten without the user's events.
        w.tail = None;
        w.users.forget(user);
        let ticket = self.inner.commit.ticket()?;
        drop(w);
        self.inner.commit.wait(ticket)?;
        tracing::info!(events = out.events, "user forgotten");
        Ok(Some(out))
    }

    /// Flushes everything and stops the flusher; later writes fail with [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        self.inner.indexer.shutdown();
        self.inner.commit.shutdown();
        self.inner.db.flush()?;
        Ok(())
    }
}

/// What [`Store::forget_user`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    /// Events removed from the log (interactions and impressions).
    pub events: u64,
    /// Chunks of the per-user index removed.
    pub index_chunks: usize,
    /// Whether a session snapshot was removed.
    pub session_snapshot: bool,
}

/// Events applied to the store whose flush may still be running: the handle an
/// acknowledgement waits on.
#[derive(Debug)]
#[must_use = "the events are not durable until the append is waited on"]
pub struct PendingAppend {
    store: Store,
    range: Range<u64>,
    ticket: u64,
}

impl PendingAppend {
    /// Sequence numbers of the applied events.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// Blocks until the events are durable.
    pub fn wait(self) -> Result<Range<u64>> {
        self.store.inner.commit.wait(self.ticket)?;
        Ok(self.range)
    }

    /// Resolves once the events are durable, without holding a thread meanwhile.
    pub async fn durable(self) -> Result<Range<u64>> {
        let rx = self.store.inner.commit.wait_async(self.ticket);
        match rx.await {
            Ok(outcome) => outcome.map(|()| self.range),
            Err(_) => Err(Error::Closed),
        }
    }
}

/// The engine's spaces of records kept beside the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSpace {
    /// Strategy versions and the pointer to the current one.
    Strategy,
    /// Snapshots of evicted sessions.
    Session,
    /// Opaque blobs (fine-tuned checkpoints, learner state).
    Blob,
    /// The audit log of operators' actions (see `service::audit`).
    Audit,
}

impl RecordSpace {
    fn byte(self) -> u8 {
        match self {
            RecordSpace::Strategy => b's',
            RecordSpace::Session => b'x',
            RecordSpace::Blob => b'b',
            RecordSpace::Audit => b'a',
        }
    }
}

fn record_key(space: RecordSpace, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(keys::RECORD);
    k.push(space.byte());
    k.extend_from_slice(key);
    k
}

/// Ids that a batch introduces, copied into the writer's maps only once the batch is
/// applied, so a failed batch leaves no ghost ids in memory.
struct Staged {
    users: Interner,
    items: Interner,
}

/// Which id map an id belongs to.
#[derive(Clone, Copy)]
enum IdSpace {
    User,
    Item,
}

impl Staged {
    fn new() -> Self {
        Staged {
            users: Interner::default(),
            items: Interner::default(),
        }
    }

    fn id(&mut self, w: &Writer, space: IdSpace, name: &str) -> Result<u32> {
        let (known, fresh, what) = match space {
            IdSpace::User => (&w.users, &mut self.users, "user id"),
            IdSpace::Item => (&w.items, &mut self.items, "item id"),
        };
        if let Some(id) = known.get(name) {
            return Ok(id);
        }
        let base = known.len() as u64;
        if let Some(id) = fresh.get(name) {
            return Ok((base + u64::from(id)) as u32);
        }
        if name.is_empty() {
            return Err(Error::config(what, "an id must not be empty"));
        }
        let id =
            u32::try_from(base + fresh.len() as u64).map_err(|_| Error::IdSpaceExhausted(what))?;
        fresh.intern(name);
        Ok(id)
    }

    fn intern_event(&mut self, w: &Writer, ev: &RawEvent) -> Result<Event> {
        let user = self.id(w, IdSpace::User, &ev.user)?;
        let action = ev
            .action
            .clone()
            .try_map_ids(|name| self.id(w, IdSpace::Item, &name))?;
        Ok(Event {
            user,
            ts: ev.ts,
            action,
        })
    }

    /// Adds the new ids to `batch` as one id block per space.
    fn write_ids(&self, w: &Writer, batch: &mut Writes) -> Result<()> {
        for (space, known, fresh) in [
            (keys::SPACE_USERS, &w.users, &self.users),
            (keys::SPACE_ITEMS, &w.items, &self.items),
        ] {
            if fresh.is_empty() {
                continue;
            }
            let first = u32::try_from(known.len()).map_err(|_| Error::IdSpaceExhausted("ids"))?;
            let names: Vec<&str> = (0..fresh.len() as u32)
                .filter_map(|i| fresh.name(i))
                .collect();
            let key = keys::id_block(space, first);
            let bytes = bincode::serialize(&names).map_err(|e| corrupt(&key, e.to_string()))?;
            batch.insert(&key[..], bytes);
        }
        Ok(())
    }

    fn commit(self, w: &mut Writer) {
        for name in self.users.into_names() {
            w.users.intern(&name);
        }
        for name in self.items.into_names() {
            w.items.intern(&name);
        }
    }
}

/// The writes of one atomic step: applied as one sled batch, or as a plain insert or
/// remove when there is only one (atomic by itself). In sled 0.34 every key written
/// through a batch leaves memory allocated for good (see ARCHITECTURE.md), and a service
/// appends many times a second, nearly always one block and no new ids: a batch per
/// append made the server's memory grow by megabytes a minute.
#[derive(Default)]
struct Writes(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Writes {
    fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.0
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.0.push((key.as_ref().to_vec(), None));
    }

    fn apply(mut self, db: &sled::Db) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        if self.0.len() == 1 {
            if let Some((k, v)) = self.0.pop() {
                match v {
                    Some(v) => db.insert(k, v)?,
                    None => db.remove(k)?,
                };
            }
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, v) in self.0 {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        db.apply_batch(batch)?;
        Ok(())
    }
}

/// Writes events as blocks of at most [`BLOCK_EVENTS`] under the key of their first
/// sequence number.
fn put_events(batch: &mut Writes, first_seq: u64, events: &[Event]) -> Result<()> {
    for (i, block) in events.chunks(BLOCK_EVENTS).enumerate() {
        let key = keys::event(first_seq + (i * BLOCK_EVENTS) as u64);
        let bytes = bincode::serialize(block).map_err(|e| corrupt(&key, e.to_string()))?;
        batch.insert(&key[..], bytes);
    }
    Ok(())
}

pub(crate) fn decode_block(key: &[u8], value: &[u8]) -> Result<(u64, Vec<Event>)> {
    let first = keys::seq_of(key).ok_or_else(|| corrupt(key, "short event key"))?;
    let block: Vec<Event> = bincode::deserialize(value).map_err(|e| corrupt(key, e.to_string()))?;
    Ok((first, block))
}

fn check_dense(w: &Writer, ev: &Event) -> Result<()> {
    if ev.user as usize >= w.users.len() {
        return Err(Error::config(
            "user",
            format!("unknown dense user id {}", ev.user),
        ));
    }
    let bad_item = |i: &ItemId| *i as usize >= w.items.len();
    let bad = match &ev.action {
        crate::event::Action::Impression(imp) => imp.items.iter().find(|i| bad_item(i)),
        a => a.item().filter(|i| bad_item(i)),
    };
    match bad {
        Some(i) => Err(Error::config("item", format!("unknown dense item id {i}"))),
        None => Ok(()),
    }
}

fn check_schema(db: &sled::Db, path: &Path) -> Result<()> {
    let key = keys::meta(keys::META_SCHEMA);
    match db.get(&key)? {
        Some(v) => {
            let found = v
                .as_ref()
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| corrupt(&key, "schema version is not 4 bytes"))?;
            if found != SCHEMA_VERSION {
                return Err(Error::SchemaMismatch {
                    path: path.to_path_buf(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
        }
        None => {
            if !db.is_empty() {
                return Err(Error::SchemaMismatch {
                    path: path.to_path_buf(),
                    found: 0,
                    expected: SCHEMA_VERSION,
                });
            }
            db.insert(&key, &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
        }
    }
    Ok(())
}

fn last_seq(db: &sled::Db) -> Result<Option<u64>> {
    match db.scan_prefix([keys::EVENT]).next_back() {
        Some(kv) => {
            let (k, v) = kv?;
            let (first, block) = decode_block(&k, &v)?;
            Ok((first + block.len() as u64).checked_sub(1))
        }
        None => Ok(None),
    }
}

fn load_ids(db: &sled::Db, space: u8) -> Result<Interner> {
    let mut ids = Interner::default();
    for kv in db.scan_prefix([keys::ID_BLOCK, space]) {
        let (k, v) = kv?;
        let first = keys::u32_at(&k, 2).ok_or_else(|| corrupt(&k, "short id block key"))?;
        let names: Vec<String> =
            bincode::deserialize(&v).map_err(|e| corrupt(&k, e.to_string()))?;
        for (i, name) in names.into_iter().enumerate() {
            if !ids.restore(first + i as u32, name) {
                return Err(corrupt(&k, "id blocks have a gap"));
            }
        }
    }
    Ok(ids)
}

fn rollback_pending_import(db: &sled::Db) -> Result<()> {
    let key = keys::meta(keys::META_PENDING);
    let Some(v) = db.get(&key)? else {
        return Ok(());
    };
    let pending: PendingImport = serde_json::from_slice(&v)?;
    tracing::warn!(
        sha256 = %pending.sha256,
        first_seq = pending.first_seq,
        "rolling back an import interrupted by a crash"
    );
    let mut batch = Writes::default();
    for kv in db.range(keys::event(pending.first_seq)..keys::event(u64::MAX)) {
        let (k, v) = kv?;
        decode_block(&k, &v)?;
        batch.remove(&k);
    }
    batch.remove(key);
    batch.apply(db)?;
    db.flush()?;
    Ok(())
}

/// Formats ms since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(ms: Timestamp) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
