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
    let item_names = dataset.item_names.clone();
    let device = attune::model::device("auto")?;
    let report = eval::evaluate_with(&dataset, &a.models, a.k, split, |name, train| {
        match attune::model::train::seq_spec(name) {
            Some(dir) => {
                let ck = attune::model::Checkpoint::load(&dir, &device, candle_core::DType::F32)?;
                Ok(Box::new(attune::model::scorer::SeqScorer::new(
                    name,
                    ck,
                    &item_names,
                )))
            }
            None => attune::baselines::fit(name, train),
        }
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

pub fn train(a: TrainArgs) -> Result<()> {
    let dataset = load_source(&a.source)?;
    let cfg = TrainConfig {
        model: ModelConfig {
            dim: a.dim,
            layers: a.layers,
            heads: a.heads,
            max_len: a.max_len,
            dropout: a.dropout,
            negatives: a.negatives,
            ..ModelConfig::default()
        },
        epochs: a.epochs,
        lr: a.lr,
        weight_decay: a.weight_decay,
        batch: a.batch,
        seed: a.seed,
        patience: a.patience,
        eval_every: a.eval_every,
        max_minutes: a.max_minutes,
        device: a.device.clone(),
        window_stride: a.window_stride,
        refit: a.refit,
        lr_schedule: a.lr_schedule.clone(),
    };
    eprintln!(
        "training on {}: {} users, {} items, {} interactions",
        dataset.name,
        dataset.users.len(),
        dataset.n_items(),
        dataset.n_interactions()
    );
    let bar = progress::count(0, "epoch 1");
    let report =
        attune::model::train::train(&dataset, &cfg, &a.out, a.resume, &mut |ev| match ev {
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
        });
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
