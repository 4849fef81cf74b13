//! `TrainConfig`: the training settings, their defaults, validation and the
//! learning-rate schedule.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Config;

/// Cut-off of the validation metric that picks the best epoch.
pub const VALIDATION_K: usize = 10;
/// The learning-rate schedules.
pub const LR_SCHEDULES: [&str; 3] = ["constant", "linear", "cosine"];

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
    /// The encoder whose text vectors initialised the item table (see
    /// [`super::init::from_text`]); `None`: random initialisation.
    pub init_from_text: Option<String>,
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
            init_from_text: None,
        }
    }
}

impl TrainConfig {
    /// The learning rate at `progress` (epochs done, fractional) under the schedule.
    pub(super) fn lr_at(&self, progress: f64) -> f64 {
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
        crate::model::device(&self.device).map(|_| ())
    }
}
