//! The text source while serving: the items' text vectors, computed by the sentence
//! encoder on a background thread (`attune-text`, low priority) when items arrive, kept
//! in the store with the encoder's identity, and published to the compute threads as an
//! immutable table (swapped whole, like the other sources).
//!
//! An item's stored vector is reused while both the encoder (its weights' sha256) and
//! the item's text are unchanged; otherwise it is computed again. Without an encoder (none
//! configured, or its checkpoint failed to load) the engine serves without the text
//! source and says why in `GET /v1/info`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::event::ItemId;
use crate::store::{RecordSpace, Store};
use crate::supervise::{Restart, Supervised, Supervisor};
use crate::text::{Encoder, TextFields, TextTable};

/// Items encoded per forward pass in the background.
pub const BATCH: usize = 32;
/// Longest the published table lags the vectors computed, while a backlog is worked off.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// What `GET /v1/info` says of the text source.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TextStatus {
    /// `on` (an encoder is loaded) or `off`.
    pub state: String,
    /// The encoder (`name (dim-d, sha256 …)`), when on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// Why the source is off, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Items with a text vector.
    pub items: u64,
    /// Items waiting to be embedded.
    pub pending: u64,
}

/// The text source shared by the engine's handle, its compute threads and its embedding
/// thread.
pub(crate) struct TextSource {
    pub(crate) encoder: Option<Arc<Encoder>>,
    off_reason: Option<String>,
    fields: TextFields,
    table: ArcSwap<TextTable>,
    queue: Option<Sender<Vec<ItemId>>>,
    pending: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TextSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextSource")
            .field("encoder", &self.encoder.as_ref().map(|e| e.id().clone()))
            .field("items", &self.table.load().count())
            .finish()
    }
}

impl TextSource {
    /// A source without an encoder (`reason` says why).
    pub(crate) fn off(reason: impl Into<String>) -> Self {
        TextSource {
            encoder: None,
            off_reason: Some(reason.into()),
            fields: TextFields::default(),
            table: ArcSwap::default(),
            queue: None,
            pending: Default::default(),
        }
    }

    /// Loads the encoder in `dir` and starts the embedding thread, which first embeds
    /// (or reloads) every item of the store. A checkpoint that fails to load leaves the
    /// source off, with the error as the reason: the engine serves without it.
    pub(crate) fn start(
        dir: Option<&std::path::Path>,
        fields: TextFields,
        store: &Store,
        sup: &Supervisor,
        priority: crate::os::BackgroundPriority,
    ) -> Result<(Arc<TextSource>, Option<Supervised>)> {
        let Some(dir) = dir else {
            return Ok((
                Arc::new(TextSource::off("no text encoder configured (encoder)")),
                None,
            ));
        };
        let encoder = match Encoder::load(dir, &candle_core::Device::Cpu) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                tracing::warn!(error = %e, "the text encoder did not load; serving without the text source");
                return Ok((Arc::new(TextSource::off(e.to_string())), None));
            }
        };
        tracing::info!(encoder = %encoder.id(), "text encoder loaded");
        let (tx, rx) = crossbeam_channel::unbounded();
        let source = Arc::new(TextSource {
            encoder: Some(Arc::clone(&encoder)),
            off_reason: None,
            table: ArcSwap::from_pointee(TextTable::new(encoder.dim())),
            fields,
            queue: Some(tx),
            pending: Default::default(),
        });
        source.enqueue((0..store.n_items() as ItemId).collect());
        let mut embedder = Some(Embedder::new(Arc::clone(&source), store.clone(), encoder));
        let thread = sup.spawn("attune-text", priority, Restart::Never, move || {
            if let Some(e) = embedder.take() {
                e.run(&rx);
            }
            Ok(())
        })?;
        Ok((source, Some(thread)))
    }

    /// The table the compute threads read now.
    pub(crate) fn table(&self) -> Arc<TextTable> {
        self.table.load_full()
    }

    /// Asks for `items` to be embedded (again if their text changed).
    pub(crate) fn enqueue(&self, items: Vec<ItemId>) {
        if let (Some(q), false) = (&self.queue, items.is_empty()) {
            self.pending
                .fetch_add(items.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let _ = q.send(items);
        }
    }

    /// Stops the embedding thread after its current pass.
    pub(crate) fn stop(&self) {
        if let Some(q) = &self.queue {
            let _ = q.send(Vec::new());
        }
    }

    /// What `GET /v1/info` says.
    pub(crate) fn status(&self) -> TextStatus {
        TextStatus {
            state: if self.encoder.is_some() { "on" } else { "off" }.into(),
            encoder: self.encoder.as_ref().map(|e| e.id().to_string()),
            reason: self.off_reason.clone(),
            items: self.table.load().count() as u64,
            pending: self.pending.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// A stored vector: the encoder's and the text's fingerprints, then the floats.
fn record(encoder: &[u8; 8], text: &[u8; 8], v: &[f32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + 4 * v.len());
    b.extend_from_slice(encoder);
    b.extend_from_slice(text);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b
}

fn fingerprint(s: &str) -> [u8; 8] {
    let h = Sha256::digest(s.as_bytes());
    let mut f = [0u8; 8];
    f.copy_from_slice(&h[..8]);
    f
}

/// The embedding thread's state.
struct Embedder {
    source: Arc<TextSource>,
    store: Store,
    encoder: Arc<Encoder>,
    encoder_fp: [u8; 8],
    /// The thread's own copy of the table, published every [`PUBLISH_EVERY`].
    table: TextTable,
    dirty: bool,
    last_publish: Instant,
}

impl Embedder {
    fn new(source: Arc<TextSource>, store: Store, encoder: Arc<Encoder>) -> Self {
        let encoder_fp = fingerprint(&encoder.id().sha256);
        Embedder {
            table: TextTable::new(encoder.dim()),
            source,
            store,
            encoder,
            encoder_fp,
            dirty: false,
            last_publish: Instant::now(),
        }
    }

    fn run(mut self, rx: &Receiver<Vec<ItemId>>) {
        let mut todo: BTreeSet<ItemId> = BTreeSet::new();
        let total_start = Instant::now();
        let mut done_total = 0usize;
        loop {
            crate::supervise::checkpoint();
            // Wait for work when there is none; take whatever else has arrived.
            if todo.is_empty() {
                self.publish();
                match rx.recv() {
                    Ok(items) if items.is_empty() => return,
                    Ok(items) => todo.extend(items),
                    Err(_) => return,
                }
            }
            while let Ok(items) = rx.try_recv() {
                if items.is_empty() {
                    return;
                }
                todo.extend(items);
            }
            let chunk: Vec<ItemId> = std::iter::from_fn(|| todo.pop_first())
                .take(BATCH)
                .collect();
            let n = chunk.len();
            if let Err(e) = self.embed(&chunk) {
                tracing::warn!(error = %e, items = n, "embedding item text failed; those items have no text vector");
            }
            done_total += n;
            // Published before `pending` reaches 0: whoever sees 0 sees every vector.
            if todo.is_empty() || self.last_publish.elapsed() >= PUBLISH_EVERY {
                self.publish();
            }
            let left = self
                .source
                .pending
                .fetch_sub(n as u64, std::sync::atomic::Ordering::Relaxed);
            if left.saturating_sub(n as u64) == 0 && done_total >= 1000 {
                tracing::info!(
                    items = done_total,
                    seconds = total_start.elapsed().as_secs_f64(),
                    "item text embedded"
                );
            }
        }
    }

    fn publish(&mut self) {
        if self.dirty {
            self.source.table.store(Arc::new(self.table.clone()));
            self.dirty = false;
        }
        self.last_publish = Instant::now();
    }

    /// Embeds (or reloads from the store) the vectors of `items`.
    fn embed(&mut self, items: &[ItemId]) -> Result<()> {
        let mut texts: Vec<(ItemId, String, [u8; 8])> = Vec::new();
        let dim = self.encoder.dim();
        for &item in items {
            let key = item.to_be_bytes();
            let text = match self.store.item(item)? {
                Some(it) => self.source.fields.text_of(&it),
                None => String::new(),
            };
            if text.is_empty() {
                if self.table.get(item).is_some() {
                    self.table.clear(item);
                    self.dirty = true;
                }
                continue;
            }
            let fp = fingerprint(&text);
            if let Some(b) = self.store.get_record(RecordSpace::Text, &key)? {
                if b.len() == 16 + 4 * dim && b[..8] == self.encoder_fp && b[8..16] == fp {
                    let v: Vec<f32> = b[16..]
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    self.table.set(item, &v);
                    self.dirty = true;
                    continue;
                }
            }
            texts.push((item, text, fp));
        }
        if texts.is_empty() {
            return Ok(());
        }
        let refs: Vec<&str> = texts.iter().map(|t| t.1.as_str()).collect();
        let vectors = self.encoder.encode(&refs)?;
        for ((item, _, fp), v) in texts.iter().zip(vectors) {
            self.table.set(*item, &v);
            // Derived data: not flushed on its own (recomputed if a crash loses it).
            self.store.put_record(
                RecordSpace::Text,
                &item.to_be_bytes(),
                &record(&self.encoder_fp, fp, &v),
            )?;
        }
        self.dirty = true;
        Ok(())
    }
}

/// Most items a similar-items or search answer lists.
pub const MAX_K: usize = 1000;

/// One item of a similar-items or search answer.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TextMatch {
    /// The item's id.
    pub item: String,
    /// Cosine of its text vector with the query's, in `[-1, 1]`.
    pub score: f32,
    /// Its title (may be empty).
    pub title: String,
    /// Its tags (categories, genres; may be empty).
    pub tags: Vec<String>,
}

/// `GET /v1/items/{id}/similar` and `GET /v1/items/search`: items by text.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = TextMatches)]
pub struct TextMatches {
    /// The encoder that made the vectors.
    pub encoder: String,
    /// Best first.
    pub items: Vec<TextMatch>,
}

impl super::Engine {
    /// What the text source is doing: its encoder, items embedded, items waiting.
    pub fn text_status(&self) -> TextStatus {
        self.shared.text.status()
    }

    fn text_on(&self, k: usize) -> Result<(&Arc<Encoder>, Arc<TextTable>)> {
        self.check_open()?;
        if !(1..=MAX_K).contains(&k) {
            return Err(crate::error::Error::BadRequest(format!(
                "k: must be in [1, {MAX_K}], got {k}"
            )));
        }
        let t = &self.shared.text;
        match &t.encoder {
            Some(e) => Ok((e, t.table())),
            None => Err(crate::error::Error::Unavailable(format!(
                "the text source is off: {}",
                t.off_reason.as_deref().unwrap_or("no encoder")
            ))),
        }
    }

    fn matches(&self, encoder: &Encoder, found: Vec<(ItemId, f32)>) -> Result<TextMatches> {
        let catalog = self.shared.catalog();
        let mut items = Vec::with_capacity(found.len());
        for (item, score) in found {
            let (title, tags) = self
                .shared
                .store
                .item(item)?
                .map(|i| (i.title, i.tags))
                .unwrap_or_default();
            items.push(TextMatch {
                item: catalog.name(item).to_owned(),
                score,
                title,
                tags,
            });
        }
        Ok(TextMatches {
            encoder: encoder.id().to_string(),
            items,
        })
    }

    /// The `k` items whose text is nearest to item `id`'s (itself left out).
    pub fn similar_items(&self, id: &str, k: usize) -> Result<TextMatches> {
        let (encoder, table) = self.text_on(k)?;
        let dense = self
            .shared
            .store
            .item_id(id)
            .ok_or_else(|| crate::error::Error::NotFound(format!("no item {id:?}")))?;
        let Some(query) = table.get(dense).map(<[f32]>::to_vec) else {
            return Err(crate::error::Error::NotFound(format!(
                "item {id:?} has no text vector: it has no title or tags, or is still being embedded ({} waiting)",
                self.shared.text.status().pending
            )));
        };
        let found = table.nearest(&query, k, |i| i == dense);
        self.matches(encoder, found)
    }

    /// The `k` items whose text is nearest to the free text `q` (encoded on the calling
    /// thread: a few milliseconds; call it off an async executor).
    pub fn search_items(&self, q: &str, k: usize) -> Result<TextMatches> {
        let (encoder, table) = self.text_on(k)?;
        let q = q.trim();
        if q.is_empty() || q.len() > 1000 {
            return Err(crate::error::Error::BadRequest(
                "q: a text of 1 to 1000 bytes is needed".into(),
            ));
        }
        let query = encoder
            .encode(&[q])?
            .pop()
            .ok_or_else(|| crate::error::Error::internal("the encoder returned no vector"))?;
        let found = table.nearest(&query, k, |_| false);
        self.matches(encoder, found)
    }
}
