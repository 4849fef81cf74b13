//! Importing a parsed file atomically (events, catalogue records and the import record in
//! one batch, or in chunks under a pending marker rolled back after a crash), and
//! catalogue upserts.

use super::*;

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
pub(super) struct PendingImport {
    pub(super) first_seq: u64,
    pub(super) sha256: String,
}

impl Store {
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
        self.writable()?;
        let _rewrites = self.rewrites();
        let hash_key = keys::with_bytes(keys::IMPORT, &hash.0);
        let mut w = self.writer();
        if let Some(prev) = self.db().get(&hash_key)? {
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
            self.db().insert(
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
                batch.apply(&self.db())?;
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
                rollback_pending_import(&self.db())?;
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
        self.writable()?;
        // Upserts rewrite records a running backup may be copying: they wait for it.
        let _rewrites = self.rewrites();
        let ticket;
        {
            let mut w = self.writer();
            self.write_catalogue(&mut w, items)?;
            ticket = self.inner.commit.ticket()?;
        }
        self.inner.commit.wait(ticket)
    }

    /// Interns the items' ids (one batch) and upserts their records (plain inserts).
    pub(super) fn write_catalogue(&self, w: &mut Writer, items: &[Item]) -> Result<()> {
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
        batch.apply(&self.db())?;
        staged.commit(w);
        for (id, item) in ids.into_iter().zip(items) {
            self.db().insert(
                keys::with_id(keys::CATALOGUE, id),
                serde_json::to_vec(item)?,
            )?;
        }
        Ok(())
    }
}
