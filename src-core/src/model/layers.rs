//! The encoder's layers. LayerNorm and softmax are written out of differentiable primitives
//! on purpose: candle 0.11.1's fused `layer_norm` and `softmax_last_dim` pass no gradient
//! (see DEPENDENCIES.md), which silently stops everything below them from learning.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::Config;

/// Seeded dropout masks: candle's CPU random numbers cannot be seeded, and training must
/// be deterministic for a seed.
#[derive(Debug)]
pub struct Dropout {
    p: f64,
    rng: Xoshiro256PlusPlus,
}

impl Dropout {
    pub fn new(p: f64, seed: u64) -> Self {
        Dropout {
            p,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    /// Zeroes each element with probability `p` and scales the rest by `1/(1-p)`.
    pub fn apply(&mut self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(xs.clone());
        }
        let n = xs.elem_count();
        let keep = 1.0 / (1.0 - self.p) as f32;
        // Four 16-bit draws per u64.
        let threshold = (self.p * 65536.0) as u64;
        let mut mask = Vec::with_capacity(n);
        while mask.len() < n {
            let mut r = self.rng.next_u64();
            for _ in 0..4 {
                if mask.len() == n {
                    break;
                }
                mask.push(if (r & 0xffff) < threshold { 0.0 } else { keep });
                r >>= 16;
            }
        }
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        xs * mask
    }
}

/// LayerNorm from primitives (differentiable in every input).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(dim: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?,
            eps,
        })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = xs.dtype();
        let xs = xs.to_dtype(DType::F32)?;
        let mean = xs.mean_keepdim(D::Minus1)?;
        let xc = xs.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        xn.to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension from primitives (differentiable).
pub fn softmax(xs: &Tensor) -> candle_core::Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let e = xs.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// An additive causal mask `(len, len)`: 0 where key ≤ query, a large negative elsewhere.
pub fn causal_mask(len: usize, device: &Device, dtype: DType) -> candle_core::Result<Tensor> {
    let m: Vec<f32> = (0..len)
        .flat_map(|q| (0..len).map(move |k| if k <= q { 0.0 } else { -1e4 }))
        .collect();
    Tensor::from_vec(m, (len, len), device)?.to_dtype(dtype)
}

/// Multi-head causal self-attention with a fused QKV projection.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) qkv: Linear,
    pub(crate) out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(Attention {
            qkv: candle_nn::linear(cfg.dim, 3 * cfg.dim, vb.pp("qkv"))?,
            out: candle_nn::linear(cfg.dim, cfg.dim, vb.pp("out"))?,
            heads: cfg.heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `xs`: (batch, len, dim); `mask`: (len, len) additive.
    pub fn forward(&self, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b_sz, seq_len, dim) = xs.dims3()?;
        let qkv = self
            .qkv
            .forward(xs)?
            .reshape((b_sz, seq_len, 3, self.heads, self.head_dim))?;
        let q = qkv
            .narrow(2, 0, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let k = qkv
            .narrow(2, 1, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let v = qkv
            .narrow(2, 2, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = q.matmul(&k.t()?)?;
        let att = if scores.device().is_cpu() && scores.dtype() == DType::F32 {
            scores.apply_op1(super::ops::CausalSoftmax {
                scale: scale as f32,
            })?
        } else {
            softmax(&(scores * scale)?.broadcast_add(mask)?)?
        };
        let ys = att
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b_sz, seq_len, dim))?;
        self.out.forward(&ys)
    }
}

/// The position-wise feed-forward layer (ReLU, as SASRec).
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
}

impl FeedForward {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let hidden = cfg.dim * cfg.ffn_mult;
        Ok(FeedForward {
            fc1: candle_nn::linear(cfg.dim, hidden, vb.pp("fc1"))?,
            fc2: candle_nn::linear(hidden, cfg.dim, vb.pp("fc2"))?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(xs)?.relu()?)
    }
}

/// A pre-LayerNorm transformer block.
#[derive(Debug, Clone)]
pub struct Block {
    pub(crate) ln1: LayerNorm,
    pub(crate) attn: Attention,
    pub(crate) ln2: LayerNorm,
    pub(crate) ffn: FeedForward,
}

impl Block {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(Block {
            ln1: LayerNorm::load(cfg.dim, cfg.ln_eps, vb.pp("ln1"))?,
            attn: Attention::load(vb.pp("attn"), cfg)?,
            ln2: LayerNorm::load(cfg.dim, cfg.ln_eps, vb.pp("ln2"))?,
            ffn: FeedForward::load(vb.pp("ffn"), cfg)?,
        })
    }

    pub fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        mut dropout: Option<&mut Dropout>,
    ) -> candle_core::Result<Tensor> {
        let mut h = self.attn.forward(&self.ln1.forward(xs)?, mask)?;
        if let Some(d) = dropout.as_deref_mut() {
            h = d.apply(&h)?;
        }
        let xs = (xs + h)?;
        let mut h = self.ffn.forward(&self.ln2.forward(&xs)?)?;
        if let Some(d) = dropout {
            h = d.apply(&h)?;
        }
        xs + h
    }
}
