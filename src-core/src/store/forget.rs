//! Forgetting a user: their events (rewriting the blocks that hold them), index, session
//! snapshot and id, in one batch.

use super::*;

/// What [`Store::forget_user`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    /// The user's dense number, which stays taken and names no one (the audit log records
    /// this, not the id).
    pub number: u32,
    /// Events removed from the log (interactions and impressions).
    pub events: u64,
    /// Chunks of the per-user index removed.
    pub index_chunks: usize,
    /// Whether a session snapshot was removed.
    pub session_snapshot: bool,
}

impl Store {
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
    /// cleaner reuses them, old bytes remain in the files, unreachable, until the next
    /// [`Store::compact`] (which the engine runs soon after a forget).
    pub fn forget_user(&self, name: &str) -> Result<Option<Forgotten>> {
        self.writable()?;
        let _one = self.rewrites();
        let Some(user) = self.user_id(name) else {
            return Ok(None);
        };
        let db = &self.db();
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
        let mut out = Forgotten {
            number: user,
            ..Forgotten::default()
        };
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
}
