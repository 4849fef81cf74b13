//! A training run: the resume state in `OUT/last/`, the epoch loop with validation and
//! early stopping, the checkpoints written after each epoch, the refit, and the final test.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use super::config::{TrainConfig, VALIDATION_K};
use super::epoch::train_epoch;
use super::init::{self, ItemInit};
use super::optim::AdamW;
use super::report::{model_card, EpochLog, TrainEvent, TrainReport};
use super::windows::windows;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::{evaluate_scorer, Holdout, Metrics, Split};
use crate::event::EventKind;
use crate::model::checkpoint::{self, write_atomic};
use crate::model::scorer::SeqScorer;
use crate::model::seqrec::{fresh, SeqRec};

/// Sub-directory of the output holding the resume state.
const LAST: &str = "last";

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

/// A model at its starting point: the seeded random initialisation, with the item table
/// from `init` where there is one.
fn initial(
    cfg: &TrainConfig,
    device: &Device,
    init: Option<&ItemInit>,
) -> Result<(candle_nn::VarMap, SeqRec)> {
    let (varmap, model) = fresh(&cfg.model, device, cfg.seed)?;
    if let Some(init) = init {
        init::apply(&varmap, init)?;
    }
    Ok((varmap, model))
}

/// The refit: `start` (a fresh model from [`initial`]) trained for `epochs` epochs on each
/// kept user's interactions before the test target (the validation target included, as
/// the baselines are fitted), saved as the output's model.
fn refit(
    dataset: &Dataset,
    cfg: &TrainConfig,
    epochs: usize,
    purchase_task: bool,
    out: &Path,
    start: (candle_nn::VarMap, SeqRec),
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
    let (varmap, model) = start;
    let device = model.device().clone();
    let mut opt = AdamW::new(&varmap, cfg.lr, cfg.weight_decay)?;
    for epoch in 1..=epochs {
        let loss = train_epoch(&model, &mut opt, &data, cfg, epoch, &device, on_event)?;
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
    train_with_init(dataset, cfg, out, resume, None, on_event)
}

/// [`train`], with the item table initialised from `init` (a warm start, see
/// [`init::from_text`]) instead of at random; the refit starts from it too.
pub fn train_with_init(
    dataset: &Dataset,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    init: Option<&ItemInit>,
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
    cfg.init_from_text = init.map(|i| i.info.source.clone());
    if let Some(init) = init {
        if init.rows.len() != dataset.n_items() || init.dim != cfg.model.dim {
            return Err(Error::config(
                "init_from_text",
                format!(
                    "the initial item table is {}×{}, the model's {}×{}",
                    init.rows.len(),
                    init.dim,
                    dataset.n_items(),
                    cfg.model.dim
                ),
            ));
        }
    }
    cfg.model.validate()?;
    let device = crate::model::device(&cfg.device)?;
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
            || state.train.init_from_text != cfg.init_from_text
            || (state.train.lr_schedule != "constant" && state.train.epochs != cfg.epochs)
        {
            return Err(Error::Checkpoint {
                path: last_dir,
                message: "was trained with another configuration (model, seed, batch, window stride, initialisation, or learning-rate schedule and its epochs); resume with the same flags or train afresh into another --out".into(),
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
        let (varmap, model) = initial(&cfg, &device, init)?;
        if let Some(init) = init {
            tracing::info!(source = %init.info.source, with_text = init.info.items_with_text, "item table initialised from text");
        }
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
            initial(&cfg, &device, init)?,
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
        init: init.map(|i| i.info.clone()),
        train: cfg.clone(),
        history: state.history.clone(),
    };
    write_atomic(out, "metrics.json", &serde_json::to_vec_pretty(&report)?)?;
    write_atomic(out, "MODEL.md", model_card(&report).as_bytes())?;
    drop(varmap);
    Ok(report)
}
