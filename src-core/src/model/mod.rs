//! The attention model: a SASRec-style causal self-attention encoder over a user's item
//! sequence, with the item embeddings tied to the output and multi-task heads (next item,
//! like, purchase), in candle.
//!
//! Layout follows candle-transformers: [`Config`] is plain serde data saved as
//! `config.json`, each layer has `load(vb, &cfg)`, and safetensors keys mirror the struct
//! tree (`blocks.0.attn.qkv.weight`, ...). Item `i` of the catalogue is token `i + 1`;
//! token 0 is padding. Sequences are left-aligned (position 0 is the window's first item)
//! and right-padded, so appending an item never changes the keys and values of the items
//! before it: that is what makes the incremental session state exact.

mod layers;
mod loss;
pub(crate) mod ops;
mod seqrec;

pub mod checkpoint;
pub mod fast;
pub mod scorer;
pub mod train;

pub use checkpoint::Checkpoint;
pub use fast::{FastModel, SessionState};
pub use seqrec::fresh;
pub use seqrec::SeqRec;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Loss weights of the tasks; a task absent from the data is masked out regardless.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskWeights {
    /// Next-item prediction (softmax over the catalogue).
    pub next: f64,
    /// Like: a rating at or above `like_threshold` (binary, on the next item).
    pub like: f64,
    /// Purchase: the next interaction is a purchase (binary).
    pub purchase: f64,
}

impl Default for TaskWeights {
    fn default() -> Self {
        TaskWeights {
            next: 1.0,
            like: 0.1,
            purchase: 0.1,
        }
    }
}

/// Model hyper-parameters, saved as `config.json` beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Catalogue size (items; the embedding table has one more row, for padding).
    pub n_items: usize,
    /// Model width d.
    pub dim: usize,
    /// Number of self-attention blocks.
    pub layers: usize,
    /// Attention heads; `dim` must be divisible by it.
    pub heads: usize,
    /// Longest sequence window the model reads (learned positions 0..max_len).
    pub max_len: usize,
    /// Dropout probability in training (embeddings, attention weights, residual branches).
    pub dropout: f64,
    /// Hidden width of the feed-forward layers, as a multiple of `dim`.
    pub ffn_mult: usize,
    /// LayerNorm epsilon.
    pub ln_eps: f64,
    /// Loss weights per task.
    pub tasks: TaskWeights,
    /// A rating at or above this counts as a like.
    pub like_threshold: f32,
    /// 0: full softmax over the catalogue. N > 0: sampled softmax with N negatives shared
    /// by the batch (for catalogues too large for the full softmax).
    pub negatives: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            n_items: 0,
            dim: 64,
            layers: 2,
            heads: 2,
            max_len: 200,
            dropout: 0.2,
            ffn_mult: 4,
            ln_eps: 1e-5,
            tasks: TaskWeights::default(),
            like_threshold: 4.0,
            negatives: 0,
        }
    }
}

impl Config {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.n_items == 0 {
            return Err(Error::config("n_items", "the catalogue is empty"));
        }
        if self.dim == 0 || self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return Err(Error::config(
                "dim",
                format!(
                    "must be a positive multiple of heads ({}), got {}",
                    self.heads, self.dim
                ),
            ));
        }
        if self.layers == 0 || self.layers > 16 {
            return Err(Error::config(
                "layers",
                format!("must be in 1..=16, got {}", self.layers),
            ));
        }
        if self.max_len < 2 || self.max_len > 4096 {
            return Err(Error::config(
                "max_len",
                format!("must be in 2..=4096, got {}", self.max_len),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        if self.ffn_mult == 0 || self.ffn_mult > 16 {
            return Err(Error::config(
                "ffn_mult",
                format!("must be in 1..=16, got {}", self.ffn_mult),
            ));
        }
        if self.ln_eps <= 0.0 || self.ln_eps >= 1.0 || self.ln_eps.is_nan() {
            return Err(Error::config(
                "ln_eps",
                format!("must be in (0, 1), got {}", self.ln_eps),
            ));
        }
        let t = self.tasks;
        for (name, w) in [
            ("tasks.next", t.next),
            ("tasks.like", t.like),
            ("tasks.purchase", t.purchase),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::config(
                    name,
                    format!("must be a non-negative number, got {w}"),
                ));
            }
        }
        if t.next + t.like + t.purchase == 0.0 {
            return Err(Error::config(
                "tasks",
                "at least one task weight must be positive",
            ));
        }
        if self.negatives > 0 && self.negatives >= self.n_items {
            return Err(Error::config(
                "negatives",
                format!(
                    "must be below the catalogue size {} (or 0 for the full softmax)",
                    self.n_items
                ),
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
}

/// Maps `cpu` / `cuda` / `auto` to a candle device; `cuda` needs the `cuda` feature and a
/// GPU, `auto` takes the GPU when one opens and the CPU otherwise (a CUDA build on a
/// machine with the driver's library but no device, say).
pub fn device(name: &str) -> Result<candle_core::Device> {
    match name {
        "cpu" => Ok(candle_core::Device::Cpu),
        "cuda" => {
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::config(
                    "device",
                    "cuda was asked for, but this build has no CUDA support (build with --features cuda) or no GPU is present",
                ));
            }
            candle_core::Device::new_cuda(0).map_err(|e| {
                Error::config(
                    "device",
                    format!("cuda was asked for, but no GPU opened: {e}"),
                )
            })
        }
        "auto" => {
            if !candle_core::utils::cuda_is_available() {
                return Ok(candle_core::Device::Cpu);
            }
            match candle_core::Device::new_cuda(0) {
                Ok(d) => Ok(d),
                Err(e) => {
                    tracing::info!(error = %e, "no GPU opened; the CPU runs the model");
                    Ok(candle_core::Device::Cpu)
                }
            }
        }
        other => Err(Error::config(
            "device",
            format!("unknown device `{other}`; expected cpu, cuda or auto"),
        )),
    }
}

#[cfg(test)]
mod tests;

/// The fast model's former path.
#[deprecated(note = "renamed `attune::model::fast` (it collided with `engine::session`)")]
pub mod session {
    pub use super::fast::*;
}
