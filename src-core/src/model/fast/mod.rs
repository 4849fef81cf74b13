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
//! The hot loops are written for LLVM's vectoriser (no `unsafe`, so no runtime dispatch; the
//! workspace builds for x86-64-v3, `.cargo/config.toml`): weight matrices, the item table and the cached keys
//! are stored as *panels* of 32 rows laid out column by column, so that a matrix-vector
//! product accumulates 32 outputs at once from broadcasts of the input, with no horizontal
//! sums. Batches of users reuse each panel from L1, except f32 batches of
//! `GEMM_MIN_BATCH` users or more when gemm is on, which go to candle's gemm
//! (runtime-dispatched AVX-512 / FMA). A wider target (`-C target-cpu=native`) widens every
//! one of the plain loops.
//!
//! Files: this one holds the model and its encoder (one token's forward pass against the
//! caches); `state` the per-user state and its snapshot form; `score` catalogue scoring,
//! the task heads and top-k; `kernels` the panel layout and the vectorisable loops;
//! `half` the compact encodings of the item table (f16, bf16, int8); `hnsw` the graph index
//! the engine takes a large catalogue's candidates from ([`FastModel::with_index`]); `ivf`
//! an inverted-file index, the alternative it was measured against.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Storage, Tensor};
use serde::{Deserialize, Serialize};

use super::ops::fast_exp;
use super::{Config, SeqRec};
use crate::error::{Error, Result};

mod half;
mod hnsw;
mod ivf;
mod kernels;
mod score;
mod state;
#[cfg(test)]
mod tests;

pub use half::quantise_i8;
use half::*;
pub use hnsw::{Found, Hnsw, HnswConfig};
pub use ivf::{IvfConfig, IvfIndex};
use kernels::*;
pub use score::top_k_of;
pub use state::SessionState;
use state::{KvCache, Scratch};

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
/// in f32. A compact table replaces the f32 panels (the f32 rows stay, for candidates and
/// the task heads): see [`FastModel::scoring_bytes_per_item`].
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
    /// 8-bit integers with one f32 scale per item (symmetric: the row's largest magnitude
    /// maps to 127): a quarter of the memory; scores accumulate in f32.
    Int8,
}

impl ScoreDtype {
    /// Every precision, in the order the docs list them.
    pub const ALL: [ScoreDtype; 4] = [
        ScoreDtype::F32,
        ScoreDtype::F16,
        ScoreDtype::BF16,
        ScoreDtype::Int8,
    ];

    /// The name flags, TOML and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreDtype::F32 => "f32",
            ScoreDtype::F16 => "f16",
            ScoreDtype::BF16 => "bf16",
            ScoreDtype::Int8 => "int8",
        }
    }
}

impl fmt::Display for ScoreDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ScoreDtype {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<ScoreDtype, String> {
        ScoreDtype::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown score dtype {s:?} (expected f32, f16, bf16 or int8)"))
    }
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

/// The item table in fewer bits than f32, as panels.
#[derive(Clone)]
enum CompactTable {
    /// f16 or bf16 bits.
    Half {
        dtype: ScoreDtype,
        bits: Panels<u16>,
    },
    /// Quantised rows and one scale per item (zero past the last item).
    Int8 { q: Panels<i8>, scale: Vec<f32> },
}

impl CompactTable {
    fn dtype(&self) -> ScoreDtype {
        match self {
            CompactTable::Half { dtype, .. } => *dtype,
            CompactTable::Int8 { .. } => ScoreDtype::Int8,
        }
    }
}

/// A plain-Rust f32 copy of a [`SeqRec`] for serving on the CPU: incremental sessions
/// ([`FastModel::push`]) and scoring against the catalogue. Read-only once built, so one
/// instance serves every thread; cloning copies the weights.
///
/// ```
/// use attune::model::{Checkpoint, FastModel};
/// use candle_core::{DType, Device};
///
/// # fn main() -> attune::Result<()> {
/// let ck = Checkpoint::load("../models/synthetic-default", &Device::Cpu, DType::F32)?;
/// let fast = FastModel::from_model(&ck.model)?;
/// // A session: the history encoded once, then one step a click.
/// let mut session = fast.encode(&[3, 14, 15])?;
/// fast.push(&mut session, 92)?;
/// // Next-item scores for every item of the catalogue.
/// let mut scores = vec![0.0; fast.n_items()];
/// fast.score_all(session.user_vector().expect("a non-empty history"), &mut scores);
/// assert!(scores.iter().all(|s| s.is_finite()));
/// # Ok(())
/// # }
/// ```
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
    /// The output table (item rows of `item_emb`) as panels, for catalogue scoring in f32
    /// (empty while a compact table scores).
    table: Panels<f32>,
    /// The output table as a `(dim, n_items)` CPU tensor (a transposed view), for gemm;
    /// only while gemm is on and the table is f32.
    table_t: Option<Tensor>,
    /// `(max_len, dim)` row-major.
    pos_emb: Vec<f32>,
    blocks: Vec<FastBlock>,
    ln_f: Norm,
    like: Dense,
    like_offset: f32,
    purchase: Dense,
    purchase_offset: f32,
    compact: Option<CompactTable>,
    /// Score batches of `GEMM_MIN_BATCH` or more through candle's multi-threaded gemm.
    gemm: bool,
    /// A graph index over the item rows, and the depth it is searched to.
    index: Option<(std::sync::Arc<Hnsw>, usize)>,
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

fn candle_err(msg: String) -> Error {
    Error::Candle(candle_core::Error::Msg(msg))
}

/// The `(n, d)` row-major item rows as a `(d, n)` CPU tensor (a transposed view), for gemm.
fn gemm_tensor(rows: &[f32], n: usize, d: usize) -> candle_core::Result<Tensor> {
    Tensor::from_slice(rows, (n, d), &Device::Cpu)?.t()
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
            table_t: Some(gemm_tensor(&item_emb[d..], cfg.n_items, d)?),
            item_emb,
            pos_emb: host_vec(&model.pos_emb, &[cfg.max_len, d], "pos_emb")?,
            blocks,
            ln_f: Norm::from_candle(&model.ln_f, d, cfg.ln_eps, "ln_f")?,
            like: Dense::from_candle(&model.like, d, d, "heads.like")?,
            like_offset: scalar(&model.like_offset, "heads.like.offset")?,
            purchase: Dense::from_candle(&model.purchase, d, d, "heads.purchase")?,
            purchase_offset: scalar(&model.purchase_offset, "heads.purchase.offset")?,
            compact: None,
            gemm: true,
            index: None,
            cfg,
        })
    }

    /// The same model scoring batches on the calling thread only (`false`), with the
    /// panel kernels, instead of through candle's gemm and its thread pool (`true`, the
    /// default). A server with dedicated compute threads wants the former: the pool's
    /// threads would compete with every other thread for the cores.
    pub fn with_gemm(mut self, gemm: bool) -> FastModel {
        self.gemm = gemm;
        self.table_t = if gemm && self.compact.is_none() {
            self.table_t.take().or_else(|| self.gemm_table())
        } else {
            None
        };
        self
    }

    /// The f32 item table as gemm's transposed tensor, or none (said in the log) when
    /// candle cannot make one.
    fn gemm_table(&self) -> Option<Tensor> {
        gemm_tensor(self.item_table(), self.cfg.n_items, self.cfg.dim)
            .map_err(
                |e| tracing::warn!(error = %e, "no gemm table; scoring with the panel kernels"),
            )
            .ok()
    }

    /// The same model scoring the catalogue with an item table in `dtype` (see
    /// [`ScoreDtype`]); sessions stay valid across the switch. A compact table replaces
    /// the f32 panels (and gemm's copy).
    pub fn with_score_dtype(mut self, dtype: ScoreDtype) -> FastModel {
        let (n, d) = (self.cfg.n_items, self.cfg.dim);
        let rows = &self.item_emb[d..];
        self.compact = match dtype {
            ScoreDtype::F32 => None,
            ScoreDtype::F16 => Some(CompactTable::Half {
                dtype,
                bits: Panels::from_rows(rows, n, d, f32_to_f16),
            }),
            ScoreDtype::BF16 => Some(CompactTable::Half {
                dtype,
                bits: Panels::from_rows(rows, n, d, f32_to_bf16),
            }),
            ScoreDtype::Int8 => {
                let mut scale = vec![0.0f32; n.div_ceil(P) * P];
                let mut q = vec![0i8; n * d];
                for ((row, qrow), s) in rows
                    .chunks_exact(d)
                    .zip(q.chunks_exact_mut(d))
                    .zip(scale.iter_mut())
                {
                    *s = quantise_i8(row, qrow);
                }
                Some(CompactTable::Int8 {
                    q: Panels::from_rows(&q, n, d, |v| v),
                    scale,
                })
            }
        };
        if self.compact.is_some() {
            self.table = Panels {
                data: Vec::new(),
                cols: d,
            };
            self.table_t = None;
        } else {
            if self.table.data.is_empty() {
                self.table = Panels::from_rows(rows, n, d, |v| v);
            }
            if self.gemm && self.table_t.is_none() {
                self.table_t = self.gemm_table();
            }
        }
        self
    }

    /// The same model with a graph index ([`Hnsw`]) over its item rows, built here (in
    /// parallel on rayon's pool: about three minutes for a million items on two cores) and
    /// searched `ef` deep by [`FastModel::ann_top_k`]; sessions stay valid. Catalogue
    /// scoring ([`FastModel::score_batch`], [`FastModel::top_k`]) stays exact.
    pub fn with_index(mut self, cfg: &HnswConfig, ef: usize) -> FastModel {
        let (n, d) = (self.cfg.n_items, self.cfg.dim);
        let graph = Hnsw::build(&self.item_emb[d..], n, d, cfg);
        self.index = Some((std::sync::Arc::new(graph), ef.max(1)));
        self
    }

    /// The graph index and its search depth, when [`FastModel::with_index`] built one.
    pub fn index(&self) -> Option<(&Hnsw, usize)> {
        self.index.as_ref().map(|(g, ef)| (&**g, *ef))
    }

    /// The `k` items of highest logit that `keep` admits (model indices), from the graph
    /// index, best first; none without an index. Approximate: the recall against
    /// [`FastModel::top_k`] rises with the search depth (docs/benchmarks.md).
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values.
    pub fn ann_top_k(
        &self,
        user_vec: &[f32],
        k: usize,
        keep: impl Fn(u32) -> bool,
    ) -> Option<Found> {
        self.check_user_vec(user_vec);
        let (graph, ef) = self.index.as_ref()?;
        Some(graph.search(self.item_table(), user_vec, k, *ef, keep))
    }

    /// Precision of the item table used for catalogue scoring.
    pub fn score_dtype(&self) -> ScoreDtype {
        self.compact
            .as_ref()
            .map_or(ScoreDtype::F32, CompactTable::dtype)
    }

    /// Bytes per item of the table that catalogue scoring reads, at [`Self::score_dtype`]:
    /// `4·dim` (f32), `2·dim` (f16, bf16), `dim + 4` (int8 and its scale). The f32 rows
    /// kept for candidates and the task heads (`4·dim`) come on top, and so does gemm's
    /// f32 copy when it is on.
    pub fn scoring_bytes_per_item(&self) -> usize {
        let d = self.cfg.dim;
        match self.score_dtype() {
            ScoreDtype::F32 => 4 * d,
            ScoreDtype::F16 | ScoreDtype::BF16 => 2 * d,
            ScoreDtype::Int8 => d + 4,
        }
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

    /// The part of a history the model reads: its most recent `max_len` items.
    pub fn window<'a>(&self, items: &'a [u32]) -> &'a [u32] {
        &items[items.len().saturating_sub(self.cfg.max_len)..]
    }

    /// The state of a history: a full encode of its most recent `max_len` items. For a
    /// history of at most `max_len` items this is exactly (bit for bit) the state that
    /// pushing them one by one onto [`FastModel::new_session`] gives; a longer history
    /// keeps a full window here, whereas pushing would have rebased on the way.
    pub fn encode(&self, items: &[u32]) -> Result<SessionState> {
        let window = self.window(items);
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
        let window = self.window(items);
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
}
