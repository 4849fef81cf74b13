//! Training: the protocol's split, AdamW, early stopping on validation NDCG@10, atomic
//! checkpoints, resume, and the model card.
//!
//! Each kept user's sequence before the validation target is the training data (the test
//! target is never seen). Every position of a window predicts the next item (full softmax
//! or sampled), and, where the data has them, whether the next item is liked (rating ≥
//! threshold) and whether it is bought. After each epoch the validation targets are ranked
//! (full ranking, as `attune eval`); the best epoch's weights are kept. The test split is
//! ranked once, with the best weights, for the model card.
//!
//! Determinism: the weights' initialisation, the shuffling and the dropout masks come
//! from generators seeded by `(seed, epoch)`, so a run on the CPU is reproducible and a
//! resumed run continues exactly as an uninterrupted one would.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, write_atomic};
use super::layers::Dropout;
use super::loss::{bce_with_logits, cross_entropy, softmax_cross_entropy};
use super::scorer::SeqScorer;
use super::seqrec::{fresh, SeqRec};
use super::Config;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::{evaluate_scorer, Holdout, Metrics, Split};
use crate::event::EventKind;

/// Cut-off of the validation metric that picks the best epoch.
pub const VALIDATION_K: usize = 10;
/// The learning-rate schedules.
pub const LR_SCHEDULES: [&str; 3] = ["constant", "linear", "cosine"];
/// Sub-directory of the output holding the resume state.
const LAST: &str = "last";

/// Training settings (the model's own are in [`Config`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Model hyper-parameters; `n_items` is set from the data.
    pub model: Config,
    /// Most epochs to run.
    pub epochs: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay (not applied to embeddings, norms or biases).
    pub weight_decay: f64,
    /// Windows per batch.
    pub batch: usize,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Stop after this many evaluations without a better validation NDCG@10.
    pub patience: usize,
    /// Evaluate on the validation targets every this many epochs.
    pub eval_every: usize,
    /// Stop (after the current epoch) once training has run this long, in minutes.
    pub max_minutes: Option<f64>,
    /// `cpu`, `cuda` or `auto`.
    pub device: String,
    /// 0: each user gives one window, its most recent `max_len` positions. S > 0: users
    /// longer than `max_len` also give earlier windows, each ending S positions before
    /// the previous one, until the start of the history is covered.
    pub window_stride: usize,
    /// After early stopping, train a fresh model (same seed) for the best epoch count on
    /// every interaction before the test targets (validation targets included) and keep
    /// that model; the reported validation figures stay those of the selection run.
    pub refit: bool,
    /// Learning-rate schedule over `epochs`: `constant`, or `linear` / `cosine` decay
    /// from `lr` to 0 at the end of epoch `epochs` (per batch).
    pub lr_schedule: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: Config::default(),
            epochs: 200,
            lr: 1e-3,
            weight_decay: 0.0,
            batch: 128,
            seed: 42,
            patience: 10,
            eval_every: 1,
            max_minutes: None,
            device: "cpu".into(),
            window_stride: 0,
            refit: false,
            lr_schedule: "constant".into(),
        }
    }
}

impl TrainConfig {
    /// The learning rate at `progress` (epochs done, fractional) under the schedule.
    fn lr_at(&self, progress: f64) -> f64 {
        let p = (progress / self.epochs as f64).clamp(0.0, 1.0);
        match self.lr_schedule.as_str() {
            "linear" => self.lr * (1.0 - p),
            "cosine" => self.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
            _ => self.lr,
        }
    }

    /// Checks the training knobs (the model's are checked once `n_items` is known).
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("epochs", "must be at least 1"));
        }
        if self.lr.is_nan() || self.lr <= 0.0 || self.lr >= 1.0 {
            return Err(Error::config(
                "lr",
                format!("must be in (0, 1), got {}", self.lr),
            ));
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return Err(Error::config("weight_decay", "must be in [0, 1)"));
        }
        if self.batch == 0 || self.batch > 65_536 {
            return Err(Error::config(
                "batch",
                format!("must be in 1..=65536, got {}", self.batch),
            ));
        }
        if !LR_SCHEDULES.contains(&self.lr_schedule.as_str()) {
            return Err(Error::config(
                "lr_schedule",
                format!(
                    "`{}` is not one of: {}",
                    self.lr_schedule,
                    LR_SCHEDULES.join(", ")
                ),
            ));
        }
        if self.eval_every == 0 {
            return Err(Error::config("eval_every", "must be at least 1"));
        }
        if self.patience == 0 {
            return Err(Error::config("patience", "must be at least 1"));
        }
        if let Some(m) = self.max_minutes {
            if m.is_nan() || m <= 0.0 {
                return Err(Error::config("max_minutes", "must be positive"));
            }
        }
        super::device(&self.device).map(|_| ())
    }
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// Mean training loss (all tasks, weighted).
    pub loss: f64,
    /// Validation figures, on evaluated epochs.
    pub validation: Option<Metrics>,
    /// Seconds since training started (this run and the runs it resumed).
    pub elapsed: f64,
}

/// What the trainer reports and writes as `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub dataset: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub best_epoch: usize,
    pub epochs_run: usize,
    /// With `refit`: the epochs the kept model was trained for on every interaction
    /// before the test targets.
    #[serde(default)]
    pub refit_epochs: Option<usize>,
    pub seconds: f64,
    pub k: usize,
    pub validation: Metrics,
    pub test: Metrics,
    pub tasks_present: Vec<String>,
    pub train: TrainConfig,
    pub history: Vec<EpochLog>,
}

/// Progress of a training run.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// A batch finished.
    Batch {
        epoch: usize,
        done: usize,
        total: usize,
        loss: f64,
    },
    /// An epoch finished (validation figures on evaluated epochs).
    Epoch(EpochLog),
    /// A refit epoch finished (see [`TrainConfig::refit`]).
    Refit {
        epoch: usize,
        epochs: usize,
        loss: f64,
    },
    /// Ranking the test targets with the best weights.
    Testing,
}

/// The resume state saved after every epoch in `OUT/last/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResumeState {
    train: TrainConfig,
    epoch: usize,
    step: usize,
    best_epoch: usize,
    best_ndcg: f64,
    best_validation: Option<Metrics>,
    evals_since_best: usize,
    history: Vec<EpochLog>,
}

/// One training window: inputs and, per position, the next item and task labels.
#[derive(Debug, Clone)]
struct TrainWindow {
    tokens: Vec<u32>,
    targets: Vec<u32>,
    like: Vec<Option<f32>>,
    purchase: Vec<Option<f32>>,
}

/// Builds the windows from each kept user's sequence before the holdout's target: the
/// most recent `max_len` positions and, with a `stride` > 0, earlier windows each ending
/// `stride` positions before the previous one, until the history's start is covered.
fn windows(
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

/// AdamW with its state in tensors, so it can be saved and resumed.
struct AdamW {
    vars: Vec<(String, Var, bool)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
    lr: f64,
    weight_decay: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.98;
const EPS: f64 = 1e-8;

impl AdamW {
    fn new(varmap: &VarMap, lr: f64, weight_decay: f64) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::config("model", "variable map poisoned"))?;
        let mut vars: Vec<(String, Var, bool)> = data
            .iter()
            .map(|(name, var)| {
                let decay =
                    name.ends_with("weight") && !name.contains("ln") && !name.contains("emb");
                (name.clone(), var.clone(), decay)
            })
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars
            .iter()
            .map(|(_, v, _)| v.zeros_like())
            .collect::<candle_core::Result<_>>()?;
        let v = vars
            .iter()
            .map(|(_, v, _)| v.zeros_like())
            .collect::<candle_core::Result<_>>()?;
        Ok(AdamW {
            vars,
            m,
            v,
            step: 0,
            lr,
            weight_decay,
        })
    }

    fn step(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - BETA1.powi(t);
        let c2 = 1.0 - BETA2.powi(t);
        for (i, (_, var, decay)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * BETA1)? + (g * (1.0 - BETA1))?)?;
            let v = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let mut update = ((&m / c1)? / ((&v / c2)?.sqrt()? + EPS)?)?;
            if *decay && self.weight_decay > 0.0 {
                update = (update + (var.as_tensor() * self.weight_decay)?)?;
            }
            var.set(&(var.as_tensor() - (update * self.lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut map = std::collections::HashMap::new();
        for (i, (name, _, _)) in self.vars.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    fn load(&mut self, path: &Path, device: &Device) -> Result<()> {
        let map = candle_core::safetensors::load(path, device)?;
        for (i, (name, _, _)) in self.vars.iter().enumerate() {
            let get = |k: String| {
                map.get(&k).cloned().ok_or_else(|| Error::Checkpoint {
                    path: path.to_path_buf(),
                    message: format!("optimizer state lacks {k}"),
                })
            };
            self.m[i] = get(format!("m.{name}"))?;
            self.v[i] = get(format!("v.{name}"))?;
        }
        Ok(())
    }
}

fn epoch_rng(seed: u64, epoch: usize, stream: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// Tensors of one batch.
struct Batch {
    tokens: Tensor,
    positions: Tensor,
    targets: Tensor,
    like: Option<(Tensor, Tensor)>,
    purchase: Option<(Tensor, Tensor)>,
    n_positions: usize,
}

fn make_batch(ws: &[&TrainWindow], device: &Device) -> Result<Batch> {
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

/// The weighted multi-task loss of one batch.
fn batch_loss(
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
fn train_epoch(
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

/// Ranks a holdout's targets with the current weights.
fn evaluate_model(model: &SeqRec, dataset: &Dataset, split: Split) -> Result<Metrics> {
    let holdout = Holdout::new(dataset, split)?;
    let scorer = SeqScorer::from_model(
        "seq",
        model.clone(),
        &dataset.item_names,
        &dataset.item_names,
    );
    evaluate_scorer(&holdout, &scorer, VALIDATION_K)
}

/// The refit: a fresh model with the run's seed, trained for `epochs` epochs on each
/// kept user's interactions before the test target (the validation target included, as
/// the baselines are fitted), saved as the output's model.
fn refit(
    dataset: &Dataset,
    cfg: &TrainConfig,
    epochs: usize,
    purchase_task: bool,
    out: &Path,
    device: &Device,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<()> {
    let holdout = Holdout::new(dataset, Split::Test)?;
    let data = windows(
        dataset,
        &holdout,
        &cfg.model,
        cfg.window_stride,
        purchase_task,
    );
    tracing::info!(
        windows = data.len(),
        epochs,
        "refit on the data before the test targets"
    );
    let (varmap, model) = fresh(&cfg.model, device, cfg.seed)?;
    let mut opt = AdamW::new(&varmap, cfg.lr, cfg.weight_decay)?;
    for epoch in 1..=epochs {
        let loss = train_epoch(&model, &mut opt, &data, cfg, epoch, device, on_event)?;
        on_event(TrainEvent::Refit {
            epoch,
            epochs,
            loss,
        });
    }
    checkpoint::save(out, &varmap, &cfg.model, &dataset.item_names)
}

/// Trains a model on `dataset`, writing checkpoints and the model card into `out`.
///
/// With `resume`, continues from `out/last/` (the configuration must match).
pub fn train(
    dataset: &Dataset,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainReport> {
    cfg.validate()?;
    if dataset.n_items() == 0 || dataset.users.is_empty() {
        return Err(Error::EmptyData(
            "the data set holds no interactions".into(),
        ));
    }
    let mut cfg = cfg.clone();
    cfg.model.n_items = dataset.n_items();
    cfg.model.validate()?;
    let device = super::device(&cfg.device)?;
    let started = Instant::now();

    let holdout = Holdout::new(dataset, Split::Validation)?;
    let has_rating = dataset
        .users
        .iter()
        .any(|u| u.kinds.contains(&EventKind::Rating));
    let has_purchase = dataset
        .users
        .iter()
        .any(|u| u.kinds.contains(&EventKind::Purchase))
        && dataset
            .users
            .iter()
            .any(|u| u.kinds.iter().any(|k| *k != EventKind::Purchase));
    let mut tasks_present = vec!["next".to_string()];
    if has_rating {
        tasks_present.push("like".into());
    }
    if has_purchase {
        tasks_present.push("purchase".into());
    }
    let data = windows(
        dataset,
        &holdout,
        &cfg.model,
        cfg.window_stride,
        has_purchase,
    );
    if data.is_empty() {
        return Err(Error::EmptyData(
            "no user has enough interactions to train on (need at least 4: two to learn from, a validation and a test target)".into(),
        ));
    }
    tracing::info!(windows = data.len(), items = cfg.model.n_items, tasks = ?tasks_present, "training");

    let last_dir = out.join(LAST);
    let (varmap, model, mut opt, mut state) = if resume && last_dir.join("state.json").is_file() {
        let state: ResumeState = serde_json::from_slice(
            &std::fs::read(last_dir.join("state.json")).map_err(|e| Error::io(&last_dir, e))?,
        )?;
        if state.train.model != cfg.model
            || state.train.seed != cfg.seed
            || state.train.batch != cfg.batch
            || state.train.window_stride != cfg.window_stride
            || state.train.lr_schedule != cfg.lr_schedule
            || (state.train.lr_schedule != "constant" && state.train.epochs != cfg.epochs)
        {
            return Err(Error::Checkpoint {
                path: last_dir,
                message: "was trained with another configuration (model, seed, batch, window stride, or learning-rate schedule and its epochs); resume with the same flags or train afresh into another --out".into(),
            });
        }
        let (varmap, ck) = checkpoint::Checkpoint::load_trainable(&last_dir, &device)?;
        let mut opt = AdamW::new(&varmap, cfg.lr, cfg.weight_decay)?;
        opt.load(&last_dir.join("optimizer.safetensors"), &device)?;
        opt.step = state.step;
        tracing::info!(epoch = state.epoch, "resuming");
        (varmap, ck.model, opt, state)
    } else {
        if out.join(checkpoint::WEIGHTS).exists() || last_dir.exists() {
            return Err(Error::Checkpoint {
                path: out.to_path_buf(),
                message: "already holds a model; pass --resume to continue its training, or choose another --out".into(),
            });
        }
        let (varmap, model) = fresh(&cfg.model, &device, cfg.seed)?;
        let opt = AdamW::new(&varmap, cfg.lr, cfg.weight_decay)?;
        let state = ResumeState {
            train: cfg.clone(),
            epoch: 0,
            step: 0,
            best_epoch: 0,
            best_ndcg: f64::NEG_INFINITY,
            best_validation: None,
            evals_since_best: 0,
            history: Vec::new(),
        };
        (varmap, model, opt, state)
    };
    std::fs::create_dir_all(&last_dir).map_err(|e| Error::io(&last_dir, e))?;
    let elapsed_before = state.history.last().map_or(0.0, |h| h.elapsed);

    while state.epoch < cfg.epochs {
        let epoch = state.epoch + 1;
        let mean_loss = train_epoch(&model, &mut opt, &data, &cfg, epoch, &device, on_event)?;
        state.step = opt.step;
        let evaluate_now = epoch % cfg.eval_every == 0 || epoch == cfg.epochs;
        let validation = if evaluate_now {
            Some(evaluate_model(&model, dataset, Split::Validation)?)
        } else {
            None
        };
        if let Some(v) = validation {
            if v.ndcg > state.best_ndcg {
                state.best_ndcg = v.ndcg;
                state.best_epoch = epoch;
                state.best_validation = Some(v);
                state.evals_since_best = 0;
                checkpoint::save(out, &varmap, &cfg.model, &dataset.item_names)?;
            } else {
                state.evals_since_best += 1;
            }
        }
        let log = EpochLog {
            epoch,
            loss: mean_loss,
            validation,
            elapsed: elapsed_before + started.elapsed().as_secs_f64(),
        };
        state.history.push(log.clone());
        state.epoch = epoch;
        checkpoint::save(&last_dir, &varmap, &cfg.model, &dataset.item_names)?;
        let tmp = last_dir.join(".optimizer.safetensors.tmp");
        opt.save(&tmp)?;
        std::fs::rename(&tmp, last_dir.join("optimizer.safetensors"))
            .map_err(|e| Error::io(&last_dir, e))?;
        write_atomic(&last_dir, "state.json", &serde_json::to_vec_pretty(&state)?)?;
        on_event(TrainEvent::Epoch(log));
        if state.evals_since_best >= cfg.patience {
            tracing::info!(epoch, best = state.best_epoch, "early stop");
            break;
        }
        if cfg
            .max_minutes
            .is_some_and(|m| started.elapsed().as_secs_f64() >= m * 60.0)
        {
            tracing::info!(epoch, "time budget reached");
            break;
        }
    }

    let refit_epochs = if cfg.refit && state.best_epoch > 0 {
        refit(
            dataset,
            &cfg,
            state.best_epoch,
            has_purchase,
            out,
            &device,
            on_event,
        )?;
        Some(state.best_epoch)
    } else {
        None
    };

    on_event(TrainEvent::Testing);
    let best = checkpoint::Checkpoint::load(out, &device, DType::F32)?;
    let test = evaluate_model(&best.model, dataset, Split::Test)?;
    let report = TrainReport {
        dataset: dataset.name.clone(),
        users: dataset.users.len(),
        items: dataset.n_items(),
        interactions: dataset.n_interactions(),
        best_epoch: state.best_epoch,
        epochs_run: state.epoch,
        refit_epochs,
        seconds: elapsed_before + started.elapsed().as_secs_f64(),
        k: VALIDATION_K,
        validation: state.best_validation.unwrap_or(test),
        test,
        tasks_present,
        train: cfg.clone(),
        history: state.history.clone(),
    };
    write_atomic(out, "metrics.json", &serde_json::to_vec_pretty(&report)?)?;
    write_atomic(out, "MODEL.md", model_card(&report).as_bytes())?;
    drop(varmap);
    Ok(report)
}

/// The machine, for the model card.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn model_card(r: &TrainReport) -> String {
    let m = &r.train.model;
    format!(
        "# Attune attention model\n\n\
         A SASRec-style causal self-attention encoder (pre-LayerNorm, learned positions, item \
         embeddings tied to the output) with multi-task heads, trained by `attune train`.\n\n\
         ## Data\n\n- data set: {}\n- users: {}, items: {}, interactions: {}\n- tasks trained: {}\n\n\
         ## Protocol\n\nLeave-last-out with full ranking (../shared/DESIGN.md): each user's last \
         interaction is the test target, the one before it the validation target. Training \
         used every user's interactions before the validation target; the validation target \
         picked the best epoch; the test target was never seen in training.\n\n\
         ## Figures (K = {})\n\n| split | HR@10 | NDCG@10 | MRR |\n|---|---:|---:|---:|\n\
         | validation | {:.4} | {:.4} | {:.4} |\n| test | {:.4} | {:.4} | {:.4} |\n\n\
         Best epoch {} of {} run{}; training took {:.1} s on {} ({}), finished {}.\n\n\
         ## Configuration\n\ndim {}, layers {}, heads {}, max_len {}, dropout {}, ffn ×{}, \
         softmax {}, lr {} ({}), batch {}, weight decay {}, window stride {}, seed {}.\n\n\
         Figures are re-measurable with `attune eval --model seq:DIR` on the same data.\n",
        r.dataset,
        r.users,
        r.items,
        r.interactions,
        r.tasks_present.join(", "),
        r.k,
        r.validation.hr,
        r.validation.ndcg,
        r.validation.mrr,
        r.test.hr,
        r.test.ndcg,
        r.test.mrr,
        r.best_epoch,
        r.epochs_run,
        r.refit_epochs.map_or(String::new(), |e| format!(
            "; the model kept was then refit for {e} epochs on every interaction before the \
             test targets (validation targets included), so its validation figures are those \
             of the selection run"
        )),
        r.seconds,
        machine(),
        r.train.device,
        crate::store::format_utc(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        ),
        m.dim,
        m.layers,
        m.heads,
        m.max_len,
        m.dropout,
        m.ffn_mult,
        if m.negatives == 0 { "full".to_string() } else { format!("sampled ({} shared negatives)", m.negatives) },
        r.train.lr,
        r.train.lr_schedule,
        r.train.batch,
        r.train.weight_decay,
        r.train.window_stride,
        r.train.seed,
    )
}

/// The path of a checkpoint named in a model spec `seq:DIR`.
pub fn seq_spec(name: &str) -> Option<PathBuf> {
    name.strip_prefix("seq:").map(PathBuf::from)
}

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

#[cfg(test)]
mod window_tests {
    use super::*;
    use crate::data::DatasetBuilder;

    /// One user with items 0..n in order (validation target n-2, test target n-1).
    fn one_user(n: usize) -> Dataset {
        let mut b = DatasetBuilder::new("line");
        for j in 0..n {
            b.push("u", &format!("i{j}"), j as i64, EventKind::Click, 0.0);
        }
        b.finish()
    }

    fn spans(n: usize, max_len: usize, stride: usize, split: Split) -> Vec<(u32, u32, usize)> {
        let data = one_user(n);
        let holdout = Holdout::new(&data, split).expect("holdout");
        let cfg = Config {
            max_len,
            ..Config::default()
        };
        windows(&data, &holdout, &cfg, stride, false)
            .iter()
            .map(|w| {
                // Each position predicts the item that follows it in the history.
                for (t, y) in w.tokens.iter().zip(&w.targets) {
                    let h = &data.users[0].items;
                    let j = h.iter().position(|i| *i == t - 1).expect("token");
                    assert_eq!(h[j + 1], *y);
                }
                (
                    w.tokens[0] - 1,
                    *w.targets.last().expect("target"),
                    w.tokens.len(),
                )
            })
            .collect()
    }

    #[test]
    fn strided_windows_cover_a_long_history_and_never_reach_the_target() {
        // 23 items: validation target at 21, so positions 0..20 predict 1..=20.
        let id = |name: &str, d: &Dataset| {
            d.item_names.iter().position(|n| n == name).expect("item") as u32
        };
        let data = one_user(23);
        // One window: the most recent max_len positions.
        assert_eq!(
            spans(23, 8, 0, Split::Validation),
            vec![(id("i12", &data), id("i20", &data), 8)]
        );
        // Stride 8: non-overlapping windows back to the start, the first one shorter.
        assert_eq!(
            spans(23, 8, 8, Split::Validation),
            vec![
                (id("i12", &data), id("i20", &data), 8),
                (id("i4", &data), id("i12", &data), 8),
                (id("i0", &data), id("i4", &data), 4),
            ]
        );
        // Stride 5: overlapping windows.
        assert_eq!(
            spans(23, 8, 5, Split::Validation),
            vec![
                (id("i12", &data), id("i20", &data), 8),
                (id("i7", &data), id("i15", &data), 8),
                (id("i2", &data), id("i10", &data), 8),
                (id("i0", &data), id("i5", &data), 5),
            ]
        );
        // A short user gives one window whatever the stride.
        assert_eq!(spans(6, 8, 3, Split::Validation).len(), 1);
        // Before the test target, the validation target is the last one learned.
        assert_eq!(
            spans(23, 8, 0, Split::Test),
            vec![(id("i13", &data), id("i21", &data), 8)]
        );
    }
}
