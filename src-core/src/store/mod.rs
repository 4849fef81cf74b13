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
//! See `keys` for the on-disk layout. Files: this one opens the store and reads it;
//! `writes` appends, `import` imports files and catalogue records, `forget` forgets a
//! user, `records` keeps the small keyed records beside the log, `commit` is the group
//! commit, `index` the per-user indexer, `config` the settings.

mod backup;
mod commit;
mod compact;
mod config;
mod forget;
mod import;
mod index;
mod keys;
mod layout;
mod records;
mod space;
mod writes;

pub use backup::{restore_backup, verify_backup, BackupSummary};
pub use compact::Compacted;
pub use config::StoreConfig;
pub use forget::Forgotten;
use import::PendingImport;
pub use import::{ContentHash, ImportRecord};
pub use layout::is_store;
use records::record_key;
pub use records::RecordSpace;
pub use space::StorageFull;
pub use writes::PendingAppend;
use writes::{put_events, Staged, Writes};

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::event::{Event, EventKind, Item, ItemId, RawEvent, Timestamp, UserId};
use crate::ids::Interner;
use crate::supervise::Supervisor;
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

#[derive(Debug)]
struct Writer {
    next_seq: u64,
    users: Interner,
    items: Interner,
    /// The log's last block, while it holds fewer than `TAIL_FILL` events (so later small
    /// appends rewrite it): (first seq, events).
    tail: Option<(u64, Vec<Event>)>,
}

/// The sled database in force: replaced under a running store by a compaction.
pub(crate) type DbCell = Arc<arc_swap::ArcSwap<sled::Db>>;

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    db: DbCell,
    /// Where the database in force keeps its files (see `layout`).
    data_dir: Mutex<PathBuf>,
    /// sled's page cache of the databases it opens, in bytes.
    cache_capacity: u64,
    writer: Mutex<Writer>,
    commit: GroupCommit,
    indexer: Indexer,
    /// Supervises the store's threads and the engine's: a fault refuses writes.
    supervisor: Supervisor,
    /// The free space kept on the store's disk.
    space: space::Space,
    /// Held by the writes that rewrite what is already written (forgetting a user, which
    /// rewrites event blocks; catalogue upserts; imports) and by a backup for its whole
    /// copy, so that these wait for a running backup while appends do not.
    rewrites: Mutex<()>,
}

/// A handle to an open store; cheap to clone, shared across threads.
///
/// ```
/// use attune::store::{Store, StoreConfig};
/// use attune::{Action, RawEvent};
///
/// # fn main() -> attune::Result<()> {
/// let dir = tempfile::tempdir().expect("tempdir");
/// let store = Store::open(dir.path().join("store"), StoreConfig::default())?;
/// let click = |item: &str, ts| RawEvent {
///     user: "ann".into(),
///     ts,
///     action: Action::Click { item: item.into() },
/// };
/// // Appended, fsync'd and given sequence numbers 0 and 1, in one batch.
/// let seqs = store.append(&[click("a", 1), click("b", 2)])?;
/// assert_eq!(seqs, 0..2);
/// let ann = store.user_id("ann").expect("ann has an id");
/// let history = store.user_history(ann)?;
/// assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1]);
/// store.close()?;
/// # Ok(())
/// # }
/// ```
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
        let data_dir = layout::data_dir(&path)?;
        let db = loop {
            let opened = sled_config(&data_dir, config.cache_capacity).open();
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
        let supervisor = Supervisor::new();
        let cell: DbCell = Arc::new(arc_swap::ArcSwap::from_pointee(db));
        let commit = GroupCommit::start(
            Arc::clone(&cell),
            Pacing {
                max_flush_delay: config.max_flush_delay,
                min_flush_interval: config.min_flush_interval,
            },
            config.fsync,
            &supervisor,
        )?;
        let indexer = Indexer::start(Arc::clone(&cell), writer.next_seq, &supervisor)?;
        tracing::debug!(path = %path.display(), next_seq = writer.next_seq, "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                space: space::Space::new(path.clone(), config.min_free_bytes),
                path,
                db: cell,
                data_dir: Mutex::new(data_dir),
                cache_capacity: config.cache_capacity,
                writer: Mutex::new(writer),
                commit,
                indexer,
                supervisor,
                rewrites: Mutex::new(()),
            }),
        })
    }

    /// The supervisor of the store's threads (the flusher, the indexer), which an engine
    /// over this store shares for its own: while it holds a fault, writes are refused.
    pub fn supervisor(&self) -> &Supervisor {
        &self.inner.supervisor
    }

    /// Held while rewriting what is already written (see `Inner::rewrites`).
    fn rewrites(&self) -> MutexGuard<'_, ()> {
        self.inner
            .rewrites
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The database in force (a compaction may replace it: take it anew for each use).
    fn db(&self) -> sled::Db {
        (**self.inner.db.load()).clone()
    }

    /// `Ok` if the store may take a write now: no thread has died and no write has failed
    /// ([`Error::Unhealthy`]), and its disk has the free space it keeps
    /// ([`Error::StorageFull`]). Every write path checks it before applying anything.
    pub(crate) fn writable(&self) -> Result<()> {
        self.inner.supervisor.check_writable()?;
        self.inner.space.check()
    }

    /// Whether the store's disk is short of the free space it keeps, measured now.
    pub fn storage_full(&self) -> Option<StorageFull> {
        self.inner.space.status()
    }

    /// Turns a failed sled write into [`Error::StorageFailed`] and stops all writes: after
    /// an I/O error, sled's state on disk is unknown until it is reopened (the fault is
    /// reported for the calling thread).
    pub(crate) fn write_failed(&self, what: &str, e: sled::Error) -> Error {
        let e = Arc::new(e);
        let thread = std::thread::current()
            .name()
            .unwrap_or("a writer")
            .to_string();
        self.inner.supervisor.report(crate::supervise::Fault {
            thread,
            reason: format!("{what} failed: {e}"),
            at_ms: now_ms().max(0) as u64,
        });
        Error::StorageFailed {
            what: format!("{what} failed"),
            source: e,
        }
    }

    /// Whether a write is acknowledged only once flushed to disk (`StoreConfig::fsync`);
    /// false for scratch stores, whose writers need not be paced to share flushes.
    pub fn is_durable(&self) -> bool {
        self.inner.commit.durable()
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

    /// Schedules the store's background indexer thread (see [`crate::threads`]); the
    /// engine lowers it so that indexing yields the CPU to requests.
    pub fn set_background_priority(&self, priority: crate::os::BackgroundPriority) {
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
        let start = match self.db().range(..=keys::event(range.start)).next_back() {
            Some(Ok((k, _))) if k.first() == Some(&keys::EVENT) => {
                keys::seq_of(&k).unwrap_or(range.start)
            }
            Some(Err(e)) => return Box::new(std::iter::once(Err(e.into()))),
            _ => range.start,
        };
        let (lo, hi) = (range.start, range.end);
        Box::new(
            self.db()
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
        let mut out = index::read_user(&self.db(), user, indexed)?;
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
        match self.db().get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Every file imported so far.
    pub fn imports(&self) -> Result<Vec<ImportRecord>> {
        self.db()
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
        Ok(self.db().size_on_disk()?)
    }

    /// Flushes everything and stops the flusher; later writes fail with [`Error::ShutDown`].
    pub fn close(&self) -> Result<()> {
        self.inner.indexer.shutdown();
        self.inner.commit.shutdown();
        self.db().flush()?;
        Ok(())
    }
}

/// Which id map an id belongs to.
#[derive(Clone, Copy)]
enum IdSpace {
    User,
    Item,
}

pub(crate) fn decode_block(key: &[u8], value: &[u8]) -> Result<(u64, Vec<Event>)> {
    let first = keys::seq_of(key).ok_or_else(|| corrupt(key, "short event key"))?;
    let block: Vec<Event> = bincode::deserialize(value).map_err(|e| corrupt(key, e.to_string()))?;
    Ok((first, block))
}

/// How the store opens sled: no flusher of its own (the group commit flushes).
fn sled_config(dir: &Path, cache_capacity: u64) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_capacity)
        .flush_every_ms(None)
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
