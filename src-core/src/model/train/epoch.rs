//! One training epoch: seeded shuffling and batching, the weighted multi-task loss (full
//! or sampled softmax), backward passes and AdamW steps.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::config::TrainConfig;
use super::optim::AdamW;
use super::report::TrainEvent;
use super::windows::{make_batch, Batch, TrainWindow};
use crate::error::{Error, Result};
use crate::model::layers::Dropout;
use crate::model::loss::{bce_with_logits, cross_entropy, softmax_cross_entropy};
use crate::model::seqrec::SeqRec;

fn epoch_rng(seed: u64, epoch: usize, stream: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// The weighted multi-task loss of one batch.
pub(super) fn batch_loss(
    model: &SeqRec,
    b: &Batch,
    dropout: &mut Dropout,
    neg_rng: &mut Xoshiro256PlusPlus,
) -> Result<Tensor> {
    let cfg = model.config();
    let hidden = model.encode(&b.tokens, Some(dropout))?;
    let (bs, len, dim) = hidden.dims3()?;
    let hs = hidden
        .reshape((bs * len, dim))?
        .index_select(&b.positions, 0)?;
    let mut loss = if cfg.negatives == 0 {
        (softmax_cross_entropy(&hs, &model.item_table()?, &b.targets)? * cfg.tasks.next)?
    } else {
        (sampled_softmax(model, &hs, &b.targets, b.n_positions, neg_rng)? * cfg.tasks.next)?
    };
    if let (Some((idx, y)), true) = (&b.like, cfg.tasks.like > 0.0) {
        let h = hs.index_select(idx, 0)?;
        let items = b.targets.index_select(idx, 0)?;
        loss = (loss + (bce_with_logits(&model.like_logits(&h, &items)?, y)? * cfg.tasks.like)?)?;
    }
    if let (Some((idx, y)), true) = (&b.purchase, cfg.tasks.purchase > 0.0) {
        let h = hs.index_select(idx, 0)?;
        let items = b.targets.index_select(idx, 0)?;
        loss = (loss
            + (bce_with_logits(&model.purchase_logits(&h, &items)?, y)? * cfg.tasks.purchase)?)?;
    }
    Ok(loss)
}

/// Sampled softmax: the target against `negatives` items drawn uniformly and shared by
/// the batch; a negative that happens to be the target is masked out.
fn sampled_softmax(
    model: &SeqRec,
    hs: &Tensor,
    targets: &Tensor,
    n: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Tensor> {
    let cfg = model.config();
    let negs: Vec<u32> = (0..cfg.negatives)
        .map(|_| rng.gen_range(0..cfg.n_items as u32))
        .collect();
    let target_vec = targets.to_vec1::<u32>()?;
    let mask: Vec<f32> = target_vec
        .iter()
        .flat_map(|t| negs.iter().map(move |n| if n == t { -1e4 } else { 0.0 }))
        .collect();
    let device = hs.device();
    let table = model.item_table()?;
    let pos = (hs * table.index_select(targets, 0)?)?.sum_keepdim(1)?;
    let neg_ids = Tensor::from_vec(negs, cfg.negatives, device)?;
    let neg = hs
        .matmul(&table.index_select(&neg_ids, 0)?.t()?)?
        .broadcast_add(&Tensor::from_vec(mask, (n, cfg.negatives), device)?)?;
    let logits = Tensor::cat(&[pos, neg], 1)?.contiguous()?;
    let zeros = Tensor::zeros(n, DType::U32, device)?;
    Ok(cross_entropy(&logits, &zeros)?)
}

/// One epoch over `data`: shuffled (seeded by `(seed, epoch)`), batched, one AdamW step
/// per batch. Returns the mean batch loss.
pub(super) fn train_epoch(
    model: &SeqRec,
    opt: &mut AdamW,
    data: &[TrainWindow],
    cfg: &TrainConfig,
    epoch: usize,
    device: &Device,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<f64> {
    let mut order: Vec<&TrainWindow> = data.iter().collect();
    let mut shuffle = epoch_rng(cfg.seed, epoch, 1);
    order.shuffle(&mut shuffle);
    // Sort within groups of 32 batches by length, to cut padding.
    for group in order.chunks_mut(cfg.batch * 32) {
        group.sort_by_key(|w| std::cmp::Reverse(w.tokens.len()));
    }
    let mut batches: Vec<&[&TrainWindow]> = order.chunks(cfg.batch).collect();
    batches.shuffle(&mut shuffle);
    let mut dropout = Dropout::new(cfg.model.dropout, epoch_rng(cfg.seed, epoch, 2).gen());
    let mut neg_rng = epoch_rng(cfg.seed, epoch, 3);
    let (mut loss_sum, mut loss_n) = (0.0, 0usize);
    let mut phases = [0f64; 3];
    for (i, ws) in batches.iter().enumerate() {
        let t0 = Instant::now();
        let b = make_batch(ws, device)?;
        let loss = batch_loss(model, &b, &mut dropout, &mut neg_rng)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.lr = cfg.lr_at((epoch - 1) as f64 + i as f64 / batches.len() as f64);
        opt.step(&grads)?;
        let t3 = Instant::now();
        phases[0] += (t1 - t0).as_secs_f64();
        phases[1] += (t2 - t1).as_secs_f64();
        phases[2] += (t3 - t2).as_secs_f64();
        let l = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !l.is_finite() {
            return Err(Error::config(
                "lr",
                format!("the loss diverged to {l} in epoch {epoch}; lower --lr"),
            ));
        }
        loss_sum += l;
        loss_n += 1;
        on_event(TrainEvent::Batch {
            epoch,
            done: i + 1,
            total: batches.len(),
            loss: loss_sum / loss_n as f64,
        });
    }
    tracing::debug!(
        epoch,
        forward = phases[0],
        backward = phases[1],
        optimizer = phases[2],
        "epoch phases (s)"
    );
    Ok(loss_sum / loss_n.max(1) as f64)
}
