//! Backups of a store that is serving, and restores from them.
//!
//! [`Store::backup_to`] takes a consistent snapshot without stopping writers for more than
//! a few reads: it holds the store's writer lock only to note the snapshot point (the next
//! sequence number, the number of user and item ids, the live strategy version, the last
//! strategy version and audit entry written), then copies the keys below that point while
//! appends go on. What makes that consistent is the store's shape: event blocks below
//! the point never change (the last one may grow past it and is cut back to it), ids are
//! numbered densely in write order, strategy versions and audit entries are appended
//! under increasing keys. The writes that rewrite what is below the point (forgetting a
//! user, catalogue upserts, imports) wait for a running backup (`Inner::rewrites`).
//! Session snapshots and blobs are copied as they are when read: a session snapshot names
//! how many steps it covers and is used only if the log agrees, so a newer one is simply
//! re-encoded on restore. The per-user index is not copied; a restored store rebuilds it.
//!
//! The file: `ATTUNE-BACKUP-1\n`, then frames `[tag u8][length u32 BE][payload]` (`H` the
//! header, JSON; `K` one key and value, `[key length u32 BE][key][value]`; `T` the
//! trailer, JSON, with counts), then the SHA-256 of every byte before it. A restore reads
//! the file twice: once to check it end to end (a truncated or altered file is refused
//! before anything is written), once to write a new store in a temporary directory that
//! is renamed into place only when complete.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::records::record_key;
use super::{decode_block, keys, RecordSpace, Store};
use crate::error::{Error, Result};
use crate::event::Event;

const MAGIC: &[u8; 16] = b"ATTUNE-BACKUP-1\n";
/// Largest frame a reader accepts (a corrupted length must not allocate gigabytes).
const MAX_FRAME: u32 = 1 << 30;
const STRATEGY_CURRENT: &[u8] = b"current";

/// The snapshot point and what the backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BackupSummary {
    /// The store that was backed up.
    pub source: String,
    /// When the snapshot was taken (ms since the Unix epoch).
    pub created_ms: i64,
    /// Events numbered below this were in the store at the snapshot point; the backup
    /// holds every one of them (but those of users forgotten before).
    pub snapshot_seq: u64,
    /// User and item ids at the snapshot point.
    pub users: u32,
    pub items: u32,
    /// The strategy version in force at the snapshot point.
    pub strategy_version: Option<u64>,
    /// How long appends were held while the snapshot point was taken, in microseconds.
    pub writer_pause_us: u64,
    /// Events in the backup (filled in by the trailer).
    #[serde(default)]
    pub events: u64,
    /// Keys in the backup (filled in by the trailer).
    #[serde(default)]
    pub keys: u64,
    /// The file's size in bytes (known once written or read).
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Trailer {
    events: u64,
    keys: u64,
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.bytes += b.len() as u64;
        self.inner.write_all(b)
    }

    fn frame(&mut self, tag: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| std::io::Error::other("a record over 1 GiB"))?;
        self.put(&[tag])?;
        self.put(&len.to_be_bytes())?;
        for p in parts {
            self.put(p)?;
        }
        Ok(())
    }
}

/// What the snapshot point fixes.
struct Cut {
    seq: u64,
    users: u32,
    items: u32,
    current: Option<Vec<u8>>,
    last_strategy: Option<Vec<u8>>,
    last_audit: Option<Vec<u8>>,
}

impl Cut {
    /// The key and value to copy for `(k, v)`, or `None` to leave it out.
    fn admit(&self, k: &[u8], v: &[u8], events: &mut u64) -> Result<Option<Vec<u8>>> {
        let Some(&prefix) = k.first() else {
            return Ok(None);
        };
        Ok(match prefix {
            keys::EVENT => {
                let (first, mut block) = decode_block(k, v)?;
                if first >= self.seq {
                    return Ok(None);
                }
                let keep = (self.seq - first).min(block.len() as u64) as usize;
                *events += keep as u64;
                if keep == block.len() {
                    Some(v.to_vec())
                } else {
                    block.truncate(keep);
                    Some(encode_block(&block)?)
                }
            }
            // The per-user index is rebuilt by the restored store.
            keys::USER_SEQ => None,
            keys::ID_BLOCK => {
                let first = keys::u32_at(k, 2).unwrap_or(u32::MAX);
                let count = match k.get(1) {
                    Some(&keys::SPACE_USERS) => self.users,
                    Some(&keys::SPACE_ITEMS) => self.items,
                    _ => u32::MAX,
                };
                (first < count).then(|| v.to_vec())
            }
            keys::CATALOGUE => {
                let id = keys::u32_at(k, 1).unwrap_or(u32::MAX);
                (id < self.items).then(|| v.to_vec())
            }
            keys::META => {
                let name = &k[1..];
                (name != keys::META_INDEXED && name != keys::META_PENDING).then(|| v.to_vec())
            }
            keys::RECORD => {
                let strategy = record_key(RecordSpace::Strategy, &[]);
                let audit = record_key(RecordSpace::Audit, &[]);
                if k.starts_with(&strategy) {
                    if &k[strategy.len()..] == STRATEGY_CURRENT {
                        self.current.clone()
                    } else {
                        at_most(k, &self.last_strategy).then(|| v.to_vec())
                    }
                } else if k.starts_with(&audit) {
                    at_most(k, &self.last_audit).then(|| v.to_vec())
                } else {
                    Some(v.to_vec())
                }
            }
            _ => Some(v.to_vec()),
        })
    }
}

fn at_most(k: &[u8], last: &Option<Vec<u8>>) -> bool {
    last.as_deref().is_some_and(|l| k <= l)
}

fn encode_block(block: &[Event]) -> Result<Vec<u8>> {
    bincode::serialize(block).map_err(|e| Error::internal_from("encoding an event block", e))
}

impl Store {
    /// Writes a consistent backup of the store to `out` (see the module doc); appends wait
    /// only while the snapshot point is taken (`writer_pause_us` in the answer), while
    /// forgetting, catalogue upserts and imports wait for the whole backup.
    pub fn backup_to(&self, out: impl Write) -> Result<BackupSummary> {
        let db = &self.db();
        let _rewrites = self.rewrites();
        let last_of = |space: RecordSpace| -> Result<Option<Vec<u8>>> {
            match db.scan_prefix(record_key(space, &[])).next_back() {
                Some(kv) => Ok(Some(kv?.0.to_vec())),
                None => Ok(None),
            }
        };
        let (cut, pause) = {
            let w = self.writer();
            let paused = Instant::now();
            let current = db.get(record_key(RecordSpace::Strategy, STRATEGY_CURRENT))?;
            let mut last_strategy = last_of(RecordSpace::Strategy)?;
            if last_strategy
                .as_deref()
                .is_some_and(|k| k.ends_with(STRATEGY_CURRENT))
            {
                // `current` sorts before the versions (`v` + number): no version yet.
                last_strategy = None;
            }
            let cut = Cut {
                seq: w.next_seq,
                users: w.users.len() as u32,
                items: w.items.len() as u32,
                current: current.map(|v| v.to_vec()),
                last_strategy,
                last_audit: last_of(RecordSpace::Audit)?,
            };
            (cut, paused.elapsed())
        };
        let mut summary = BackupSummary {
            source: self.path().display().to_string(),
            created_ms: super::now_ms(),
            snapshot_seq: cut.seq,
            users: cut.users,
            items: cut.items,
            strategy_version: cut
                .current
                .as_deref()
                .and_then(|v| v.try_into().ok())
                .map(u64::from_be_bytes),
            writer_pause_us: pause.as_micros() as u64,
            ..BackupSummary::default()
        };
        let io = |e: std::io::Error| Error::io("the backup's output", e);
        let mut w = Hashing {
            inner: BufWriter::with_capacity(1 << 20, out),
            hash: Sha256::new(),
            bytes: 0,
        };
        w.put(MAGIC).map_err(io)?;
        w.frame(b'H', &[&serde_json::to_vec(&summary)?])
            .map_err(io)?;
        let mut events = 0u64;
        let mut n = 0u64;
        for kv in db.iter() {
            let (k, v) = kv?;
            if let Some(v) = cut.admit(&k, &v, &mut events)? {
                let klen = (k.len() as u32).to_be_bytes();
                w.frame(b'K', &[&klen, &k, &v]).map_err(io)?;
                n += 1;
            }
        }
        let trailer = Trailer { events, keys: n };
        w.frame(b'T', &[&serde_json::to_vec(&trailer)?])
            .map_err(io)?;
        let digest = w.hash.clone().finalize();
        w.inner.write_all(&digest).map_err(io)?;
        w.inner.flush().map_err(io)?;
        summary.events = events;
        summary.keys = n;
        summary.bytes = w.bytes + digest.len() as u64;
        tracing::info!(
            snapshot_seq = cut.seq,
            events,
            keys = n,
            pause_us = summary.writer_pause_us,
            "backup written"
        );
        Ok(summary)
    }
}

/// Reads a backup frame by frame, hashing as it goes.
struct Frames<R> {
    inner: R,
    hash: Sha256,
    at: u64,
    file: String,
}

enum Frame {
    Header(BackupSummary),
    Key(Vec<u8>, Vec<u8>),
    Trailer(Trailer),
}

impl<R: Read> Frames<R> {
    fn open(inner: R, file: &Path) -> Result<Frames<R>> {
        let mut f = Frames {
            inner,
            hash: Sha256::new(),
            at: 0,
            file: file.display().to_string(),
        };
        let mut magic = [0u8; 16];
        f.read(&mut magic, "the file's signature")?;
        if &magic != MAGIC {
            return Err(f.bad(
                0,
                "not an Attune backup (its first bytes are not the signature)",
            ));
        }
        Ok(f)
    }

    fn bad(&self, at: u64, what: impl std::fmt::Display) -> Error {
        Error::BadBackup {
            file: self.file.clone(),
            at,
            reason: what.to_string(),
        }
    }

    fn read(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.hash.update(&buf[..]);
                self.at += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.bad(
                self.at,
                format!("the backup is truncated: it ends inside {what}"),
            )),
            Err(e) => Err(Error::io(&self.file, e)),
        }
    }

    fn next(&mut self) -> Result<Frame> {
        let at = self.at;
        let mut head = [0u8; 5];
        self.read(
            &mut head,
            "a record's header (no trailer: the backup is incomplete)",
        )?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_FRAME {
            return Err(self.bad(
                at,
                format!("a record of {len} bytes: the file is corrupted"),
            ));
        }
        let mut body = vec![0u8; len as usize];
        self.read(&mut body, "a record")?;
        match head[0] {
            b'H' => serde_json::from_slice(&body)
                .map(Frame::Header)
                .map_err(|e| self.bad(at, format!("unreadable header: {e}"))),
            b'T' => serde_json::from_slice(&body)
                .map(Frame::Trailer)
                .map_err(|e| self.bad(at, format!("unreadable trailer: {e}"))),
            b'K' => {
                let klen = body
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .filter(|l| 4 + l <= body.len())
                    .ok_or_else(|| self.bad(at, "a key longer than its record"))?;
                let value = body.split_off(4 + klen);
                body.drain(..4);
                Ok(Frame::Key(body, value))
            }
            t => Err(self.bad(
                at,
                format!("unknown record type {t}: the file is corrupted"),
            )),
        }
    }

    /// After the trailer: the checksum, then the end of the file.
    fn finish(mut self) -> Result<u64> {
        let expected = self.hash.clone().finalize();
        let mut digest = [0u8; 32];
        let at = self.at;
        match self.inner.read_exact(&mut digest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(self.bad(at, "the backup is truncated: its checksum is missing"))
            }
            Err(e) => return Err(Error::io(&self.file, e)),
        }
        if digest[..] != expected[..] {
            return Err(self.bad(
                at,
                "checksum mismatch: the file was altered or damaged after it was written",
            ));
        }
        let mut rest = [0u8; 1];
        match self.inner.read(&mut rest) {
            Ok(0) => Ok(at + 32),
            Ok(_) => Err(self.bad(at + 32, "bytes after the checksum: the file is corrupted")),
            Err(e) => Err(Error::io(&self.file, e)),
        }
    }
}

/// Reads `file` end to end and checks it; its summary if it is a whole, unaltered backup.
pub fn verify_backup(file: &Path) -> Result<BackupSummary> {
    read_backup(file, |_, _| Ok(()))
}

fn read_backup(
    file: &Path,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<BackupSummary> {
    let f = File::open(file).map_err(|e| Error::io(file, e))?;
    let mut frames = Frames::open(BufReader::with_capacity(1 << 20, f), file)?;
    let mut summary = match frames.next()? {
        Frame::Header(h) => h,
        _ => return Err(frames.bad(16, "the first record is not the header")),
    };
    let mut keys = 0u64;
    let trailer = loop {
        match frames.next()? {
            Frame::Key(k, v) => {
                keys += 1;
                each(&k, &v)?;
            }
            Frame::Trailer(t) => break t,
            Frame::Header(_) => return Err(frames.bad(frames.at, "a second header")),
        }
    };
    if trailer.keys != keys {
        return Err(frames.bad(
            frames.at,
            format!(
                "the trailer counts {} records, the file holds {keys}",
                trailer.keys
            ),
        ));
    }
    summary.bytes = frames.finish()?;
    summary.events = trailer.events;
    summary.keys = trailer.keys;
    Ok(summary)
}

/// Rebuilds a store in `to` (a directory that must not exist, or be empty) from the
/// backup `from`: the file is checked end to end first, and the store is written in a
/// temporary directory beside `to` that is renamed into place only once complete, so a
/// failure leaves nothing behind. The restored store numbers its next event
/// `snapshot_seq` and rebuilds its per-user index when first opened.
pub fn restore_backup(from: &Path, to: &Path) -> Result<BackupSummary> {
    let checked = verify_backup(from)?;
    if to.exists() {
        let empty = to.is_dir()
            && std::fs::read_dir(to)
                .map_err(|e| Error::io(to, e))?
                .next()
                .is_none();
        if !empty {
            return Err(Error::io(
                to,
                std::io::Error::other("exists and is not empty; restore into a new directory"),
            ));
        }
    }
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let tmp: PathBuf = to.with_file_name(format!(".{name}.restoring"));
    if tmp.exists() {
        // Left by a restore that was interrupted: ours by its name.
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let written = (|| -> Result<BackupSummary> {
        let db = sled::Config::new().path(&tmp).flush_every_ms(None).open()?;
        let summary = read_backup(from, |k, v| {
            db.insert(k, v)?;
            Ok(())
        })?;
        if summary != checked {
            return Err(Error::BadBackup {
                file: from.display().to_string(),
                at: summary.bytes,
                reason: "the file changed while it was being restored".into(),
            });
        }
        db.insert(
            keys::meta(keys::META_SEQ_FLOOR),
            &summary.snapshot_seq.to_be_bytes(),
        )?;
        db.flush()?;
        Ok(summary)
    })();
    let summary = match written {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if to.exists() {
        std::fs::remove_dir(to).map_err(|e| Error::io(to, e))?;
    }
    std::fs::rename(&tmp, to).map_err(|e| Error::io(to, e))?;
    // Opening checks the schema; closing lets the indexer catch up with the log.
    let store = Store::open(to, super::StoreConfig::default())?;
    store.close()?;
    Ok(summary)
}
