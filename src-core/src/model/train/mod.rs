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

mod config;
pub mod defaults;
mod epoch;
mod finetune;
pub mod init;
mod optim;
mod report;
mod run;
#[cfg(test)]
mod tests;
mod windows;

use std::path::PathBuf;

pub use config::{TrainConfig, LR_SCHEDULES, VALIDATION_K};
pub use finetune::{fine_tune, FineTuneConfig};
pub use init::{InitInfo, ItemInit};
pub use report::{machine, EpochLog, TrainEvent, TrainReport};
pub use run::{train, train_with_init};

/// The path of a checkpoint named in a model spec `seq:DIR`.
pub fn seq_spec(name: &str) -> Option<PathBuf> {
    name.strip_prefix("seq:").map(PathBuf::from)
}
