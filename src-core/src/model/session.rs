//! CPU serving of the attention model: a plain-Rust copy of a [`SeqRec`]'s weights
//! ([`FastModel`]) and a per-user incremental state ([`SessionState`]) that caches each
//! layer's keys and values, so that a new interaction costs one token's forward pass
//! (`O(len·d + d²)` per layer) instead of re-encoding the whole window
//! (`O(len²·d + len·d²)`), and scoring against the catalogue.
//!
//! Exactness rests on the model's layout: sequences are left-aligned and attention is
//! causal, so appending an item never changes the keys and values of the items before it.
//! Every warm state therefore equals a full encode of its own window
//! ([`SessionState::items`]), which is also why persisting the window alone is lossless.
//!
//! The hot paths are tight loops over slices that LLVM vectorises for the baseline target
//! (no `unsafe`, no runtime dispatch); batches of users go through the same kernels,
//! blocked so that each block of item rows is reused from L1 by every user of the batch.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ops::fast_exp;
use super::{Config, SeqRec};
use crate::error::{Error, Result};

/// Accumulator lanes of the dot-product kernel: four SSE registers (two AVX ones), enough
/// independent chains to hide the latency of the adds.
const LANES: usize = 16;

/// Item rows per block in batch scoring: 64 rows of d = 64 are 16 KiB, which stay in L1
/// while every user vector of the batch is multiplied with them.
const ITEM_BLOCK_BYTES: usize = 16 * 1024;

/// Users scored per pass by [`FastModel::top_k_batch`], bounding its scratch memory.
const TOP_K_BATCH: usize = 64;

/// Ids of [`FastModel`]s; a session remembers the id of the model that built its caches.
static NEXT_MODEL_ID: AtomicU64 = AtomicU64::new(1);

/// Precision of the item table used by [`FastModel::score_all`], [`FastModel::score_batch`]
/// and [`FastModel::top_k`]. The encoder, candidate scoring and the task heads always run
/// in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreDtype {
    /// Full precision.
    #[default]
    F32,
    /// IEEE half precision (10-bit mantissa): half the memory traffic, logits within
    /// about 1e-3 relative. Weights below 2^-14 in magnitude are flushed to zero.
    F16,
    /// bfloat16 (7-bit mantissa): the cheapest to widen, but coarser than f16.
    BF16,
}

/// Next-item logit and task probabilities of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TaskScores {
    /// The candidate (dense item id).
    pub item: u32,
    /// Next-item logit (softmax over [`FastModel::score_all`] turns it into a probability).
    pub next: f32,
    /// Probability that the user likes the item if it comes next.
    pub like: f32,
    /// Probability that the next interaction with the item is a purchase.
    pub purchase: f32,
}

/// A linear layer `y = W x + b`, `W` row-major `(out, in)` as in candle, so that each
/// output is one contiguous dot product.
#[derive(Clone)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
}

impl Dense {
    fn from_candle(l: &candle_nn::Linear, out: usize, inp: usize, name: &str) -> Result<Self> {
        let w = host_vec(l.weight(), &[out, inp], name)?;
        let b = match l.bias() {
            Some(b) => host_vec(b, &[out], name)?,
            None => vec![0.0; out],
        };
        Ok(Dense { w, b, inp })
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        for ((y, row), b) in y.iter_mut().zip(self.w.chunks_exact(self.inp)).zip(&self.b) {
            *y = dot(row, x) + b;
        }
    }
}

/// LayerNorm over the last dimension, in the same order of operations as
/// `layers::LayerNorm` (biased variance, division by `sqrt(var + eps)`).
#[derive(Clone)]
struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn from_candle(
        ln: &super::layers::LayerNorm,
        dim: usize,
        eps: f64,
        name: &str,
    ) -> Result<Self> {
        Ok(Norm {
            w: host_vec(ln.weight(), &[dim], name)?,
            b: host_vec(ln.bias(), &[dim], name)?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let denom = (var + self.eps).sqrt();
        for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(&self.w).zip(&self.b) {
            *y = (x - mean) / denom * w + b;
        }
    }
}

/// One pre-LayerNorm block.
#[derive(Clone)]
struct FastBlock {
    ln1: Norm,
    qkv: Dense,
    out: Dense,
    ln2: Norm,
    fc1: Dense,
    fc2: Dense,
}

/// An item table in 16 bits, row-major `(n_items, dim)`.
#[derive(Clone)]
struct HalfTable {
    dtype: ScoreDtype,
    bits: Vec<u16>,
}

/// A plain-Rust f32 copy of a [`SeqRec`] for serving on the CPU: incremental sessions
/// ([`FastModel::push`]) and scoring against the catalogue. Cheap to share between threads
/// (`Send + Sync`, read-only); cloning copies the weights.
#[derive(Clone)]
pub struct FastModel {
    cfg: Config,
    id: u64,
    /// `sqrt(dim)`, the scale of the item embeddings at the input.
    emb_scale: f32,
    /// Attention logit scale `1 / sqrt(head_dim)`.
    att_scale: f32,
    /// `(n_items + 1, dim)`: row 0 is padding, row `i + 1` is item `i`.
    item_emb: Vec<f32>,
    /// `(max_len, dim)`.
    pos_emb: Vec<f32>,
    blocks: Vec<FastBlock>,
    ln_f: Norm,
    like: Dense,
    like_offset: f32,
    purchase: Dense,
    purchase_offset: f32,
    score_dtype: ScoreDtype,
    half: Option<HalfTable>,
}

impl fmt::Debug for FastModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastModel")
            .field("id", &self.id)
            .field("n_items", &self.cfg.n_items)
            .field("dim", &self.cfg.dim)
            .field("layers", &self.cfg.layers)
            .field("heads", &self.cfg.heads)
            .field("max_len", &self.cfg.max_len)
            .field("score_dtype", &self.score_dtype)
            .finish()
    }
}

/// Cached keys and values of one layer, `(len, dim)` row-major each.
#[derive(Clone, Default, PartialEq)]
struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// One user's incremental state: the window of items the model reads and, per layer, the
/// keys and values of every position, plus the final hidden state of the last position
/// (the user vector).
///
/// Serialised, it holds only the window (`{"items": [...]}`): caches are a pure function
/// of the window and the weights, so a deserialised state is *cold* and
/// [`FastModel::refresh`] (or the next [`FastModel::push`]) re-encodes it, giving the very
/// same state. A state built by another model (say, before a retrain) is re-encoded the
/// same way.
#[derive(Clone, Default)]
pub struct SessionState {
    items: Vec<u32>,
    layers: Vec<KvCache>,
    user: Vec<f32>,
    /// Id of the model whose caches these are; 0 when cold.
    model_id: u64,
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionState")
            .field("len", &self.items.len())
            .field("warm", &self.is_warm())
            .field("model_id", &self.model_id)
            .finish()
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    items: &'a [u32],
}

#[derive(Deserialize)]
struct Snapshot {
    items: Vec<u32>,
}

impl Serialize for SessionState {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        SnapshotRef { items: &self.items }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SessionState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = Snapshot::deserialize(deserializer)?;
        Ok(SessionState {
            items: s.items,
            ..SessionState::default()
        })
    }
}

impl SessionState {
    /// The window the state encodes, oldest first (dense item ids).
    pub fn items(&self) -> &[u32] {
        &self.items
    }

    /// Items in the window.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the caches are built (false after deserialisation until a refresh).
    pub fn is_warm(&self) -> bool {
        self.model_id != 0
    }

    /// The user vector (final hidden state of the last item), `dim` values; `None` when
    /// the window is empty or the state is cold.
    pub fn user_vector(&self) -> Option<&[f32]> {
        (self.is_warm() && !self.items.is_empty()).then_some(self.user.as_slice())
    }
}

/// Temporaries of one token's forward pass, reused across the tokens of an encode.
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    proj: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
}

impl Scratch {
    fn new(cfg: &Config) -> Self {
        let d = cfg.dim;
        Scratch {
            x: vec![0.0; d],
            h: vec![0.0; d],
            qkv: vec![0.0; 3 * d],
            att: vec![0.0; d],
            proj: vec![0.0; d],
            hidden: vec![0.0; d * cfg.ffn_mult],
            scores: Vec::with_capacity(cfg.max_len),
        }
    }
}

fn candle_err(msg: String) -> Error {
    Error::Candle(candle_core::Error::Msg(msg))
}

/// A tensor's values on the host, as f32, after checking its shape.
fn host_vec(t: &Tensor, shape: &[usize], name: &str) -> Result<Vec<f32>> {
    if t.dims() != shape {
        return Err(candle_err(format!(
            "{name}: expected shape {shape:?}, found {:?}",
            t.dims()
        )));
    }
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

impl FastModel {
    /// Copies the weights of `model` (from any device and dtype) into host f32 buffers.
    pub fn from_model(model: &SeqRec) -> Result<FastModel> {
        let cfg = model.config().clone();
        cfg.validate()?;
        let (d, hidden) = (cfg.dim, cfg.dim * cfg.ffn_mult);
        let blocks = model
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let name = |part: &str| format!("blocks.{i}.{part}");
                Ok(FastBlock {
                    ln1: Norm::from_candle(&b.ln1, d, cfg.ln_eps, &name("ln1"))?,
                    qkv: Dense::from_candle(&b.attn.qkv, 3 * d, d, &name("attn.qkv"))?,
                    out: Dense::from_candle(&b.attn.out, d, d, &name("attn.out"))?,
                    ln2: Norm::from_candle(&b.ln2, d, cfg.ln_eps, &name("ln2"))?,
                    fc1: Dense::from_candle(&b.ffn.fc1, hidden, d, &name("ffn.fc1"))?,
                    fc2: Dense::from_candle(&b.ffn.fc2, d, hidden, &name("ffn.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if blocks.len() != cfg.layers {
            return Err(candle_err(format!(
                "the model has {} blocks but its config says {}",
                blocks.len(),
                cfg.layers
            )));
        }
        let scalar = |t: &Tensor, name: &str| -> Result<f32> { Ok(host_vec(t, &[1], name)?[0]) };
        Ok(FastModel {
            id: NEXT_MODEL_ID.fetch_add(1, Ordering::Relaxed),
            emb_scale: (d as f64).sqrt() as f32,
            att_scale: (1.0 / (cfg.head_dim() as f64).sqrt()) as f32,
            item_emb: host_vec(&model.item_emb, &[cfg.n_items + 1, d], "item_emb")?,
            pos_emb: host_vec(&model.pos_emb, &[cfg.max_len, d], "pos_emb")?,
            blocks,
            ln_f: Norm::from_candle(&model.ln_f, d, cfg.ln_eps, "ln_f")?,
            like: Dense::from_candle(&model.like, d, d, "heads.like")?,
            like_offset: scalar(&model.like_offset, "heads.like.offset")?,
            purchase: Dense::from_candle(&model.purchase, d, d, "heads.purchase")?,
            purchase_offset: scalar(&model.purchase_offset, "heads.purchase.offset")?,
            score_dtype: ScoreDtype::F32,
            half: None,
            cfg,
        })
    }

    /// The same model scoring the catalogue with an item table in `dtype` (see
    /// [`ScoreDtype`]); sessions stay valid across the switch.
    pub fn with_score_dtype(mut self, dtype: ScoreDtype) -> FastModel {
        let encode: fn(f32) -> u16 = match dtype {
            ScoreDtype::F32 => {
                self.half = None;
                self.score_dtype = dtype;
                return self;
            }
            ScoreDtype::F16 => f32_to_f16,
            ScoreDtype::BF16 => f32_to_bf16,
        };
        let bits = self.item_table().iter().map(|&x| encode(x)).collect();
        self.half = Some(HalfTable { dtype, bits });
        self.score_dtype = dtype;
        self
    }

    /// Precision of the item table used for catalogue scoring.
    pub fn score_dtype(&self) -> ScoreDtype {
        self.score_dtype
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Catalogue size.
    pub fn n_items(&self) -> usize {
        self.cfg.n_items
    }

    /// Model width (length of a user vector).
    pub fn dim(&self) -> usize {
        self.cfg.dim
    }

    /// The f32 output item table `(n_items, dim)`, row-major.
    pub fn item_table(&self) -> &[f32] {
        &self.item_emb[self.cfg.dim..]
    }

    /// An empty, warm session for this model.
    pub fn new_session(&self) -> SessionState {
        SessionState {
            items: Vec::new(),
            layers: vec![KvCache::default(); self.cfg.layers],
            user: vec![0.0; self.cfg.dim],
            model_id: self.id,
        }
    }

    /// Whether `s` holds caches built by this model.
    pub fn is_current(&self, s: &SessionState) -> bool {
        s.model_id == self.id
    }

    /// Re-encodes `s` from its window if it is cold (deserialised) or was built by another
    /// model; returns whether it did. Fails if the window holds items this model lacks.
    pub fn refresh(&self, s: &mut SessionState) -> Result<bool> {
        if self.is_current(s) {
            return Ok(false);
        }
        *s = self.encode(&s.items)?;
        Ok(true)
    }

    /// The state of a history: a full encode of its most recent `max_len` items. For a
    /// history of at most `max_len` items this is exactly (bit for bit) the state that
    /// pushing them one by one onto [`FastModel::new_session`] gives; a longer history
    /// keeps a full window here, whereas pushing would have rebased on the way.
    pub fn encode(&self, items: &[u32]) -> Result<SessionState> {
        let window = &items[items.len().saturating_sub(self.cfg.max_len)..];
        for &item in window {
            self.check_item(item)?;
        }
        Ok(self.encode_window(window))
    }

    /// Appends `item` (dense id) to the session and updates its user vector: one token's
    /// forward pass against the cached keys and values, `O(len·d + d²)` per layer.
    ///
    /// When the window is full (`max_len` items), the state is first *rebased*: it keeps
    /// the most recent `max_len / 2` items and re-encodes them with positions restarting
    /// at 0, then the item is appended. A rebase costs `max_len / 2` pushes but happens
    /// once every `max_len / 2` pushes, so it amortises to `O(len·d + d²)` per push (the
    /// order of a push itself); afterwards the state equals a full encode of the kept
    /// window. A cold or foreign state is re-encoded first (see [`FastModel::refresh`]).
    pub fn push(&self, s: &mut SessionState, item: u32) -> Result<()> {
        self.check_item(item)?;
        self.refresh(s)?;
        if s.items.len() >= self.cfg.max_len {
            let keep = (self.cfg.max_len / 2).max(1);
            let kept = s.items[s.items.len() - keep..].to_vec();
            *s = self.encode_window(&kept);
        }
        let mut scratch = Scratch::new(&self.cfg);
        self.push_token(s, item, &mut scratch);
        Ok(())
    }

    fn check_item(&self, item: u32) -> Result<()> {
        if (item as usize) < self.cfg.n_items {
            Ok(())
        } else {
            Err(Error::config(
                "item",
                format!(
                    "{item} is outside the model's catalogue of {} items",
                    self.cfg.n_items
                ),
            ))
        }
    }

    /// Encodes a window of valid items of at most `max_len`.
    fn encode_window(&self, window: &[u32]) -> SessionState {
        let mut s = self.new_session();
        s.items.reserve_exact(window.len());
        for cache in &mut s.layers {
            cache.k.reserve_exact(window.len() * self.cfg.dim);
            cache.v.reserve_exact(window.len() * self.cfg.dim);
        }
        let mut scratch = Scratch::new(&self.cfg);
        for &item in window {
            self.push_token(&mut s, item, &mut scratch);
        }
        s
    }

    /// One token's forward pass; `item` is valid and the window has room.
    fn push_token(&self, s: &mut SessionState, item: u32, t: &mut Scratch) {
        let d = self.cfg.dim;
        let pos = s.items.len();
        let emb = &self.item_emb[(item as usize + 1) * d..][..d];
        let pe = &self.pos_emb[pos * d..][..d];
        for ((x, &e), &p) in t.x.iter_mut().zip(emb).zip(pe) {
            *x = e * self.emb_scale + p;
        }
        for (block, cache) in self.blocks.iter().zip(&mut s.layers) {
            block.ln1.forward(&t.x, &mut t.h);
            block.qkv.forward(&t.h, &mut t.qkv);
            let (q, kv) = t.qkv.split_at(d);
            let (k, v) = kv.split_at(d);
            grow(&mut cache.k, d, self.cfg.max_len);
            grow(&mut cache.v, d, self.cfg.max_len);
            cache.k.extend_from_slice(k);
            cache.v.extend_from_slice(v);
            self.attend(q, cache, &mut t.scores, &mut t.att);
            block.out.forward(&t.att, &mut t.proj);
            add_assign(&mut t.x, &t.proj);
            block.ln2.forward(&t.x, &mut t.h);
            block.fc1.forward(&t.h, &mut t.hidden);
            t.hidden.iter_mut().for_each(|v| *v = v.max(0.0));
            block.fc2.forward(&t.hidden, &mut t.proj);
            add_assign(&mut t.x, &t.proj);
        }
        self.ln_f.forward(&t.x, &mut s.user);
        s.items.push(item);
    }

    /// Attention of one query over every cached position (causality is implicit: the
    /// cache holds only the past and the token itself).
    fn attend(&self, q: &[f32], cache: &KvCache, scores: &mut Vec<f32>, out: &mut [f32]) {
        let d = self.cfg.dim;
        let hd = self.cfg.head_dim();
        for (h, (qh, oh)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
            let off = h * hd;
            scores.clear();
            scores.extend(
                cache
                    .k
                    .chunks_exact(d)
                    .map(|row| dot(qh, &row[off..off + hd]) * self.att_scale),
            );
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = fast_exp(*s - max);
                sum += *s;
            }
            let inv = 1.0 / sum;
            oh.fill(0.0);
            for (&p, row) in scores.iter().zip(cache.v.chunks_exact(d)) {
                let p = p * inv;
                for (o, &v) in oh.iter_mut().zip(&row[off..off + hd]) {
                    *o += p * v;
                }
            }
        }
    }

    fn check_user_vec(&self, user_vec: &[f32]) {
        assert_eq!(
            user_vec.len(),
            self.cfg.dim,
            "a user vector has dim = {} values",
            self.cfg.dim
        );
    }

    /// Next-item logits of every item for one user vector, into `out` (`n_items` values),
    /// with the item table of [`FastModel::score_dtype`].
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values or `out` does not hold `n_items`.
    pub fn score_all(&self, user_vec: &[f32], out: &mut [f32]) {
        self.score_batch(user_vec, out);
    }

    /// Next-item logits for a batch of `b` user vectors (`b × dim`, row-major) into `out`
    /// (`b × n_items`). Blocked over items, so that each block of item rows is read from
    /// memory once and reused from L1 by every user of the batch.
    ///
    /// # Panics
    /// If `user_vecs` is not a multiple of `dim` or `out` does not hold `b × n_items`.
    pub fn score_batch(&self, user_vecs: &[f32], out: &mut [f32]) {
        let (d, n) = (self.cfg.dim, self.cfg.n_items);
        assert_eq!(user_vecs.len() % d, 0, "user vectors are rows of dim = {d}");
        let b = user_vecs.len() / d;
        assert_eq!(out.len(), b * n, "scores of {b} users × {n} items");
        let block = (ITEM_BLOCK_BYTES / (d * 4)).max(1);
        match &self.half {
            None => {
                for (j0, rows) in self.item_table().chunks(block * d).enumerate() {
                    let j0 = j0 * block;
                    for (u, scores) in user_vecs.chunks_exact(d).zip(out.chunks_exact_mut(n)) {
                        let scores = &mut scores[j0..j0 + rows.len() / d];
                        for (s, row) in scores.iter_mut().zip(rows.chunks_exact(d)) {
                            *s = dot(u, row);
                        }
                    }
                }
            }
            Some(table) => {
                let dot16 = match table.dtype {
                    ScoreDtype::BF16 => dot_bf16,
                    _ => dot_f16,
                };
                for (j0, rows) in table.bits.chunks(block * d).enumerate() {
                    let j0 = j0 * block;
                    for (u, scores) in user_vecs.chunks_exact(d).zip(out.chunks_exact_mut(n)) {
                        let scores = &mut scores[j0..j0 + rows.len() / d];
                        for (s, row) in scores.iter_mut().zip(rows.chunks_exact(d)) {
                            *s = dot16(u, row);
                        }
                    }
                }
            }
        }
    }

    /// Next-item logits (f32) of the given candidates (dense ids) into `out`.
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values or `out` is not as long as `candidates`.
    pub fn score_candidates(
        &self,
        user_vec: &[f32],
        candidates: &[u32],
        out: &mut [f32],
    ) -> Result<()> {
        self.check_user_vec(user_vec);
        assert_eq!(out.len(), candidates.len(), "one score per candidate");
        for (s, &c) in out.iter_mut().zip(candidates) {
            *s = dot(user_vec, self.item_row(c)?);
        }
        Ok(())
    }

    fn item_row(&self, item: u32) -> Result<&[f32]> {
        self.check_item(item)?;
        let d = self.cfg.dim;
        Ok(&self.item_emb[(item as usize + 1) * d..][..d])
    }

    /// Next-item logit, like and purchase probabilities of each candidate:
    /// `sigmoid((W h + b) · e_j + offset)` for the two task heads.
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values.
    pub fn task_scores(&self, user_vec: &[f32], candidates: &[u32]) -> Result<Vec<TaskScores>> {
        self.check_user_vec(user_vec);
        let d = self.cfg.dim;
        let (mut like, mut buy) = (vec![0.0; d], vec![0.0; d]);
        self.like.forward(user_vec, &mut like);
        self.purchase.forward(user_vec, &mut buy);
        candidates
            .iter()
            .map(|&item| {
                let e = self.item_row(item)?;
                Ok(TaskScores {
                    item,
                    next: dot(user_vec, e),
                    like: sigmoid(dot(&like, e) + self.like_offset),
                    purchase: sigmoid(dot(&buy, e) + self.purchase_offset),
                })
            })
            .collect()
    }

    /// The `k` best items for one user vector, best first (ties: lower id first), never
    /// any of `exclude` (ids outside the catalogue there are ignored).
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values.
    pub fn top_k(&self, user_vec: &[f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
        self.check_user_vec(user_vec);
        let mut scores = vec![0.0; self.cfg.n_items];
        self.score_all(user_vec, &mut scores);
        top_k_of(&mut scores, k, exclude)
    }

    /// [`FastModel::top_k`] for a batch of user vectors (`b × dim`), scored together with
    /// [`FastModel::score_batch`]. `exclude` is empty (nothing excluded) or holds one list
    /// per user.
    ///
    /// # Panics
    /// If `user_vecs` is not a multiple of `dim`, or `exclude` is neither empty nor `b` long.
    pub fn top_k_batch(
        &self,
        user_vecs: &[f32],
        k: usize,
        exclude: &[&[u32]],
    ) -> Vec<Vec<(u32, f32)>> {
        let (d, n) = (self.cfg.dim, self.cfg.n_items);
        assert_eq!(user_vecs.len() % d, 0, "user vectors are rows of dim = {d}");
        let b = user_vecs.len() / d;
        assert!(
            exclude.is_empty() || exclude.len() == b,
            "one exclusion list per user, or none"
        );
        let mut scores = vec![0.0; TOP_K_BATCH.min(b) * n];
        let mut result = Vec::with_capacity(b);
        for (chunk_i, users) in user_vecs.chunks(TOP_K_BATCH * d).enumerate() {
            let scores = &mut scores[..users.len() / d * n];
            self.score_batch(users, scores);
            for (i, row) in scores.chunks_exact_mut(n).enumerate() {
                let ex = exclude
                    .get(chunk_i * TOP_K_BATCH + i)
                    .copied()
                    .unwrap_or(&[]);
                result.push(top_k_of(row, k, ex));
            }
        }
        result
    }
}

/// The `k` highest of `scores` as `(index, score)`, best first, ties by lower index;
/// entries listed in `exclude` (overwritten with −∞ here) and NaNs never appear.
pub fn top_k_of(scores: &mut [f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
    for &e in exclude {
        if let Some(s) = scores.get_mut(e as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
    let k = k.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    // A sorted buffer of the best so far: most items fail the single comparison with its
    // last entry, so the scan costs about one compare per item.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    let mut floor = f32::NEG_INFINITY;
    for (i, &s) in scores.iter().enumerate() {
        // `>` also drops NaN and −∞ (excluded) entries.
        if s > floor {
            let at = best.partition_point(|&(_, b)| b >= s);
            best.insert(at, (i as u32, s));
            if best.len() > k {
                best.pop();
            }
            if best.len() == k {
                floor = best[k - 1].1;
            }
        }
    }
    best
}

/// Reserves cache room for one more row with a bounded doubling, so that a long-lived
/// window of `max_len` rows never holds much more than `max_len` rows of capacity.
fn grow(v: &mut Vec<f32>, d: usize, max_len: usize) {
    if v.capacity() - v.len() < d {
        let rows = v.len() / d;
        let target = (2 * rows).clamp(8, max_len.max(rows + 1));
        v.reserve_exact(target * d - v.len());
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Pairwise sum of the accumulator lanes.
#[inline(always)]
fn hsum(acc: [f32; LANES]) -> f32 {
    let (lo, hi) = acc.split_at(LANES / 2);
    let mut h = [0.0f32; LANES / 2];
    for ((h, &a), &b) in h.iter_mut().zip(lo).zip(hi) {
        *h = a + b;
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// `a · b` with `LANES` independent accumulators (vectorised by LLVM).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ac.iter().zip(bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    hsum(acc) + tail
}

/// `a · b` with `b` in f16 bits.
#[inline(always)]
fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ac.iter().zip(bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * f16_to_f32(y);
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(&x, &y)| x * f16_to_f32(y)).sum();
    hsum(acc) + tail
}

/// `a · b` with `b` in bf16 bits.
#[inline(always)]
fn dot_bf16(a: &[f32], b: &[u16]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ac.iter().zip(bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * bf16_to_f32(y);
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(&x, &y)| x * bf16_to_f32(y)).sum();
    hsum(acc) + tail
}

/// f32 → f16 bits, rounding to nearest even (F. Giesen's `float_to_half_fast3_rtne`),
/// with f16 subnormals flushed to zero so that decoding never meets f32 denormals (slow
/// on x86).
fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    let mag = if abs > 0x7f80_0000 {
        0x7e00 // NaN
    } else if abs >= 0x4780_0000 {
        0x7c00 // ≥ 65536: infinity
    } else if abs < 0x3880_0000 {
        0 // below 2^-14: flushed to zero
    } else {
        let odd = (abs >> 13) & 1;
        ((abs - ((127 - 15) << 23) + 0xfff + odd) >> 13) as u16
    };
    sign | mag
}

/// f16 bits → f32 without branches (so that loops over it vectorise): the f16 exponent and
/// mantissa sit in an f32 scaled by 2^-112, which a multiplication by 2^112 undoes. Zero,
/// normals and subnormals are exact; infinities and NaNs (never in a table) are not.
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let mag = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(mag.to_bits() | ((h & 0x8000) << 16))
}

/// f32 → bf16 bits, rounding to nearest even.
fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    use crate::model::seqrec::fresh;

    fn small_config(n_items: usize, max_len: usize) -> Config {
        Config {
            n_items,
            dim: 32,
            layers: 2,
            heads: 2,
            max_len,
            ..Config::default()
        }
    }

    /// A seeded random model whose biases, offsets and LayerNorm gains are random too, so
    /// that every parameter takes part in the comparisons.
    fn random_model(cfg: &Config, seed: u64) -> SeqRec {
        let (varmap, model) = fresh(cfg, &Device::Cpu, seed).expect("fresh model");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed);
        let data = varmap.data().lock().expect("varmap lock");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let is_gain = name.contains("ln") && name.ends_with("weight");
            if !(name.ends_with("bias") || name.ends_with("offset") || is_gain) {
                continue;
            }
            let base = if is_gain { 1.0 } else { 0.0 };
            let n = var.shape().elem_count();
            let vals: Vec<f32> = (0..n).map(|_| base + rng.gen_range(-0.3f32..0.3)).collect();
            var.set(&Tensor::from_vec(vals, var.shape().clone(), &Device::Cpu).expect("tensor"))
                .expect("set");
        }
        drop(data);
        model
    }

    fn history(rng: &mut impl Rng, len: usize, n_items: usize) -> Vec<u32> {
        (0..len).map(|_| rng.gen_range(0..n_items as u32)).collect()
    }

    /// The candle model's hidden state at the last position of `window`.
    fn candle_user_vec(model: &SeqRec, window: &[u32]) -> Tensor {
        let tokens: Vec<u32> = window.iter().map(|i| i + 1).collect();
        let t = Tensor::from_vec(tokens, (1, window.len()), &Device::Cpu).expect("tokens");
        let h = model.encode(&t, None).expect("encode");
        h.i((0, window.len() - 1))
            .expect("last")
            .unsqueeze(0)
            .expect("row")
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn incremental_push_matches_a_full_candle_encode_at_every_prefix() {
        let cfg = small_config(300, 64);
        let model = random_model(&cfg, 1);
        let fast = FastModel::from_model(&model).expect("fast");
        let items = history(&mut Xoshiro256PlusPlus::seed_from_u64(2), 40, cfg.n_items);
        let mut s = fast.new_session();
        let mut logits = vec![0.0; cfg.n_items];
        for len in 1..=items.len() {
            fast.push(&mut s, items[len - 1]).expect("push");
            let h = candle_user_vec(&model, &items[..len]);
            let want_h = h.flatten_all().expect("f").to_vec1::<f32>().expect("v");
            let user = s.user_vector().expect("warm");
            assert_close(user, &want_h, 1e-4, &format!("user vector at {len}"));
            let want = model
                .next_logits(&h)
                .expect("logits")
                .flatten_all()
                .expect("f");
            fast.score_all(user, &mut logits);
            assert_close(
                &logits,
                &want.to_vec1::<f32>().expect("v"),
                1e-4,
                &format!("logits at {len}"),
            );
        }
        assert_eq!(s.items(), &items[..]);
    }

    #[test]
    fn encode_equals_repeated_push() {
        let cfg = small_config(100, 16);
        let fast = FastModel::from_model(&random_model(&cfg, 3)).expect("fast");
        let items = history(&mut Xoshiro256PlusPlus::seed_from_u64(4), 16, cfg.n_items);
        let mut s = fast.new_session();
        for &i in &items {
            fast.push(&mut s, i).expect("push");
        }
        let e = fast.encode(&items).expect("encode");
        assert_eq!(e.items(), s.items());
        assert_eq!(e.user, s.user);
        assert!(e.layers == s.layers, "caches differ");
        // A longer history keeps its most recent max_len items.
        let mut long = history(&mut Xoshiro256PlusPlus::seed_from_u64(5), 10, cfg.n_items);
        long.extend(&items);
        let e = fast.encode(&long).expect("encode");
        assert_eq!(e.items(), &items[..]);
        assert_eq!(e.user, s.user);
        assert!(fast.encode(&[cfg.n_items as u32]).is_err());
        assert!(fast.push(&mut s, cfg.n_items as u32).is_err());
        assert_eq!(s.len(), 16, "a failed push leaves the state alone");
    }

    #[test]
    fn rebase_keeps_half_the_window_and_equals_a_full_encode_of_it() {
        let cfg = small_config(120, 16);
        let model = random_model(&cfg, 6);
        let fast = FastModel::from_model(&model).expect("fast");
        let items = history(&mut Xoshiro256PlusPlus::seed_from_u64(7), 41, cfg.n_items);
        let mut s = fast.new_session();
        for (n, &i) in items.iter().enumerate() {
            fast.push(&mut s, i).expect("push");
            // Windows grow 1..=16, then restart at 9 (8 kept + 1) and grow to 16 again.
            let want_len = if n < 16 { n + 1 } else { 9 + (n - 16) % 8 };
            assert_eq!(s.len(), want_len, "after {} pushes", n + 1);
            assert_eq!(s.items(), &items[n + 1 - want_len..=n]);
        }
        let e = fast.encode(s.items()).expect("encode");
        assert_eq!(e.user, s.user);
        assert!(e.layers == s.layers, "caches differ");
        let want = candle_user_vec(&model, s.items());
        let want = want.flatten_all().expect("f").to_vec1::<f32>().expect("v");
        assert_close(
            s.user_vector().expect("warm"),
            &want,
            1e-4,
            "user vector after rebases",
        );
    }

    #[test]
    fn scoring_agrees_with_candle() {
        let cfg = small_config(257, 32);
        let model = random_model(&cfg, 8);
        let fast = FastModel::from_model(&model).expect("fast");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let users: Vec<SessionState> = (0..5)
            .map(|u| {
                fast.encode(&history(&mut rng, 5 + 4 * u, cfg.n_items))
                    .expect("encode")
            })
            .collect();
        let vecs: Vec<f32> = users
            .iter()
            .flat_map(|s| s.user_vector().expect("warm").to_vec())
            .collect();
        let h = Tensor::from_vec(vecs.clone(), (users.len(), cfg.dim), &Device::Cpu).expect("h");
        let want = model
            .next_logits(&h)
            .expect("logits")
            .to_vec2::<f32>()
            .expect("v");
        let (like, buy) = model.task_logits_all(&h).expect("tasks");
        let (like, buy) = (
            candle_nn::ops::sigmoid(&like)
                .expect("s")
                .to_vec2::<f32>()
                .expect("v"),
            candle_nn::ops::sigmoid(&buy)
                .expect("s")
                .to_vec2::<f32>()
                .expect("v"),
        );
        let n = cfg.n_items;
        let mut batch = vec![0.0; users.len() * n];
        fast.score_batch(&vecs, &mut batch);
        let candidates = [0u32, 17, 256, 3, 3];
        for (u, s) in users.iter().enumerate() {
            let user = s.user_vector().expect("warm");
            let mut all = vec![0.0; n];
            fast.score_all(user, &mut all);
            assert_close(&all, &want[u], 1e-4, "score_all");
            assert_close(&batch[u * n..(u + 1) * n], &want[u], 1e-4, "score_batch");

            let mut cand = vec![0.0; candidates.len()];
            fast.score_candidates(user, &candidates, &mut cand)
                .expect("candidates");
            let want_c: Vec<f32> = candidates.iter().map(|&c| want[u][c as usize]).collect();
            assert_close(&cand, &want_c, 1e-4, "score_candidates");

            let tasks = fast.task_scores(user, &candidates).expect("tasks");
            for (t, &c) in tasks.iter().zip(&candidates) {
                assert_eq!(t.item, c);
                assert!((t.next - want[u][c as usize]).abs() < 1e-4);
                assert!(
                    (t.like - like[u][c as usize]).abs() < 1e-5,
                    "like {} vs {}",
                    t.like,
                    like[u][c as usize]
                );
                assert!((t.purchase - buy[u][c as usize]).abs() < 1e-5);
            }

            // Reference top-k: a full sort of candle's logits without the excluded items.
            let exclude: Vec<u32> = s.items().to_vec();
            let mut order: Vec<u32> = (0..n as u32).filter(|i| !exclude.contains(i)).collect();
            order.sort_by(|&a, &b| {
                want[u][b as usize]
                    .total_cmp(&want[u][a as usize])
                    .then(a.cmp(&b))
            });
            let top = fast.top_k(user, 10, &exclude);
            assert_eq!(top.len(), 10);
            let got: Vec<u32> = top.iter().map(|&(i, _)| i).collect();
            assert_eq!(got, order[..10].to_vec());
            assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
            assert!(top.iter().all(|(i, _)| !exclude.contains(i)));
            let batch_top = fast.top_k_batch(&vecs, 10, &[]);
            assert_eq!(batch_top[u], fast.top_k(user, 10, &[]));
        }
        assert!(fast
            .score_candidates(&vecs[..cfg.dim], &[n as u32], &mut [0.0])
            .is_err());
        assert!(fast.task_scores(&vecs[..cfg.dim], &[n as u32]).is_err());
    }

    #[test]
    fn top_k_of_handles_small_catalogues_ties_and_exclusions() {
        let mut s = vec![1.0, 3.0, 3.0, f32::NAN, 2.0, 0.5];
        assert_eq!(
            top_k_of(&mut s.clone(), 3, &[]),
            vec![(1, 3.0), (2, 3.0), (4, 2.0)]
        );
        assert_eq!(top_k_of(&mut s.clone(), 0, &[]), vec![]);
        let all = top_k_of(&mut s, 10, &[2, 99]);
        assert_eq!(all, vec![(1, 3.0), (4, 2.0), (0, 1.0), (5, 0.5)]);
    }

    #[test]
    fn half_conversions_match_candles() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(10);
        let mut xs: Vec<f32> = (0..4000)
            .map(|i| rng.gen_range(-4.0f32..4.0) * 0.1f32.powi(i % 5))
            .collect();
        xs.extend([
            0.0,
            -0.0,
            1.0,
            65504.0,
            65519.0,
            -2.5e-3,
            6.103_515_6e-5,
            0.333_333_34,
        ]);
        let t = Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu).expect("t");
        let f16s = t
            .to_dtype(DType::F16)
            .expect("f16")
            .to_dtype(DType::F32)
            .expect("f32");
        let bf16s = t
            .to_dtype(DType::BF16)
            .expect("bf16")
            .to_dtype(DType::F32)
            .expect("f32");
        let (f16s, bf16s) = (
            f16s.to_vec1::<f32>().expect("v"),
            bf16s.to_vec1::<f32>().expect("v"),
        );
        for ((&x, &h), &b) in xs.iter().zip(&f16s).zip(&bf16s) {
            let ours = f16_to_f32(f32_to_f16(x));
            if x.abs() >= 6.103_515_6e-5 {
                assert_eq!(ours.to_bits(), h.to_bits(), "f16 of {x}");
            } else {
                assert_eq!(ours.abs(), 0.0, "{x} flushes to zero");
            }
            assert_eq!(
                bf16_to_f32(f32_to_bf16(x)).to_bits(),
                b.to_bits(),
                "bf16 of {x}"
            );
        }
    }

    #[test]
    fn half_precision_top10_agrees_with_f32() {
        let cfg = Config {
            n_items: 2000,
            dim: 32,
            layers: 1,
            heads: 2,
            max_len: 32,
            ..Config::default()
        };
        let f32m = FastModel::from_model(&random_model(&cfg, 11)).expect("fast");
        let f16m = f32m.clone().with_score_dtype(ScoreDtype::F16);
        let bf16m = f32m.clone().with_score_dtype(ScoreDtype::BF16);
        assert!(
            f16m.is_current(&f32m.new_session()),
            "sessions survive a dtype switch"
        );
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
        let (mut overlap16, mut top1_16, mut overlapb, mut top1_b) = (0, 0, 0, 0);
        let users = 100;
        let mut vecs = Vec::new();
        for _ in 0..users {
            let len = rng.gen_range(1..=cfg.max_len);
            let s = f32m
                .encode(&history(&mut rng, len, cfg.n_items))
                .expect("encode");
            let user = s.user_vector().expect("warm");
            vecs.extend_from_slice(user);
            let want: Vec<u32> = f32m
                .top_k(user, 10, s.items())
                .iter()
                .map(|p| p.0)
                .collect();
            for (m, overlap, top1) in [
                (&f16m, &mut overlap16, &mut top1_16),
                (&bf16m, &mut overlapb, &mut top1_b),
            ] {
                let got: Vec<u32> = m.top_k(user, 10, s.items()).iter().map(|p| p.0).collect();
                *overlap += got.iter().filter(|i| want.contains(i)).count();
                *top1 += usize::from(got[0] == want[0]);
            }
        }
        assert!(
            overlap16 >= 9 * users,
            "f16 top-10 overlap {overlap16} / {}",
            10 * users
        );
        assert!(top1_16 >= 95, "f16 top-1 agreement {top1_16} / {users}");
        assert!(
            overlapb >= 9 * users,
            "bf16 top-10 overlap {overlapb} / {}",
            10 * users
        );
        assert!(top1_b >= 90, "bf16 top-1 agreement {top1_b} / {users}");
        // The batch path uses the same half-precision kernel.
        let mut one = vec![0.0; cfg.n_items];
        let mut all = vec![0.0; users * cfg.n_items];
        f16m.score_batch(&vecs, &mut all);
        f16m.score_all(&vecs[..cfg.dim], &mut one);
        assert_eq!(one, all[..cfg.n_items].to_vec());
        eprintln!("f16: overlap {overlap16}/1000, top-1 {top1_16}/100; bf16: overlap {overlapb}/1000, top-1 {top1_b}/100");
    }

    #[test]
    fn a_deserialised_state_is_cold_until_refreshed_and_then_identical() {
        let cfg = small_config(50, 16);
        let fast = FastModel::from_model(&random_model(&cfg, 13)).expect("fast");
        let s = fast
            .encode(&history(
                &mut Xoshiro256PlusPlus::seed_from_u64(14),
                12,
                cfg.n_items,
            ))
            .expect("encode");
        let json = serde_json::to_string(&s).expect("serialise");
        assert!(json.starts_with("{\"items\":["), "{json}");
        let mut back: SessionState = serde_json::from_str(&json).expect("deserialise");
        assert!(!back.is_warm() && back.user_vector().is_none());
        assert!(fast.refresh(&mut back).expect("refresh"));
        assert!(
            !fast.refresh(&mut back).expect("refresh"),
            "already current"
        );
        assert_eq!(back.user, s.user);
        assert!(back.layers == s.layers);
        // A push onto a cold state refreshes it first.
        let mut cold: SessionState = serde_json::from_str(&json).expect("deserialise");
        let mut warm = s.clone();
        fast.push(&mut cold, 7).expect("push");
        fast.push(&mut warm, 7).expect("push");
        assert_eq!(cold.user, warm.user);
        // A state of another model is re-encoded by this one.
        let other = FastModel::from_model(&random_model(&cfg, 15)).expect("fast");
        let mut moved = s.clone();
        assert!(!other.is_current(&moved));
        other.push(&mut moved, 7).expect("push");
        assert_eq!(moved.user, other.encode(warm.items()).expect("encode").user);
        assert!(
            fast.new_session().user_vector().is_none(),
            "an empty session has no vector"
        );
    }
}
