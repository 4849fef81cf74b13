//! Background fine-tuning: a few AdamW steps of next-item loss on recent sequences, run
//! by the engine's learner before a hot swap.

use candle_core::{DType, Device};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::epoch::batch_loss;
use super::optim::AdamW;
use super::windows::{make_batch, TrainWindow};
use crate::error::{Error, Result};
use crate::model::layers::Dropout;
use crate::model::seqrec::SeqRec;

/// Settings of a background fine-tuning pass (see [`fine_tune`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FineTuneConfig {
    /// Optimiser steps per pass.
    pub steps: usize,
    /// Windows per step.
    pub batch: usize,
    /// AdamW learning rate (small: the model is already trained).
    pub lr: f64,
    /// Seed of the batch sampling and dropout.
    pub seed: u64,
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        FineTuneConfig {
            steps: 20,
            batch: 32,
            lr: 2e-4,
            seed: 7,
        }
    }
}

/// Continues training `model` (whose variables are `varmap`) on recent sequences of dense
/// model item ids, next-item loss only, for `cfg.steps` AdamW steps; returns the mean loss.
/// The engine's learner runs this on a background thread and hot-swaps the result in.
pub fn fine_tune(
    varmap: &VarMap,
    model: &SeqRec,
    sequences: &[Vec<u32>],
    cfg: &FineTuneConfig,
) -> Result<f64> {
    let mcfg = model.config().clone();
    let data: Vec<TrainWindow> = sequences
        .iter()
        .filter(|s| s.len() >= 2)
        .map(|s| {
            let start = (s.len() - 1).saturating_sub(mcfg.max_len);
            TrainWindow {
                tokens: s[start..s.len() - 1].iter().map(|i| i + 1).collect(),
                targets: s[start + 1..].to_vec(),
                like: vec![None; s.len() - 1 - start],
                purchase: vec![None; s.len() - 1 - start],
            }
        })
        .collect();
    if data.is_empty() || cfg.steps == 0 {
        return Ok(0.0);
    }
    if let Some(bad) = data
        .iter()
        .flat_map(|w| w.targets.iter())
        .find(|&&t| t as usize >= mcfg.n_items)
    {
        return Err(Error::config(
            "fine_tune",
            format!("item {bad} is outside the model's {} items", mcfg.n_items),
        ));
    }
    let device = Device::Cpu;
    let mut opt = AdamW::new(varmap, cfg.lr, 0.0)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
    let mut dropout = Dropout::new(mcfg.dropout, rng.gen());
    let mut neg_rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x9e37);
    let mut total = 0.0;
    for _ in 0..cfg.steps {
        let ws: Vec<&TrainWindow> = (0..cfg.batch.min(data.len()))
            .map(|_| &data[rng.gen_range(0..data.len())])
            .collect();
        let b = make_batch(&ws, &device)?;
        let loss = batch_loss(model, &b, &mut dropout, &mut neg_rng)?;
        let grads = loss.backward()?;
        opt.step(&grads)?;
        total += f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
    }
    Ok(total / cfg.steps as f64)
}
