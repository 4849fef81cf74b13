//! Record spaces: small keyed records beside the log (strategy versions, session
//! snapshots, blobs such as the learner's state, the audit log), each under its own key
//! prefix.

use super::*;

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
    /// Items' text vectors (see `engine::text`), derived from the catalogue: recomputed
    /// when lost.
    Text,
}

impl RecordSpace {
    pub(super) fn byte(self) -> u8 {
        match self {
            RecordSpace::Strategy => b's',
            RecordSpace::Session => b'x',
            RecordSpace::Blob => b'b',
            RecordSpace::Audit => b'a',
            RecordSpace::Text => b't',
        }
    }
}

pub(super) fn record_key(space: RecordSpace, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(keys::RECORD);
    k.push(space.byte());
    k.extend_from_slice(key);
    k
}

impl Store {
    /// Writes a record of an engine space (not flushed: see [`Store::put_record_durable`]).
    pub fn put_record(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<()> {
        self.writable()?;
        self.db()
            .insert(record_key(space, key), value)
            .map_err(|e| self.write_failed("writing a record", e))?;
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
        Ok(self.db().get(record_key(space, key))?.map(|v| v.to_vec()))
    }

    /// Removes a record; returns whether there was one.
    pub fn remove_record(&self, space: RecordSpace, key: &[u8]) -> Result<bool> {
        self.writable()?;
        Ok(self.db().remove(record_key(space, key))?.is_some())
    }

    /// Every record of a space as `(key, value)`, in key order.
    pub fn records(&self, space: RecordSpace) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = record_key(space, &[]);
        self.db()
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
        self.db()
            .range((std::ops::Bound::Included(prefix.clone()), end))
            .rev()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k[prefix.len()..].to_vec(), v.to_vec()))
            })
            .collect()
    }
}
