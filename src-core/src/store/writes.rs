//! Appending events: ids interned in a staging area and committed only with the batch,
//! events written as blocks (the last block rewritten while it can still be filled), and
//! the acknowledgement once the group commit's flush covers the batch.

use super::*;

/// Most names one id block holds (about 60 KB of names): a store keeps several blocks per
/// space, read in key order, and forgetting a user rewrites only the block naming them.
pub(super) const ID_BLOCK_NAMES: usize = 4096;

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
            Err(_) => Err(Error::ShutDown),
        }
    }
}

/// Ids that a batch introduces, copied into the writer's maps only once the batch is
/// applied, so a failed batch leaves no ghost ids in memory.
pub(super) struct Staged {
    pub(super) users: Interner,
    pub(super) items: Interner,
}

impl Staged {
    pub(super) fn new() -> Self {
        Staged {
            users: Interner::default(),
            items: Interner::default(),
        }
    }

    pub(super) fn id(&mut self, w: &Writer, space: IdSpace, name: &str) -> Result<u32> {
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

    pub(super) fn intern_event(&mut self, w: &Writer, ev: &RawEvent) -> Result<Event> {
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
    pub(super) fn write_ids(&self, w: &Writer, batch: &mut Writes) -> Result<()> {
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
            // Blocks of at most ID_BLOCK_NAMES: a million new ids in one value (15 MB) made
            // sled rewrite that value with every insert near it, 15 MB a time.
            for (k, chunk) in names.chunks(ID_BLOCK_NAMES).enumerate() {
                let key = keys::id_block(space, first + (k * ID_BLOCK_NAMES) as u32);
                let bytes = bincode::serialize(&chunk).map_err(|e| corrupt(&key, e.to_string()))?;
                batch.insert(&key[..], bytes);
            }
        }
        Ok(())
    }

    pub(super) fn commit(self, w: &mut Writer) {
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
pub(super) struct Writes(pub(super) Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Writes {
    pub(super) fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.0
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    pub(super) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.0.push((key.as_ref().to_vec(), None));
    }

    pub(super) fn apply(mut self, db: &sled::Db) -> Result<()> {
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
pub(super) fn put_events(batch: &mut Writes, first_seq: u64, events: &[Event]) -> Result<()> {
    for (i, block) in events.chunks(BLOCK_EVENTS).enumerate() {
        let key = keys::event(first_seq + (i * BLOCK_EVENTS) as u64);
        let bytes = bincode::serialize(block).map_err(|e| corrupt(&key, e.to_string()))?;
        batch.insert(&key[..], bytes);
    }
    Ok(())
}

pub(super) fn check_dense(w: &Writer, ev: &Event) -> Result<()> {
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

impl Store {
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
    pub(super) fn apply_with(
        &self,
        build: impl FnOnce(&Writer, &mut Writes) -> Result<(Vec<Event>, Option<Staged>)>,
    ) -> Result<PendingAppend> {
        self.writable()?;
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
        match batch.apply(&self.db()) {
            Err(Error::Sled(e)) => return Err(self.write_failed("writing a batch of events", e)),
            r => r?,
        }
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
}
