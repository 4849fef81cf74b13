//! The durable store: event log, per-user sequences, id maps, catalogue and metadata on sled.
//!
//! # Durability contract
//! * [`Store::append`] returns only after its events are on disk (sled flushed and
//!   fsynced). Concurrent appends share one flush (group commit, see [`commit`]); a flush
//!   may be delayed by up to [`StoreConfig::max_flush_delay`] to gather more writers.
//! * One append, or one imported file, is atomic: its events, their per-user index entries,
//!   the ids they introduced, catalogue records and the import record are written by a
//!   single sled batch. Imports too large for one batch are written in chunks under a
//!   pending marker; a crash mid-import is rolled back when the store is next opened.
//! * Event sequence numbers are dense and strictly increasing in append order; iterating
//!   the log yields events in that order. Per-user order is the log order.
//!
//! See `keys` for the on-disk layout.

mod commit;
mod keys;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::event::{Event, EventKind, Item, ItemId, RawEvent, Timestamp, UserId};
use crate::ids::Interner;
use commit::GroupCommit;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Imports larger than this many events are written in chunks under a pending marker.
const IMPORT_CHUNK: usize = if cfg!(test) { 100 } else { 500_000 };

/// Events per log record: an append is one record (or several, past this size).
const BLOCK_EVENTS: usize = if cfg!(test) { 16 } else { 1024 };

/// Store settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Longest time a flush waits to gather more writers. Default 0: a flush starts as soon
    /// as one write is pending, and writers arriving meanwhile join the next flush.
    #[serde(with = "duration_ms")]
    pub max_flush_delay: Duration,
    /// sled page cache, in bytes. Default 256 MiB.
    pub cache_capacity: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_flush_delay: Duration::ZERO,
            cache_capacity: 256 << 20,
        }
    }
}

impl StoreConfig {
    /// Checks the knobs' ranges.
    pub fn validate(&self) -> Result<()> {
        if self.max_flush_delay > Duration::from_secs(1) {
            return Err(Error::config(
                "store.max_flush_delay",
                "must be at most 1000 ms: acknowledgements would wait that long",
            ));
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
    const BYTES: usize = 21;

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.item.to_be_bytes());
        out.push(self.kind.code());
        out.extend_from_slice(&self.ts.to_be_bytes());
    }

    fn decode(v: &[u8]) -> Option<Self> {
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

const META_PENDING: &[u8] = b"pending_import";

#[derive(Debug)]
struct Writer {
    next_seq: u64,
    users: Interner,
    items: Interner,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    db: sled::Db,
    writer: Mutex<Writer>,
    commit: GroupCommit,
}

/// A handle to an open store; cheap to clone, shared across threads.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn corrupt(key: &[u8], reason: impl Into<String>) -> Error {
    Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.into(),
    }
}

fn now_ms() -> Timestamp {
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
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                // sled reports a held lock as an `Other` error with this text.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    Error::Locked(path.clone())
                }
                e => Error::Sled(e),
            })?;
        check_schema(&db, &path)?;
        rollback_pending_import(&db)?;
        let writer = Writer {
            next_seq: last_seq(&db)?.map_or(0, |s| s + 1),
            users: load_ids(&db, keys::USER_NAME)?,
            items: load_ids(&db, keys::ITEM_NAME)?,
        };
        let commit = GroupCommit::start(db.clone(), config.max_flush_delay)?;
        tracing::debug!(path = %path.display(), next_seq = writer.next_seq, "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                db,
                writer: Mutex::new(writer),
                commit,
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
        let ticket;
        let range;
        {
            let mut w = self.writer();
            let mut batch = sled::Batch::default();
            let mut staged = Staged::new();
            let first = w.next_seq;
            let dense = events
                .iter()
                .map(|ev| staged.intern_event(&w, ev, &mut batch))
                .collect::<Result<Vec<_>>>()?;
            put_events(&mut batch, first, &dense)?;
            self.inner.db.apply_batch(batch)?;
            staged.commit(&mut w);
            w.next_seq = first + events.len() as u64;
            range = first..w.next_seq;
            ticket = self.inner.commit.ticket()?;
        }
        self.inner.commit.wait(ticket)?;
        Ok(range)
    }

    /// Appends events whose ids are already interned (dense). Durable on return.
    pub fn append_dense(&self, events: &[Event]) -> Result<Range<u64>> {
        let ticket;
        let range;
        {
            let mut w = self.writer();
            for ev in events {
                check_dense(&w, ev)?;
            }
            let mut batch = sled::Batch::default();
            let first = w.next_seq;
            put_events(&mut batch, first, events)?;
            self.inner.db.apply_batch(batch)?;
            w.next_seq = first + events.len() as u64;
            range = first..w.next_seq;
            ticket = self.inner.commit.ticket()?;
        }
        self.inner.commit.wait(ticket)?;
        Ok(range)
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
        let mut staged = Staged::new();
        let mut batch = sled::Batch::default();
        if chunked {
            let pending = PendingImport {
                first_seq: first,
                sha256: hash.hex(),
            };
            self.inner.db.insert(
                keys::with_bytes(keys::META, META_PENDING),
                serde_json::to_vec(&pending)?,
            )?;
        }
        for item in items {
            staged.put_item(&w, item, &mut batch)?;
        }
        let mut seq = first;
        let written = (|| -> Result<()> {
            for chunk in events.chunks(IMPORT_CHUNK) {
                let dense = chunk
                    .iter()
                    .map(|ev| staged.intern_event(&w, ev, &mut batch))
                    .collect::<Result<Vec<_>>>()?;
                put_events(&mut batch, seq, &dense)?;
                seq += dense.len() as u64;
                if chunked {
                    self.inner.db.apply_batch(std::mem::take(&mut batch))?;
                    // The chunk's ids are on disk now; keep memory in step with them.
                    std::mem::replace(&mut staged, Staged::new()).commit(&mut w);
                }
                progress(seq - first);
            }
            batch.insert(hash_key, serde_json::to_vec(&record)?);
            if chunked {
                batch.remove(keys::with_bytes(keys::META, META_PENDING));
            }
            self.inner.db.apply_batch(std::mem::take(&mut batch))?;
            Ok(())
        })();
        if let Err(e) = written {
            if chunked {
                // Undo the chunks already applied; ids they introduced stay (harmless).
                rollback_pending_import(&self.inner.db)?;
            }
            return Err(e);
        }
        staged.commit(&mut w);
        w.next_seq = seq;
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
            let mut staged = Staged::new();
            let mut batch = sled::Batch::default();
            for item in items {
                staged.put_item(&w, item, &mut batch)?;
            }
            self.inner.db.apply_batch(batch)?;
            staged.commit(&mut w);
            ticket = self.inner.commit.ticket()?;
        }
        self.inner.commit.wait(ticket)
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

    /// A user's sequence (item events, not impressions), in log order.
    pub fn user_history(&self, user: UserId) -> Result<Vec<UserEntry>> {
        let mut out = Vec::new();
        for kv in self.inner.db.scan_prefix(keys::user_prefix(user)) {
            let (k, v) = kv?;
            if v.len() % UserEntry::BYTES != 0 {
                return Err(corrupt(&k, "user entries of a bad length"));
            }
            for chunk in v.chunks_exact(UserEntry::BYTES) {
                out.push(UserEntry::decode(chunk).ok_or_else(|| corrupt(&k, "bad user entry"))?);
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

    /// Flushes everything and stops the flusher; later writes fail with [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        self.inner.commit.shutdown();
        self.inner.db.flush()?;
        Ok(())
    }
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

    fn id(
        &mut self,
        w: &Writer,
        space: IdSpace,
        name: &str,
        batch: &mut sled::Batch,
    ) -> Result<u32> {
        let (known, fresh, name_prefix, id_prefix, what) = match space {
            IdSpace::User => (
                &w.users,
                &mut self.users,
                keys::USER_NAME,
                keys::USER_ID,
                "user id",
            ),
            IdSpace::Item => (
                &w.items,
                &mut self.items,
                keys::ITEM_NAME,
                keys::ITEM_ID,
                "item id",
            ),
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
        batch.insert(
            keys::with_bytes(id_prefix, name.as_bytes()),
            &id.to_be_bytes()[..],
        );
        batch.insert(&keys::with_id(name_prefix, id)[..], name.as_bytes());
        Ok(id)
    }

    fn intern_event(
        &mut self,
        w: &Writer,
        ev: &RawEvent,
        batch: &mut sled::Batch,
    ) -> Result<Event> {
        let user = self.id(w, IdSpace::User, &ev.user, batch)?;
        let action = ev
            .action
            .clone()
            .try_map_ids(|name| self.id(w, IdSpace::Item, &name, batch))?;
        Ok(Event {
            user,
            ts: ev.ts,
            action,
        })
    }

    fn put_item(&mut self, w: &Writer, item: &Item, batch: &mut sled::Batch) -> Result<()> {
        let id = self.id(w, IdSpace::Item, &item.id, batch)?;
        batch.insert(
            &keys::with_id(keys::CATALOGUE, id)[..],
            serde_json::to_vec(item)?,
        );
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

/// Writes events as blocks of at most [`BLOCK_EVENTS`] under the key of their first
/// sequence number, and each block's per-user index entries grouped by user.
fn put_events(batch: &mut sled::Batch, first_seq: u64, events: &[Event]) -> Result<()> {
    for (i, block) in events.chunks(BLOCK_EVENTS).enumerate() {
        let start = first_seq + (i * BLOCK_EVENTS) as u64;
        let key = keys::event(start);
        let bytes = bincode::serialize(block).map_err(|e| corrupt(&key, e.to_string()))?;
        batch.insert(&key[..], bytes);
        for (user, (first, entries)) in user_groups(start, block) {
            batch.insert(&keys::user_seq(user, first)[..], entries);
        }
    }
    Ok(())
}

/// A block's per-user index entries: user → (seq of the user's first event, entries).
fn user_groups(start: u64, block: &[Event]) -> BTreeMap<UserId, (u64, Vec<u8>)> {
    let mut groups: BTreeMap<UserId, (u64, Vec<u8>)> = BTreeMap::new();
    for (j, ev) in block.iter().enumerate() {
        if let Some(&item) = ev.action.item() {
            let seq = start + j as u64;
            let entry = UserEntry {
                seq,
                item,
                kind: ev.action.kind(),
                ts: ev.ts,
            };
            let g = groups.entry(ev.user).or_insert_with(|| (seq, Vec::new()));
            entry.encode_into(&mut g.1);
        }
    }
    groups
}

fn decode_block(key: &[u8], value: &[u8]) -> Result<(u64, Vec<Event>)> {
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
    let key = keys::with_bytes(keys::META, keys::META_SCHEMA);
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

fn load_ids(db: &sled::Db, name_prefix: u8) -> Result<Interner> {
    let mut ids = Interner::default();
    for kv in db.scan_prefix([name_prefix]) {
        let (k, v) = kv?;
        let id = keys::u32_at(&k, 1).ok_or_else(|| corrupt(&k, "short id key"))?;
        let name = String::from_utf8(v.to_vec()).map_err(|_| corrupt(&k, "id is not UTF-8"))?;
        if !ids.restore(id, name) {
            return Err(corrupt(&k, "id map has a gap"));
        }
    }
    Ok(ids)
}

fn rollback_pending_import(db: &sled::Db) -> Result<()> {
    let key = keys::with_bytes(keys::META, META_PENDING);
    let Some(v) = db.get(&key)? else {
        return Ok(());
    };
    let pending: PendingImport = serde_json::from_slice(&v)?;
    tracing::warn!(
        sha256 = %pending.sha256,
        first_seq = pending.first_seq,
        "rolling back an import interrupted by a crash"
    );
    let mut batch = sled::Batch::default();
    for kv in db.range(keys::event(pending.first_seq)..keys::event(u64::MAX)) {
        let (k, v) = kv?;
        let (start, block) = decode_block(&k, &v)?;
        batch.remove(&k);
        for (user, (first, _)) in user_groups(start, &block) {
            batch.remove(&keys::user_seq(user, first)[..]);
        }
    }
    batch.remove(key);
    db.apply_batch(batch)?;
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
