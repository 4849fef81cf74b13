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
//! The hot loops are written for LLVM's vectoriser on the baseline x86-64 target (SSE2; no
//! `unsafe`, so no runtime dispatch): weight matrices, the item table and the cached keys
//! are stored as *panels* of 32 rows laid out column by column, so that a matrix-vector
//! product accumulates 32 outputs at once from broadcasts of the input, with no horizontal
//! sums. Batches of users reuse each panel from L1, except f32 batches of 8 users or more,
//! which go to candle's gemm (runtime-dispatched AVX-512 / FMA, about twice as fast per
//! core). Building with a wider target (`-C target-cpu=x86-64-v3` or `native`) widens
//! every one of the plain loops.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Storage, Tensor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ops::fast_exp;
use super::{Config, SeqRec};
use crate::error::{Error, Result};

/// Rows per panel: 32 f32 accumulators are eight SSE registers (four AVX ones).
const P: usize = 32;

/// Users scored per pass by [`FastModel::top_k_batch`], bounding its scratch memory.
const TOP_K_BATCH: usize = 64;

/// Batches of at least this many users are scored in f32 by candle's gemm. Below it the
/// panel kernels win since they take two users per pass with fused multiply-adds
/// (measured, one thread, 3,700 items: 7.8 µs a user for 2 to 32 users, against 21 µs
/// at 8, 12 µs at 16 and 7.9 µs at 32 with gemm; at 64 gemm takes 6.1 µs).
const GEMM_MIN_BATCH: usize = 64;

/// Batches below this size multiply bf16 panels directly; larger ones widen each panel
/// to f32 once and reuse it for every user.
const WIDEN_MIN_BATCH: usize = 4;

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
    /// IEEE half precision (10-bit mantissa, each weight within 2^-11 relative): half the
    /// memory. Weights below 2^-14 in magnitude are flushed to zero.
    F16,
    /// bfloat16 (7-bit mantissa): half the memory and the cheapest to widen, but coarser.
    BF16,
}

/// A user vector projected by the task heads (see [`FastModel::task_heads`]).
#[derive(Debug, Clone)]
pub struct TaskHeads {
    like: Vec<f32>,
    purchase: Vec<f32>,
}

/// Next-item logit and task probabilities of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TaskScores {
    /// The candidate (dense item id).
    pub item: u32,
    /// Next-item logit (a softmax over [`FastModel::score_all`] makes it a probability).
    pub next: f32,
    /// Probability that the user likes the item if it comes next.
    pub like: f32,
    /// Probability that the next interaction with the item is a purchase.
    pub purchase: f32,
}

/// A `(rows, cols)` matrix as panels of `P` rows: panel `p` holds rows `p·P..p·P + P`
/// column by column (`cols` arrays of `P` lanes), zero past the last row.
#[derive(Clone)]
struct Panels<T> {
    data: Vec<[T; P]>,
    cols: usize,
}

impl<T: Copy + Default> Panels<T> {
    /// From a row-major `(rows, cols)` matrix, converting each value with `f`.
    fn from_rows(w: &[f32], rows: usize, cols: usize, f: impl Fn(f32) -> T) -> Self {
        let mut data = vec![[T::default(); P]; rows.div_ceil(P) * cols];
        for (r, row) in w.chunks_exact(cols).take(rows).enumerate() {
            let base = (r / P) * cols;
            for (col, &v) in data[base..base + cols].iter_mut().zip(row) {
                col[r % P] = f(v);
            }
        }
        Panels { data, cols }
    }

    fn panels(&self) -> std::slice::ChunksExact<'_, [T; P]> {
        self.data.chunks_exact(self.cols)
    }
}

impl Panels<f32> {
    /// `y = W x`.
    fn matvec(&self, x: &[f32], y: &mut [f32]) {
        for (panel, y) in self.panels().zip(y.chunks_mut(P)) {
            let acc = panel_mul(x, panel);
            y.copy_from_slice(&acc[..y.len()]);
        }
    }
}

/// A linear layer `y = W x + b`.
#[derive(Clone)]
struct Dense {
    w: Panels<f32>,
    b: Vec<f32>,
}

impl Dense {
    fn from_candle(l: &candle_nn::Linear, out: usize, inp: usize, name: &str) -> Result<Self> {
        let w = host_vec(l.weight(), &[out, inp], name)?;
        let b = match l.bias() {
            Some(b) => host_vec(b, &[out], name)?,
            None => vec![0.0; out],
        };
        Ok(Dense {
            w: Panels::from_rows(&w, out, inp, |v| v),
            b,
        })
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        self.w.matvec(x, y);
        add_assign(y, &self.b);
    }
}

/// LayerNorm over the last dimension, as `layers::LayerNorm` computes it (biased variance,
/// division by `sqrt(var + eps)`).
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
        let mean = sum(x) / n;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x - mean;
        }
        let denom = (dot(y, y) / n + self.eps).sqrt();
        for ((y, &w), &b) in y.iter_mut().zip(&self.w).zip(&self.b) {
            *y = *y / denom * w + b;
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

/// The item table in 16 bits, as panels.
#[derive(Clone)]
struct HalfTable {
    dtype: ScoreDtype,
    bits: Panels<u16>,
}

/// A plain-Rust f32 copy of a [`SeqRec`] for serving on the CPU: incremental sessions
/// ([`FastModel::push`]) and scoring against the catalogue. Read-only once built, so one
/// instance serves every thread; cloning copies the weights.
#[derive(Clone)]
pub struct FastModel {
    cfg: Config,
    id: u64,
    /// `sqrt(dim)`, the scale of the item embeddings at the input.
    emb_scale: f32,
    /// Attention logit scale `1 / sqrt(head_dim)`.
    att_scale: f32,
    /// `(n_items + 1, dim)` row-major: row 0 is padding, row `i + 1` is item `i`.
    item_emb: Vec<f32>,
    /// The output table (item rows of `item_emb`) as panels, for catalogue scoring.
    table: Panels<f32>,
    /// The output table as a `(dim, n_items)` CPU tensor (a transposed view), for gemm.
    table_t: Tensor,
    /// `(max_len, dim)` row-major.
    pos_emb: Vec<f32>,
    blocks: Vec<FastBlock>,
    ln_f: Norm,
    like: Dense,
    like_offset: f32,
    purchase: Dense,
    purchase_offset: f32,
    half: Option<HalfTable>,
    /// Score batches of 8 or more through candle's multi-threaded gemm.
    gemm: bool,
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
            .field("score_dtype", &self.score_dtype())
            .finish()
    }
}

/// Cached keys and values of one layer.
#[derive(Clone, Default, PartialEq)]
struct KvCache {
    /// Keys as panels of `P` positions: row `p·dim + h·head_dim + j` holds component `j`
    /// of head `h`'s keys at positions `p·P..p·P + P` (its lanes), so that a query's
    /// scores come out `P` positions at a time.
    k: Vec<[f32; P]>,
    /// Values, `(len, dim)` row-major.
    v: Vec<f32>,
}

/// One user's incremental state: the window of items the model reads and, per layer, the
/// keys and values of every position, plus the final hidden state of the last position
/// (the user vector). About `layers · 2 · len · dim · 4` bytes (200 KiB at ml-1m size).
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

    /// Approximate heap bytes held (window, caches, user vector).
    pub fn approx_bytes(&self) -> usize {
        self.items.capacity() * 4
            + self
                .layers
                .iter()
                .map(|l| l.k.capacity() * P * 4 + l.v.capacity() * 4)
                .sum::<usize>()
            + self.user.capacity() * 4
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
            scores: Vec::with_capacity(cfg.max_len.next_multiple_of(P)),
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
        let item_emb = host_vec(&model.item_emb, &[cfg.n_items + 1, d], "item_emb")?;
        Ok(FastModel {
            id: NEXT_MODEL_ID.fetch_add(1, Ordering::Relaxed),
            emb_scale: (d as f64).sqrt() as f32,
            att_scale: (1.0 / (cfg.head_dim() as f64).sqrt()) as f32,
            table: Panels::from_rows(&item_emb[d..], cfg.n_items, d, |v| v),
            table_t: Tensor::from_slice(&item_emb[d..], (cfg.n_items, d), &Device::Cpu)?.t()?,
            item_emb,
            pos_emb: host_vec(&model.pos_emb, &[cfg.max_len, d], "pos_emb")?,
            blocks,
            ln_f: Norm::from_candle(&model.ln_f, d, cfg.ln_eps, "ln_f")?,
            like: Dense::from_candle(&model.like, d, d, "heads.like")?,
            like_offset: scalar(&model.like_offset, "heads.like.offset")?,
            purchase: Dense::from_candle(&model.purchase, d, d, "heads.purchase")?,
            purchase_offset: scalar(&model.purchase_offset, "heads.purchase.offset")?,
            half: None,
            gemm: true,
            cfg,
        })
    }

    /// The same model scoring batches on the calling thread only (`false`), with the
    /// panel kernels, instead of through candle's gemm and its thread pool (`true`, the
    /// default). A server with dedicated compute threads wants the former: the pool's
    /// threads would compete with every other thread for the cores.
    pub fn with_gemm(mut self, gemm: bool) -> FastModel {
        self.gemm = gemm;
        self
    }

    /// The same model scoring the catalogue with an item table in `dtype` (see
    /// [`ScoreDtype`]); sessions stay valid across the switch.
    pub fn with_score_dtype(mut self, dtype: ScoreDtype) -> FastModel {
        let encode: fn(f32) -> u16 = match dtype {
            ScoreDtype::F32 => {
                self.half = None;
                return self;
            }
            ScoreDtype::F16 => f32_to_f16,
            ScoreDtype::BF16 => f32_to_bf16,
        };
        let (n, d) = (self.cfg.n_items, self.cfg.dim);
        let bits = Panels::from_rows(self.item_table(), n, d, encode);
        self.half = Some(HalfTable { dtype, bits });
        self
    }

    /// Precision of the item table used for catalogue scoring.
    pub fn score_dtype(&self) -> ScoreDtype {
        self.half.as_ref().map_or(ScoreDtype::F32, |h| h.dtype)
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
    /// order of a push itself), though that one push is slow (`max_len / 2` times a push);
    /// afterwards the state equals a full encode of the kept window plus the new item.
    /// A cold or foreign state is re-encoded first (see [`FastModel::refresh`]).
    pub fn push(&self, s: &mut SessionState, item: u32) -> Result<()> {
        self.check_item(item)?;
        self.refresh(s)?;
        if s.items.len() >= self.cfg.max_len {
            let keep = (self.cfg.max_len / 2).max(1);
            let kept = s.items[s.items.len() - keep..].to_vec();
            *s = self.encode_window(&kept);
        }
        let mut scratch = Scratch::new(&self.cfg);
        self.push_token(s, item, &mut scratch, None);
        Ok(())
    }

    /// The attention of the last position of a history's window (its most recent
    /// `max_len` items) over the window, in the last block: one row per head, each a
    /// softmax over the window's positions (oldest first), so each row sums to 1. This
    /// is what the model looked at to form the user vector that ranks the catalogue.
    pub fn attention(&self, items: &[u32]) -> Result<Vec<Vec<f32>>> {
        let window = &items[items.len().saturating_sub(self.cfg.max_len)..];
        let Some((&last, before)) = window.split_last() else {
            return Ok(Vec::new());
        };
        for &item in window {
            self.check_item(item)?;
        }
        let mut s = self.encode_window(before);
        let mut scratch = Scratch::new(&self.cfg);
        let mut rows = Vec::with_capacity(self.cfg.heads);
        self.push_token(&mut s, last, &mut scratch, Some(&mut rows));
        Ok(rows)
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
        let d = self.cfg.dim;
        let mut s = self.new_session();
        s.items.reserve_exact(window.len());
        for cache in &mut s.layers {
            cache.k.reserve_exact(window.len().div_ceil(P) * d);
            cache.v.reserve_exact(window.len() * d);
        }
        let mut scratch = Scratch::new(&self.cfg);
        for &item in window {
            self.push_token(&mut s, item, &mut scratch, None);
        }
        s
    }

    /// One token's forward pass; `item` is valid and the window has room. With `probs`,
    /// the last block's attention weights of this token (one row per head) are kept there.
    fn push_token(
        &self,
        s: &mut SessionState,
        item: u32,
        t: &mut Scratch,
        mut probs: Option<&mut Vec<Vec<f32>>>,
    ) {
        let d = self.cfg.dim;
        let pos = s.items.len();
        let emb = &self.item_emb[(item as usize + 1) * d..][..d];
        let pe = &self.pos_emb[pos * d..][..d];
        for ((x, &e), &p) in t.x.iter_mut().zip(emb).zip(pe) {
            *x = e * self.emb_scale + p;
        }
        let (panel_rows, lane) = ((pos / P) * d, pos % P);
        let max_panels = self.cfg.max_len.div_ceil(P);
        let last = self.blocks.len().saturating_sub(1);
        for (i, (block, cache)) in self.blocks.iter().zip(&mut s.layers).enumerate() {
            block.ln1.forward(&t.x, &mut t.h);
            block.qkv.forward(&t.h, &mut t.qkv);
            let (q, kv) = t.qkv.split_at(d);
            let (k, v) = kv.split_at(d);
            if lane == 0 {
                grow(&mut cache.k, d, 1, max_panels);
                cache.k.resize(cache.k.len() + d, [0.0; P]);
            }
            for (row, &k) in cache.k[panel_rows..panel_rows + d].iter_mut().zip(k) {
                row[lane] = k;
            }
            grow(&mut cache.v, d, 8, self.cfg.max_len);
            cache.v.extend_from_slice(v);
            let keep = if i == last {
                probs.as_deref_mut()
            } else {
                None
            };
            self.attend(q, cache, &mut t.scores, &mut t.att, keep);
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

    /// Attention of the newest position's query over every cached position (causality is
    /// implicit: the cache holds only the past and the token itself).
    fn attend(
        &self,
        q: &[f32],
        cache: &KvCache,
        scores: &mut Vec<f32>,
        out: &mut [f32],
        mut probs: Option<&mut Vec<Vec<f32>>>,
    ) {
        let d = self.cfg.dim;
        let hd = self.cfg.head_dim();
        let len = cache.v.len() / d;
        for (h, (qh, oh)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
            scores.clear();
            for panel in cache.k.chunks_exact(d) {
                let acc = panel_mul(qh, &panel[h * hd..(h + 1) * hd]);
                scores.extend(acc.iter().map(|s| s * self.att_scale));
            }
            scores.truncate(len);
            let max = max_of(scores);
            scores.iter_mut().for_each(|s| *s = fast_exp(*s - max));
            let inv = 1.0 / sum(scores);
            scores.iter_mut().for_each(|s| *s *= inv);
            if let Some(p) = probs.as_deref_mut() {
                p.push(scores.clone());
            }
            weighted_rows(scores, &cache.v, d, h * hd, oh);
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
        self.check_user_vec(user_vec);
        self.score_batch(user_vec, out);
    }

    /// Next-item logits for a batch of `b` user vectors (`b × dim`, row-major) into `out`
    /// (`b × n_items`). With the f32 table, batches of 8 or more go through candle's gemm
    /// (which uses its own thread pool); otherwise each panel of 32 item rows (8 KiB at
    /// d = 64) is read once and reused from L1 by every user of the batch, and a 16-bit
    /// panel is widened once for them all.
    ///
    /// # Panics
    /// If `user_vecs` is not a multiple of `dim` or `out` does not hold `b × n_items`.
    pub fn score_batch(&self, user_vecs: &[f32], out: &mut [f32]) {
        let (d, n) = (self.cfg.dim, self.cfg.n_items);
        assert_eq!(user_vecs.len() % d, 0, "user vectors are rows of dim = {d}");
        let b = user_vecs.len() / d;
        assert_eq!(out.len(), b * n, "scores of {b} users × {n} items");
        if self.gemm && self.half.is_none() && b >= GEMM_MIN_BATCH {
            match self.gemm_scores(user_vecs, b, out) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "gemm scoring failed; using the panel kernels")
                }
            }
        }
        let mut wide = vec![[0.0f32; P]; if self.half.is_some() { d } else { 0 }];
        for (p, f32_panel) in self.table.panels().enumerate() {
            let (j0, width) = (p * P, (n - p * P).min(P));
            let panel: &[[f32; P]] = match &self.half {
                None => f32_panel,
                Some(half) => {
                    let bits = &half.bits.data[p * d..(p + 1) * d];
                    match half.dtype {
                        ScoreDtype::BF16 if b < WIDEN_MIN_BATCH => {
                            for (u, scores) in
                                user_vecs.chunks_exact(d).zip(out.chunks_exact_mut(n))
                            {
                                let acc = panel_mul_bf16(u, bits);
                                scores[j0..j0 + width].copy_from_slice(&acc[..width]);
                            }
                            continue;
                        }
                        ScoreDtype::BF16 => widen(bits, &mut wide, bf16_to_f32),
                        _ => widen(bits, &mut wide, f16_to_f32),
                    }
                    &wide
                }
            };
            let mut users = user_vecs.chunks_exact(d).zip(out.chunks_exact_mut(n));
            while let Some((u, su)) = users.next() {
                if let Some((v, sv)) = users.next() {
                    let (au, av) = panel_mul2(u, v, panel);
                    su[j0..j0 + width].copy_from_slice(&au[..width]);
                    sv[j0..j0 + width].copy_from_slice(&av[..width]);
                } else {
                    let acc = panel_mul(u, panel);
                    su[j0..j0 + width].copy_from_slice(&acc[..width]);
                }
            }
        }
    }

    /// `out = user_vecs · table^T` by candle's matmul, copied straight from its storage.
    fn gemm_scores(&self, user_vecs: &[f32], b: usize, out: &mut [f32]) -> Result<()> {
        let h = Tensor::from_slice(user_vecs, (b, self.cfg.dim), &Device::Cpu)?;
        let logits = h.matmul(&self.table_t)?;
        let (storage, layout) = logits.storage_and_layout();
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_err("gemm gave non-contiguous logits".into()))?;
        match &*storage {
            Storage::Cpu(cpu) => out.copy_from_slice(&cpu.as_slice::<f32>()?[start..end]),
            _ => return Err(candle_err("gemm logits are not on the CPU".into())),
        }
        Ok(())
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

    /// The task heads' projections of a user vector (`W h + b` of the like and purchase
    /// heads), for scoring candidates one at a time with [`FastModel::task_probs`].
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values.
    pub fn task_heads(&self, user_vec: &[f32]) -> TaskHeads {
        self.check_user_vec(user_vec);
        let d = self.cfg.dim;
        let (mut like, mut purchase) = (vec![0.0; d], vec![0.0; d]);
        self.like.forward(user_vec, &mut like);
        self.purchase.forward(user_vec, &mut purchase);
        TaskHeads { like, purchase }
    }

    /// Like and purchase probabilities of one candidate (dense id), as
    /// [`FastModel::task_scores`] gives them.
    pub fn task_probs(&self, heads: &TaskHeads, item: u32) -> Result<(f32, f32)> {
        let e = self.item_row(item)?;
        Ok((
            sigmoid(dot(&heads.like, e) + self.like_offset),
            sigmoid(dot(&heads.purchase, e) + self.purchase_offset),
        ))
    }

    /// The `k` best items for one user vector, best first (ties: lower id first), never
    /// any of `exclude` (ids outside the catalogue there are ignored).
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values.
    pub fn top_k(&self, user_vec: &[f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
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
        for (chunk, users) in user_vecs.chunks(TOP_K_BATCH * d).enumerate() {
            let scores = &mut scores[..users.len() / d * n];
            self.score_batch(users, scores);
            for (i, row) in scores.chunks_exact_mut(n).enumerate() {
                let ex = exclude.get(chunk * TOP_K_BATCH + i).copied().unwrap_or(&[]);
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
    // A sorted buffer of the best so far: most items fail the one comparison with its
    // floor, so the scan costs about a compare per item.
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

/// Reserves room for one more `unit` of elements with a bounded doubling (at least
/// `min_units`, at most `max_units`), so that a long-lived cache never holds much more
/// capacity than a full window needs.
fn grow<T>(v: &mut Vec<T>, unit: usize, min_units: usize, max_units: usize) {
    if v.capacity() - v.len() < unit {
        let units = v.len() / unit;
        let target = (2 * units).clamp(min_units, max_units.max(units + 1));
        v.reserve_exact(target * unit - v.len());
    }
}

/// `a + x · w`, fused where the target has FMA (x86-64-v3, this crate's build target):
/// Rust never fuses `a + x * w` by itself, and without FMA `mul_add` is a slow library
/// call.
#[inline(always)]
fn madd(a: f32, x: f32, w: f32) -> f32 {
    #[cfg(target_feature = "fma")]
    {
        x.mul_add(w, a)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        a + x * w
    }
}

/// `P` outputs of a panel times `x`: `Σ_i x[i] · panel[i]`, lane by lane, in order of `i`
/// with fused multiply-adds ([`panel_mul2`] adds in the same order, so a user's scores
/// do not depend on the batch they were computed in).
#[inline(always)]
fn panel_mul(x: &[f32], panel: &[[f32; P]]) -> [f32; P] {
    let mut acc = [0.0f32; P];
    for (&xi, col) in x.iter().zip(panel) {
        for (a, &w) in acc.iter_mut().zip(col) {
            *a = madd(*a, xi, w);
        }
    }
    acc
}

/// [`panel_mul`] for two vectors at once: each panel row is loaded once and used by both,
/// and the two sets of accumulators are independent chains. One vector at a time, every
/// step waited on the previous step's addition into the same four registers: 16 µs to
/// score 3,700 items for a user, against 7.8 µs a user two at a time.
#[inline(always)]
fn panel_mul2(x: &[f32], y: &[f32], panel: &[[f32; P]]) -> ([f32; P], [f32; P]) {
    let n = x.len().min(y.len()).min(panel.len());
    let mut ax = [0.0f32; P];
    let mut ay = [0.0f32; P];
    for i in 0..n {
        let (xi, yi, c) = (x[i], y[i], &panel[i]);
        for j in 0..P {
            ax[j] = madd(ax[j], xi, c[j]);
            ay[j] = madd(ay[j], yi, c[j]);
        }
    }
    (ax, ay)
}

/// `out = Σ_t weights[t] · rows[t][off..off + out.len()]` over the rows (`stride` values
/// each) of a row-major matrix, 16 outputs at a time held in registers.
fn weighted_rows(weights: &[f32], rows: &[f32], stride: usize, off: usize, out: &mut [f32]) {
    let (chunks, rest) = out.as_chunks_mut::<16>();
    for (c, oc) in chunks.iter_mut().enumerate() {
        let start = off + c * 16;
        let mut acc = [0.0f32; 16];
        for (&w, row) in weights.iter().zip(rows.chunks_exact(stride)) {
            for (a, &v) in acc.iter_mut().zip(&row[start..start + 16]) {
                *a += w * v;
            }
        }
        *oc = acc;
    }
    let start = off + chunks.len() * 16;
    rest.fill(0.0);
    for (&w, row) in weights.iter().zip(rows.chunks_exact(stride)) {
        for (o, &v) in rest.iter_mut().zip(&row[start..]) {
            *o += w * v;
        }
    }
}

/// [`panel_mul`] over a bf16 panel, widened on the fly (one shift per value).
#[inline(always)]
fn panel_mul_bf16(x: &[f32], panel: &[[u16; P]]) -> [f32; P] {
    let mut acc = [0.0f32; P];
    for (&xi, col) in x.iter().zip(panel) {
        for (a, &w) in acc.iter_mut().zip(col) {
            *a += xi * bf16_to_f32(w);
        }
    }
    acc
}

/// Widens a panel of 16-bit values into f32.
fn widen(bits: &[[u16; P]], out: &mut [[f32; P]], f: impl Fn(u16) -> f32) {
    for (o, b) in out.iter_mut().zip(bits) {
        for (o, &b) in o.iter_mut().zip(b) {
            *o = f(b);
        }
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + super::ops::fast_exp(-x))
}

/// The lanes of an accumulator, summed. Kept out of line on purpose: inlined, LLVM's SLP
/// vectoriser reshapes the accumulation loops around this reduction into two-lane
/// shuffles, which made the loops three times slower.
#[inline(never)]
fn reduce(acc: &[f32; 16]) -> f32 {
    acc.iter().sum()
}

/// `a · b` with 16 independent accumulator lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<16>();
    let (bc, br) = b.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for (x, y) in ac.iter().zip(bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    reduce(&acc) + ar.iter().zip(br).map(|(x, y)| x * y).sum::<f32>()
}

/// `Σ a` with 16 independent accumulator lanes.
fn sum(a: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for x in ac {
        for (s, &x) in acc.iter_mut().zip(x) {
            *s += x;
        }
    }
    reduce(&acc) + ar.iter().sum::<f32>()
}

/// The largest of `a` (−∞ when empty), 16 lanes at a time.
fn max_of(a: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<16>();
    let mut acc = [f32::NEG_INFINITY; 16];
    for x in ac {
        for (m, &x) in acc.iter_mut().zip(x) {
            *m = m.max(x);
        }
    }
    ar.iter().fold(reduce_max(&acc), |m, &x| m.max(x))
}

/// Out of line for the same reason as [`reduce`].
#[inline(never)]
fn reduce_max(acc: &[f32; 16]) -> f32 {
    acc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}

/// f32 → f16 bits, rounding to nearest even (F. Giesen's `float_to_half_fast3_rtne`),
/// with f16 subnormals flushed to zero so that widening never meets f32 denormals (slow
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
    fn odd_shapes_match_candle() {
        // Widths that are not multiples of the kernels' chunks, and three heads.
        let cfg = Config {
            n_items: 37,
            dim: 24,
            layers: 1,
            heads: 3,
            max_len: 40,
            ffn_mult: 3,
            ..Config::default()
        };
        let model = random_model(&cfg, 16);
        let fast = FastModel::from_model(&model).expect("fast");
        let items = history(&mut Xoshiro256PlusPlus::seed_from_u64(17), 35, cfg.n_items);
        let mut s = fast.new_session();
        let mut logits = vec![0.0; cfg.n_items];
        for len in 1..=items.len() {
            fast.push(&mut s, items[len - 1]).expect("push");
            let h = candle_user_vec(&model, &items[..len]);
            let want = model
                .next_logits(&h)
                .expect("logits")
                .flatten_all()
                .expect("f");
            fast.score_all(s.user_vector().expect("warm"), &mut logits);
            assert_close(
                &logits,
                &want.to_vec1::<f32>().expect("v"),
                1e-4,
                &format!("logits at {len}"),
            );
        }
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
        // A batch large enough for the gemm path gives the panel kernels' logits.
        let many: Vec<f32> = vecs.iter().cycle().take(4 * vecs.len()).copied().collect();
        let mut big = vec![0.0; 4 * users.len() * n];
        fast.score_batch(&many, &mut big);
        for (u, row) in big.chunks_exact(n).enumerate() {
            assert_close(row, &want[u % users.len()], 1e-4, "gemm score_batch");
        }
        let tops = fast.top_k_batch(&many, 10, &[]);
        let ids = |t: &[(u32, f32)]| t.iter().map(|p| p.0).collect::<Vec<_>>();
        let one = fast.top_k(&vecs[2 * cfg.dim..3 * cfg.dim], 10, &[]);
        assert_eq!(
            ids(&tops[7]),
            ids(&one),
            "same items (logits differ in the last bits)"
        );
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
