//! What a training run reports: the per-epoch log, the report written as `metrics.json`,
//! the progress events, and the model card (`MODEL.md`).

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::eval::Metrics;

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
    /// How the item table started, when not at random (`--init-from-text`).
    #[serde(default)]
    pub init: Option<super::init::InitInfo>,
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

/// The validation NDCG@10 per evaluated epoch as a Markdown table with a bar per row
/// (the bar's full width is the best epoch's figure).
fn curve(r: &TrainReport) -> String {
    let best = r
        .history
        .iter()
        .filter_map(|h| h.validation.map(|v| v.ndcg))
        .fold(0.0_f64, f64::max);
    let mut out = String::from(
        "## Validation curve\n\n| epoch | loss | HR@10 | NDCG@10 | |\n|---:|---:|---:|---:|---|\n",
    );
    for h in &r.history {
        let Some(v) = h.validation else { continue };
        let width = if best > 0.0 {
            (v.ndcg / best * 30.0).round() as usize
        } else {
            0
        };
        out.push_str(&format!(
            "| {}{} | {:.4} | {:.4} | {:.4} | `{}` |\n",
            h.epoch,
            if h.epoch == r.best_epoch {
                " (best)"
            } else {
                ""
            },
            h.loss,
            v.hr,
            v.ndcg,
            "█".repeat(width)
        ));
    }
    out
}

/// How the item table started, for the model card.
fn initialisation(r: &TrainReport) -> String {
    match &r.init {
        None => "random (normal, standard deviation 1/√dim)".into(),
        Some(i) => format!(
            "from the text vectors of `{}` projected to dim {} by PCA ({:.1}% of their \
             variance kept), scaled to the random initialisation's spread; {} of {} items had \
             text, the others started at random",
            i.source,
            r.train.model.dim,
            i.explained_variance * 100.0,
            i.items_with_text,
            i.items
        ),
    }
}

pub(super) fn model_card(r: &TrainReport) -> String {
    let m = &r.train.model;
    let card = format!(
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
         Item table initialisation: {}.\n\n\
         Figures are re-measurable with `attune eval --model seq:DIR` on the same data.\n\n",
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
        initialisation(r),
    );
    card + &curve(r)
}
