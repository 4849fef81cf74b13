//! The attention model as a [`Scorer`]: batches of histories are encoded together and
//! scored against every item, so `attune eval --model seq:DIR` uses the same harness and
//! protocol as the baselines.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::fast::{FastModel, ScoreDtype};
use super::{Checkpoint, SeqRec};
use crate::baselines::Scorer;
use crate::data::Seq;
use crate::error::Result;

/// Histories encoded per forward pass.
const BATCH: usize = 64;

/// A model bound to a data set's item ids.
#[derive(Debug)]
pub struct SeqScorer {
    name: String,
    model: SeqRec,
    /// Data-set item id → model token (0 where the model does not know the item).
    to_token: Vec<u32>,
    /// Model item → data-set item id, for the items the data set has.
    from_model: Vec<Option<u32>>,
    /// The catalogue scored with a compact item table (the user vectors stay candle's);
    /// none: candle's f32 product.
    compact: Option<FastModel>,
}

impl SeqScorer {
    /// Binds a checkpoint to a data set whose item `i` is `item_names[i]`.
    pub fn new(name: impl Into<String>, ck: Checkpoint, item_names: &[String]) -> Self {
        Self::from_model(name, ck.model, &ck.items, item_names)
    }

    /// Binds `model`, whose item `i` is `model_items[i]`, to a data set's items.
    pub fn from_model(
        name: impl Into<String>,
        model: SeqRec,
        model_items: &[String],
        item_names: &[String],
    ) -> Self {
        let index: HashMap<&str, u32> = model_items
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as u32))
            .collect();
        let mut from_model = vec![None; model_items.len()];
        let to_token = item_names
            .iter()
            .enumerate()
            .map(|(ds, name)| match index.get(name.as_str()) {
                Some(&m) => {
                    from_model[m as usize] = Some(ds as u32);
                    m + 1
                }
                None => 0,
            })
            .collect();
        SeqScorer {
            name: name.into(),
            model,
            to_token,
            from_model,
            compact: None,
        }
    }

    /// Scores the catalogue with the item table in `dtype`, as the engine's CPU path does
    /// with `score_dtype` (f32: candle's product, as before).
    pub fn with_score_dtype(mut self, dtype: ScoreDtype) -> Result<Self> {
        self.compact = match dtype {
            ScoreDtype::F32 => None,
            _ => Some(FastModel::from_model(&self.model)?.with_score_dtype(dtype)),
        };
        Ok(self)
    }

    /// The model.
    pub fn model(&self) -> &SeqRec {
        &self.model
    }

    /// Next-item logits over the model's items, `(histories, n_model_items)`, for the last
    /// position of each history (its most recent `max_len` items).
    pub fn logits(&self, histories: &[Seq<'_>]) -> Result<Tensor> {
        let h = self.user_vectors(histories)?;
        Ok(self.model.next_logits(&h)?)
    }

    /// The user vectors `(histories, dim)`: the hidden state at each history's last item.
    pub fn user_vectors(&self, histories: &[Seq<'_>]) -> Result<Tensor> {
        let max_len = self.model.config().max_len;
        let len = histories
            .iter()
            .map(|h| h.items.len().clamp(1, max_len))
            .max()
            .unwrap_or(1);
        let mut tokens = vec![0u32; histories.len() * len];
        let mut last = Vec::with_capacity(histories.len());
        for (row, h) in histories.iter().enumerate() {
            let window = &h.items[h.items.len().saturating_sub(max_len)..];
            for (j, &item) in window.iter().enumerate() {
                tokens[row * len + j] = self.to_token.get(item as usize).copied().unwrap_or(0);
            }
            last.push((row * len + window.len().saturating_sub(1)) as u32);
        }
        let device: &Device = self.model.device();
        let tokens = Tensor::from_vec(tokens, (histories.len(), len), device)?;
        let hidden = self.model.encode(&tokens, None)?;
        let dim = self.model.config().dim;
        let flat = hidden.reshape((histories.len() * len, dim))?;
        let idx = Tensor::from_vec(last, histories.len(), device)?;
        Ok(flat.index_select(&idx, 0)?)
    }

    /// The like and purchase logits of each history's `target` (a data-set item id), given
    /// the history; `None` where the model does not know the target.
    pub fn task_logits(
        &self,
        histories: &[Seq<'_>],
        targets: &[u32],
    ) -> Result<Vec<Option<(f32, f32)>>> {
        let mut out = Vec::with_capacity(histories.len());
        for (hs, ts) in histories.chunks(BATCH).zip(targets.chunks(BATCH)) {
            let h = self.user_vectors(hs)?;
            // Unknown targets are scored as model item 0 and dropped below.
            let known: Vec<Option<u32>> = ts
                .iter()
                .map(|&t| match self.to_token.get(t as usize) {
                    Some(&tok) if tok > 0 => Some(tok - 1),
                    _ => None,
                })
                .collect();
            let items: Vec<u32> = known.iter().map(|k| k.unwrap_or(0)).collect();
            let items = Tensor::from_vec(items, ts.len(), self.model.device())?;
            let like = self.model.like_logits(&h, &items)?.to_dtype(DType::F32)?;
            let buy = self
                .model
                .purchase_logits(&h, &items)?
                .to_dtype(DType::F32)?;
            let (like, buy) = (
                like.flatten_all()?.to_vec1::<f32>()?,
                buy.flatten_all()?.to_vec1::<f32>()?,
            );
            for (j, k) in known.iter().enumerate() {
                out.push(k.map(|_| (like[j], buy[j])));
            }
        }
        Ok(out)
    }

    /// Logits over the model's items, one row per history.
    fn logit_rows(&self, histories: &[Seq<'_>]) -> Result<Vec<Vec<f32>>> {
        let Some(fast) = &self.compact else {
            return Ok(self
                .logits(histories)?
                .to_dtype(DType::F32)?
                .to_vec2::<f32>()?);
        };
        let h = self
            .user_vectors(histories)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let n = fast.config().n_items;
        let mut all = vec![0.0f32; histories.len() * n];
        fast.score_batch(&h, &mut all);
        Ok(all.chunks_exact(n).map(<[f32]>::to_vec).collect())
    }

    fn score_chunk(&self, histories: &[Seq<'_>], out: &mut [f32]) -> Result<()> {
        let logits = self.logit_rows(histories)?;
        let n = out.len() / histories.len().max(1);
        for (row, scores) in logits.iter().zip(out.chunks_mut(n)) {
            scores.fill(f32::NEG_INFINITY);
            for (m, &s) in scores_iter(row, &self.from_model) {
                scores[m as usize] = s;
            }
            // Items the model never saw rank last, but above masked ones.
            for (ds, s) in scores.iter_mut().enumerate() {
                if self.to_token[ds] == 0 {
                    *s = f32::MIN;
                }
            }
        }
        Ok(())
    }
}

fn scores_iter<'a>(
    row: &'a [f32],
    from_model: &'a [Option<u32>],
) -> impl Iterator<Item = (u32, &'a f32)> + 'a {
    row.iter()
        .zip(from_model)
        .filter_map(|(s, ds)| ds.map(|d| (d, s)))
}

impl Scorer for SeqScorer {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, history: Seq<'_>, out: &mut [f32]) {
        if let Err(e) = self.score_batch(&[history], out) {
            tracing::error!(error = %e, "scoring failed");
            out.fill(0.0);
        }
    }

    fn score_batch(&self, histories: &[Seq<'_>], out: &mut [f32]) -> Result<()> {
        let n = out.len() / histories.len().max(1);
        for (hs, o) in histories.chunks(BATCH).zip(out.chunks_mut(BATCH * n)) {
            self.score_chunk(hs, o)?;
        }
        Ok(())
    }
}
