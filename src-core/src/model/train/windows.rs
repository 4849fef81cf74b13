//! Training windows cut from each user's history before the holdout target, and their
//! batching into tensors.

use candle_core::{Device, Tensor};

use crate::data::Dataset;
use crate::error::Result;
use crate::eval::Holdout;
use crate::event::EventKind;
use crate::model::Config;

/// One training window: inputs and, per position, the next item and task labels.
#[derive(Debug, Clone)]
pub(super) struct TrainWindow {
    pub(super) tokens: Vec<u32>,
    pub(super) targets: Vec<u32>,
    pub(super) like: Vec<Option<f32>>,
    pub(super) purchase: Vec<Option<f32>>,
}

/// Builds the windows from each kept user's sequence before the holdout's target: the
/// most recent `max_len` positions and, with a `stride` > 0, earlier windows each ending
/// `stride` positions before the previous one, until the history's start is covered.
pub(super) fn windows(
    dataset: &Dataset,
    holdout: &Holdout<'_>,
    cfg: &Config,
    stride: usize,
    purchase_task: bool,
) -> Vec<TrainWindow> {
    let mut out = Vec::new();
    for case in holdout.cases() {
        let h = &dataset.users[case.user];
        let n = case.pos; // the prefix before the target
        if n < 2 {
            continue;
        }
        // Inputs are positions start..end, each predicting the next item.
        let mut end = n - 1;
        loop {
            let start = end.saturating_sub(cfg.max_len);
            let mut w = TrainWindow {
                tokens: Vec::with_capacity(end - start),
                targets: Vec::with_capacity(end - start),
                like: Vec::new(),
                purchase: Vec::new(),
            };
            for j in start..end {
                w.tokens.push(h.items[j] + 1);
                let t = j + 1;
                w.targets.push(h.items[t]);
                w.like.push(
                    (h.kinds[t] == EventKind::Rating)
                        .then(|| f32::from(u8::from(h.values[t] >= cfg.like_threshold))),
                );
                w.purchase.push(
                    purchase_task.then(|| f32::from(u8::from(h.kinds[t] == EventKind::Purchase))),
                );
            }
            out.push(w);
            if stride == 0 || start == 0 || end <= stride {
                break;
            }
            end -= stride;
        }
    }
    out
}

/// Tensors of one batch.
pub(super) struct Batch {
    pub(super) tokens: Tensor,
    pub(super) positions: Tensor,
    pub(super) targets: Tensor,
    pub(super) like: Option<(Tensor, Tensor)>,
    pub(super) purchase: Option<(Tensor, Tensor)>,
    pub(super) n_positions: usize,
}

pub(super) fn make_batch(ws: &[&TrainWindow], device: &Device) -> Result<Batch> {
    let len = ws.iter().map(|w| w.tokens.len()).max().unwrap_or(1);
    let mut tokens = vec![0u32; ws.len() * len];
    let (mut positions, mut targets) = (Vec::new(), Vec::new());
    let (mut like_idx, mut like_y, mut buy_idx, mut buy_y) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, w) in ws.iter().enumerate() {
        for (j, &tok) in w.tokens.iter().enumerate() {
            tokens[row * len + j] = tok;
            let k = positions.len() as u32;
            positions.push((row * len + j) as u32);
            targets.push(w.targets[j]);
            if let Some(y) = w.like[j] {
                like_idx.push(k);
                like_y.push(y);
            }
            if let Some(y) = w.purchase[j] {
                buy_idx.push(k);
                buy_y.push(y);
            }
        }
    }
    let n_positions = positions.len();
    let pair = |idx: Vec<u32>, y: Vec<f32>| -> Result<Option<(Tensor, Tensor)>> {
        if idx.is_empty() {
            return Ok(None);
        }
        let n = idx.len();
        Ok(Some((
            Tensor::from_vec(idx, n, device)?,
            Tensor::from_vec(y, n, device)?,
        )))
    };
    Ok(Batch {
        tokens: Tensor::from_vec(tokens, (ws.len(), len), device)?,
        positions: Tensor::from_vec(positions, n_positions, device)?,
        targets: Tensor::from_vec(targets, n_positions, device)?,
        like: pair(like_idx, like_y)?,
        purchase: pair(buy_idx, buy_y)?,
        n_positions,
    })
}
