//! The SASRec-style multi-task encoder.

use self::rand_distr_lite::{normal, uniform};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::layers::{causal_mask, Block, Dropout, LayerNorm};
use super::Config;

/// The encoder and its heads.
#[derive(Debug, Clone)]
pub struct SeqRec {
    pub(crate) item_emb: Tensor,
    pub(crate) pos_emb: Tensor,
    pub(crate) blocks: Vec<Block>,
    pub(crate) ln_f: LayerNorm,
    pub(crate) like: Linear,
    pub(crate) like_offset: Tensor,
    pub(crate) purchase: Linear,
    pub(crate) purchase_offset: Tensor,
    cfg: Config,
}

impl SeqRec {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let d = cfg.dim;
        let blocks = (0..cfg.layers)
            .map(|i| Block::load(vb.pp("blocks").pp(i), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let heads = vb.pp("heads");
        Ok(SeqRec {
            item_emb: vb.pp("item_emb").get_with_hints(
                (cfg.n_items + 1, d),
                "weight",
                candle_nn::Init::Const(0.0),
            )?,
            pos_emb: vb.pp("pos_emb").get_with_hints(
                (cfg.max_len, d),
                "weight",
                candle_nn::Init::Const(0.0),
            )?,
            blocks,
            ln_f: LayerNorm::load(d, cfg.ln_eps, vb.pp("ln_f"))?,
            like: candle_nn::linear(d, d, heads.pp("like"))?,
            like_offset: heads.pp("like").get_with_hints(
                1,
                "offset",
                candle_nn::Init::Const(0.0),
            )?,
            purchase: candle_nn::linear(d, d, heads.pp("purchase"))?,
            purchase_offset: heads.pp("purchase").get_with_hints(
                1,
                "offset",
                candle_nn::Init::Const(0.0),
            )?,
            cfg: cfg.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.item_emb.device()
    }

    /// Hidden states `(batch, len, dim)` for tokens `(batch, len)` (u32, 0 = padding, item
    /// `i` = token `i + 1`), left-aligned. With `dropout`, the training-mode forward pass.
    pub fn encode(
        &self,
        tokens: &Tensor,
        mut dropout: Option<&mut Dropout>,
    ) -> candle_core::Result<Tensor> {
        let (b_sz, seq_len) = tokens.dims2()?;
        if seq_len > self.cfg.max_len {
            candle_core::bail!(
                "sequence of {seq_len} is longer than max_len {}",
                self.cfg.max_len
            );
        }
        let dim = self.cfg.dim;
        let emb = self
            .item_emb
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b_sz, seq_len, dim))?;
        let pos = self.pos_emb.narrow(0, 0, seq_len)?;
        let mut xs = (emb * (dim as f64).sqrt())?.broadcast_add(&pos)?;
        if let Some(d) = dropout.as_deref_mut() {
            xs = d.apply(&xs)?;
        }
        let mask = causal_mask(seq_len, xs.device(), xs.dtype())?;
        for block in &self.blocks {
            xs = block.forward(&xs, &mask, dropout.as_deref_mut())?;
        }
        self.ln_f.forward(&xs)
    }

    /// The output item table `(n_items, dim)` (the input embeddings without padding).
    pub fn item_table(&self) -> candle_core::Result<Tensor> {
        self.item_emb.narrow(0, 1, self.cfg.n_items)
    }

    /// Next-item logits `(n, n_items)` for hidden states `(n, dim)`.
    pub fn next_logits(&self, h: &Tensor) -> candle_core::Result<Tensor> {
        h.matmul(&self.item_table()?.t()?)
    }

    /// Like logits of the given items `(n,)` (dense ids) for hidden states `(n, dim)`.
    pub fn like_logits(&self, h: &Tensor, items: &Tensor) -> candle_core::Result<Tensor> {
        pair_logits(
            &self.like,
            &self.like_offset,
            h,
            &self.item_table()?.index_select(items, 0)?,
        )
    }

    /// Purchase logits of the given items `(n,)` for hidden states `(n, dim)`.
    pub fn purchase_logits(&self, h: &Tensor, items: &Tensor) -> candle_core::Result<Tensor> {
        pair_logits(
            &self.purchase,
            &self.purchase_offset,
            h,
            &self.item_table()?.index_select(items, 0)?,
        )
    }

    /// Like and purchase logits of every item `(n, n_items)` each, for hidden states `(n, dim)`.
    pub fn task_logits_all(&self, h: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let table_t = self.item_table()?.t()?;
        let like = self
            .like
            .forward(h)?
            .matmul(&table_t)?
            .broadcast_add(&self.like_offset)?;
        let buy = self
            .purchase
            .forward(h)?
            .matmul(&table_t)?
            .broadcast_add(&self.purchase_offset)?;
        Ok((like, buy))
    }
}

fn pair_logits(
    head: &Linear,
    offset: &Tensor,
    h: &Tensor,
    e: &Tensor,
) -> candle_core::Result<Tensor> {
    (head.forward(h)? * e)?
        .sum(D::Minus1)?
        .broadcast_add(offset)
}

/// Sets every variable of a fresh model from a seeded generator, so that training is
/// deterministic for a seed (candle's own CPU initialisers cannot be seeded).
pub fn init_weights(varmap: &VarMap, cfg: &Config, seed: u64) -> candle_core::Result<()> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("varmap lock".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let n = shape.elem_count();
        let values: Vec<f32> = if name.ends_with("bias") || name.ends_with("offset") {
            vec![0.0; n]
        } else if name.contains("ln") {
            vec![1.0; n]
        } else if name.ends_with("emb.weight") {
            let std = 1.0 / (cfg.dim as f32).sqrt();
            let mut v = normal(&mut rng, n, std);
            if name.starts_with("item_emb") {
                v[..cfg.dim].iter_mut().for_each(|x| *x = 0.0); // padding row
            }
            v
        } else {
            let fan_in = *shape.dims().last().unwrap_or(&1) as f32;
            uniform(&mut rng, n, 1.0 / fan_in.sqrt())
        };
        var.set(&Tensor::from_vec(values, shape, var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Minimal seeded samplers (rand 0.8's distributions crate is not a dependency).
mod rand_distr_lite {
    use rand::Rng;

    pub fn uniform(rng: &mut impl Rng, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
    }

    /// Box–Muller normal samples.
    pub fn normal(rng: &mut impl Rng, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
                let u2: f32 = rng.gen::<f32>();
                std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect()
    }
}

/// A fresh, seeded model on `device`, with its variables.
pub fn fresh(cfg: &Config, device: &Device, seed: u64) -> crate::error::Result<(VarMap, SeqRec)> {
    cfg.validate()?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let model = SeqRec::load(vb, cfg)?;
    init_weights(&varmap, cfg, seed)?;
    Ok((varmap, model))
}
