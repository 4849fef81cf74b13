//! `ReplayConfig`: the settings of a replay and their validation, and reading a strategy
//! file to replay.

use std::path::{Path, PathBuf};

use crate::engine::strategy::Strategy;
use crate::error::{Error, Result};
use crate::event::Timestamp;

/// Settings of a replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Strategies to compare (empty: the default strategy).
    pub strategies: Vec<Strategy>,
    /// Attention model checkpoint the engines serve (none: baselines only).
    pub model: Option<PathBuf>,
    /// Precision of the item table the engines score the catalogue with.
    pub score_dtype: crate::model::fast::ScoreDtype,
    /// Only events at or after this time (ms since the epoch).
    pub from: Option<Timestamp>,
    /// Only events before this time (ms).
    pub to: Option<Timestamp>,
    /// Events before this time (ms) warm the engine up (recorded, learned from, never
    /// ranked); the figures and windows cover the events from it on.
    pub warm_until: Option<Timestamp>,
    /// Fine-tune the attention model every this many interactions while replaying (0:
    /// never), as `finetune_every` does while serving (see `EngineConfig`).
    pub finetune_every: u64,
    /// Slate size ranked before each positive event.
    pub k: usize,
    /// Seed of the engines (exploration).
    pub seed: u64,
    /// Distinct users per round.
    pub round: usize,
    /// How far an event may move ahead of earlier events of other users.
    pub lookahead: usize,
    /// Time windows the figures are also reported over.
    pub windows: usize,
    /// Strategies replayed at once (default: the cores, at most the strategies).
    pub parallel: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            strategies: Vec::new(),
            model: None,
            score_dtype: crate::model::fast::ScoreDtype::F32,
            from: None,
            to: None,
            warm_until: None,
            finetune_every: 0,
            k: 10,
            seed: 42,
            round: 64,
            lookahead: 4096,
            windows: 10,
            parallel: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl ReplayConfig {
    pub(super) fn validate(&self) -> Result<()> {
        if !(1..=1000).contains(&self.k) {
            return Err(Error::config(
                "k",
                format!("must be in [1, 1000], got {}", self.k),
            ));
        }
        if !(1..=4096).contains(&self.round) {
            return Err(Error::config(
                "round",
                format!("must be in [1, 4096], got {}", self.round),
            ));
        }
        if self.lookahead < self.round {
            return Err(Error::config("lookahead", "must be at least `round`"));
        }
        if !(1..=1000).contains(&self.windows) {
            return Err(Error::config("windows", "must be in [1, 1000]"));
        }
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f >= t {
                return Err(Error::config("from/to", "`from` must be before `to`"));
            }
        }
        if self.finetune_every > 0 && self.model.is_none() {
            return Err(Error::config(
                "finetune_every",
                "fine-tuning needs an attention model (--model)",
            ));
        }
        for s in &self.strategies {
            s.validate()?;
        }
        Ok(())
    }
}

/// Reads a strategy file (JSON), naming it after the file when it has no name.
pub fn strategy_file(path: &Path) -> Result<Strategy> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut s = Strategy::from_json(&text)
        .map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
    if s.name.is_empty() || s.name == Strategy::default().name {
        if let Some(stem) = path.file_stem() {
            s.name = stem.to_string_lossy().into_owned();
        }
    }
    Ok(s)
}
