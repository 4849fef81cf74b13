//! The model commands: `attune eval` (baselines and checkpoints under the protocol) and
//! `attune train`.

use anyhow::{bail, Result};

use attune::eval::{self, Split};
use attune::model::train::{TrainConfig, TrainEvent};
use attune::model::Config as ModelConfig;

use super::data::load_source;
use crate::cli::progress;
use crate::cli::{EvalArgs, TrainArgs};

pub fn eval(a: EvalArgs) -> Result<()> {
    let split: Split = a.split.parse()?;
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let dataset = load_source(&a.source)?;
    if let Some(fraction) = a.cold_items {
        return eval_cold(&a, &dataset, fraction);
    }
    let item_names = dataset.item_names.clone();
    let device = attune::model::device("auto")?;
    let mut report = eval::evaluate_with(&dataset, &a.models, a.k, split, |name, train| {
        match attune::model::train::seq_spec(name) {
            Some(dir) => {
                let ck = attune::model::Checkpoint::load(&dir, &device, candle_core::DType::F32)?;
                Ok(Box::new(
                    attune::model::scorer::SeqScorer::new(name, ck, &item_names)
                        .with_score_dtype(a.score_dtype)?,
                ))
            }
            None => attune::baselines::fit(name, train),
        }
    })?;
    if a.heads {
        let holdout = eval::Holdout::new(&dataset, split)?;
        let mut heads = Vec::new();
        for name in &a.models {
            let Some(dir) = attune::model::train::seq_spec(name) else {
                continue;
            };
            let ck = attune::model::Checkpoint::load(&dir, &device, candle_core::DType::F32)?;
            let threshold = ck.config.like_threshold;
            let scorer = attune::model::scorer::SeqScorer::new(name.as_str(), ck, &item_names);
            heads.extend(eval::heads::evaluate(
                &dataset,
                &holdout,
                name,
                threshold,
                |h, t| scorer.task_logits(h, t),
            )?);
        }
        if heads.is_empty() {
            bail!("--heads: no seq:DIR model with a like or purchase label in this data");
        }
        report.heads = Some(heads);
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// `attune eval --cold-items F`: the cold-start protocol of [`eval::cold`].
fn eval_cold(a: &EvalArgs, dataset: &attune::data::Dataset, fraction: f64) -> Result<()> {
    let split = eval::cold::ColdSplit::new(
        dataset,
        eval::cold::ColdOptions {
            fraction,
            seed: a.seed,
        },
    )?;
    let models: Vec<String> = if a.models.is_empty() {
        eval::cold::COLD_MODELS
            .iter()
            .map(|m| m.to_string())
            .collect()
    } else {
        a.models.clone()
    };
    let text = if models.iter().any(|m| m == "text" || m == "blend") {
        let fields = attune::text::TextFields::parse(&a.text_fields)?;
        Some(embed_dataset(&a.encoder, dataset, &fields)?.0)
    } else {
        None
    };
    let report = eval::cold::evaluate_cold(&split, &models, a.k, text.as_ref())?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// The text vectors of a data set's catalogue, with a progress bar, and the encoder's
/// identity.
pub(super) fn embed_dataset(
    dir: &std::path::Path,
    dataset: &attune::data::Dataset,
    fields: &attune::text::TextFields,
) -> Result<(attune::text::TextTable, String)> {
    let device = attune::model::device("auto")?;
    let start = std::time::Instant::now();
    let encoder = attune::text::Encoder::load(dir, &device)?;
    let described = dataset
        .item_info
        .iter()
        .filter(|i| !i.title.is_empty() || !i.tags.is_empty())
        .count();
    if described == 0 {
        bail!(
            "{}: no item has a title or tags, so the text models have nothing to read; \
             pass the catalogue file too (ml-100k u.item, ml-1m movies.dat)",
            dataset.name
        );
    }
    let steps = progress::Steps::new(dataset.n_items() as u64, "embedding item text");
    let table = attune::text::embed_items(
        &encoder,
        &dataset.item_info,
        fields,
        attune::text::encoder::DEFAULT_BATCH,
        &mut |done, _| steps.set_position(done as u64),
    )?;
    steps.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "embedded {} of {} items with {} in {secs:.1} s ({:.0} items/s)",
        table.count(),
        dataset.n_items(),
        encoder.id(),
        table.count() as f64 / secs
    );
    Ok((table, encoder.id().to_string()))
}

pub fn train(a: TrainArgs) -> Result<()> {
    let dataset = load_source(&a.source)?;
    eprintln!(
        "training on {}: {} users, {} items, {} interactions",
        dataset.name,
        dataset.users.len(),
        dataset.n_items(),
        dataset.n_interactions()
    );
    // Every tuning flag left out takes the value the data suggests; say which and why.
    let d = attune::model::train::defaults::derive(&dataset);
    let refit = if a.no_refit {
        false
    } else {
        a.refit || d.refit
    };
    let overridden: Vec<&str> = [
        ("--max-len", a.max_len.is_some()),
        ("--window-stride", a.window_stride.is_some()),
        ("--dropout", a.dropout.is_some()),
        ("--batch", a.batch.is_some()),
        ("--lr", a.lr.is_some()),
        ("--eval-every", a.eval_every.is_some()),
        ("--patience", a.patience.is_some()),
        ("--refit/--no-refit", a.refit || a.no_refit),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    eprint!("{}", d.explain());
    if !overridden.is_empty() {
        eprintln!("  overridden by flags: {}", overridden.join(", "));
    }
    let cfg = TrainConfig {
        model: ModelConfig {
            dim: a.dim,
            layers: a.layers,
            heads: a.heads,
            max_len: a.max_len.unwrap_or(d.max_len),
            dropout: a.dropout.unwrap_or(d.dropout),
            negatives: a.negatives,
            tasks: attune::model::TaskWeights {
                like: a.like_weight,
                purchase: a.purchase_weight,
                ..attune::model::TaskWeights::default()
            },
            ..ModelConfig::default()
        },
        epochs: a.epochs,
        lr: a.lr.unwrap_or(d.lr),
        weight_decay: a.weight_decay,
        batch: a.batch.unwrap_or(d.batch),
        seed: a.seed,
        patience: a.patience.unwrap_or(d.patience),
        eval_every: a.eval_every.unwrap_or(d.eval_every),
        max_minutes: a.max_minutes,
        device: a.device.clone(),
        window_stride: a.window_stride.unwrap_or(d.window_stride),
        refit,
        lr_schedule: a.lr_schedule.clone(),
        init_from_text: None,
    };
    cfg.validate()?;
    eprintln!(
        "training with max_len {}, window stride {}, dropout {}, batch {}, lr {:e}, eval every {}, patience {}, refit {}",
        cfg.model.max_len,
        cfg.window_stride,
        cfg.model.dropout,
        cfg.batch,
        cfg.lr,
        cfg.eval_every,
        cfg.patience,
        if cfg.refit { "on" } else { "off" }
    );
    let init = match &a.init_from_text {
        None => None,
        Some(dir) => {
            let (table, source) =
                embed_dataset(dir, &dataset, &attune::text::TextFields::default())?;
            let start = std::time::Instant::now();
            let init =
                attune::model::train::init::from_text(&table, dataset.n_items(), a.dim, &source)?;
            eprintln!(
                "item table initialised from {source}: PCA {}→{} keeps {:.1}% of the variance; {} of {} items have text ({:.1} s)",
                table.dim(),
                a.dim,
                init.info.explained_variance * 100.0,
                init.info.items_with_text,
                init.info.items,
                start.elapsed().as_secs_f64()
            );
            Some(init)
        }
    };
    let bar = progress::count(0, "epoch 1");
    let report = attune::model::train::train_with_init(
        &dataset,
        &cfg,
        &a.out,
        a.resume,
        init.as_ref(),
        &mut |ev| match ev {
            TrainEvent::Batch {
                epoch,
                done,
                total,
                loss,
            } => {
                if done == 1 {
                    bar.set_length(total as u64);
                    bar.reset();
                }
                bar.set_message(format!("epoch {epoch} loss {loss:.4}"));
                bar.set_position(done as u64);
            }
            TrainEvent::Epoch(log) => {
                let val = log
                    .validation
                    .map(|v| format!("val HR@10 {:.4} NDCG@10 {:.4}", v.hr, v.ndcg))
                    .unwrap_or_default();
                let line = format!(
                    "epoch {:>3}  loss {:.4}  {val}  ({:.0} s)",
                    log.epoch, log.loss, log.elapsed
                );
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            TrainEvent::Refit {
                epoch,
                epochs,
                loss,
            } => {
                let line = format!("refit epoch {epoch:>3} of {epochs}  loss {loss:.4}");
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            TrainEvent::Testing => bar.set_message("ranking the test targets"),
        },
    );
    bar.finish_and_clear();
    let r = report?;
    println!(
        "best epoch {} of {}{}: validation HR@10 {:.4} NDCG@10 {:.4}; test HR@10 {:.4} NDCG@10 {:.4} MRR {:.4}; {:.1} s; saved to {}",
        r.best_epoch,
        r.epochs_run,
        r.refit_epochs
            .map_or(String::new(), |e| format!(" (test: the model refit for {e} epochs)")),
        r.validation.hr,
        r.validation.ndcg,
        r.test.hr,
        r.test.ndcg,
        r.test.mrr,
        r.seconds,
        a.out.display()
    );
    Ok(())
}
