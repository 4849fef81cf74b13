//! Validating a strategy: every knob checked, the error naming the field and its allowed
//! range; parsing one from JSON.

use super::{Exploration, Strategy, SOURCES};
use crate::error::{Error, Result};

fn finite(field: &str, v: f32) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be a finite number, got {v}"),
        ))
    }
}

/// The smallest FTRL learning rate a strategy may set: below it the learner's state
/// (weights divided by the rate) would leave the f32 range, and nothing would move.
pub const MIN_LEARNING_RATE: f32 = 1e-4;

impl Strategy {
    /// Parses a strategy from JSON, naming the offending field on error.
    pub fn from_json(text: &str) -> Result<Strategy> {
        let s: Strategy = serde_json::from_str(text)
            .map_err(|e| Error::config("strategy", format!("not a valid strategy: {e}")))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks every knob; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let (w, lo, hi) = (
            self.weights.to_array(),
            self.min_weights.to_array(),
            self.max_weights.to_array(),
        );
        for (j, name) in SOURCES.iter().enumerate() {
            finite(&format!("weights.{name}"), w[j])?;
            finite(&format!("min_weights.{name}"), lo[j])?;
            finite(&format!("max_weights.{name}"), hi[j])?;
            if lo[j] > hi[j] {
                return Err(Error::config(
                    format!("min_weights.{name}"),
                    format!("{} is above max_weights.{name} = {}", lo[j], hi[j]),
                ));
            }
            if w[j] < lo[j] || w[j] > hi[j] {
                return Err(Error::config(
                    format!("weights.{name}"),
                    format!("{} is outside its bounds [{}, {}]", w[j], lo[j], hi[j]),
                ));
            }
            for (what, v) in [
                ("weights", w[j]),
                ("min_weights", lo[j]),
                ("max_weights", hi[j]),
            ] {
                if v.abs() > 1000.0 {
                    return Err(Error::config(
                        format!("{what}.{name}"),
                        "must be within [-1000, 1000]",
                    ));
                }
            }
        }
        for p in &self.pinned {
            if !SOURCES.contains(&p.as_str()) {
                return Err(Error::config(
                    "pinned",
                    format!("unknown source `{p}`; sources are {}", SOURCES.join(", ")),
                ));
            }
        }
        let l = &self.learning;
        if !(l.learning_rate.is_finite() && (MIN_LEARNING_RATE..=10.0).contains(&l.learning_rate)) {
            return Err(Error::config(
                "learning.learning_rate",
                format!(
                    "must be in [{MIN_LEARNING_RATE}, 10], got {}",
                    l.learning_rate
                ),
            ));
        }
        if !(1..=100_000).contains(&l.update_every) {
            return Err(Error::config(
                "learning.update_every",
                format!("must be in [1, 100000], got {}", l.update_every),
            ));
        }
        match self.exploration {
            Exploration::None => {}
            Exploration::Epsilon { epsilon } => {
                if !(0.0..=1.0).contains(&epsilon) {
                    return Err(Error::config(
                        "exploration.epsilon",
                        format!("must be in [0, 1], got {epsilon}"),
                    ));
                }
            }
            Exploration::Thompson { scale } => {
                if !(0.0..=10.0).contains(&scale) {
                    return Err(Error::config(
                        "exploration.scale",
                        format!("must be in [0, 10], got {scale}"),
                    ));
                }
            }
        }
        let r = &self.reward;
        for (name, v) in [
            ("click", r.click),
            ("cart", r.cart),
            ("purchase", r.purchase),
            ("like", r.like),
            ("skip", r.skip),
        ] {
            finite(&format!("reward.{name}"), v)?;
            if !(-1000.0..=1000.0).contains(&v) {
                return Err(Error::config(
                    format!("reward.{name}"),
                    format!("must be within [-1000, 1000], got {v}"),
                ));
            }
        }
        if !(1..=10_000).contains(&self.candidates) {
            return Err(Error::config(
                "candidates",
                format!("must be in [1, 10000], got {}", self.candidates),
            ));
        }
        if !(1..=4096).contains(&self.batching.max_batch) {
            return Err(Error::config(
                "batching.max_batch",
                format!("must be in [1, 4096], got {}", self.batching.max_batch),
            ));
        }
        if self.batching.max_queue_delay_us > 1_000_000 {
            return Err(Error::config(
                "batching.max_queue_delay_us",
                format!(
                    "must be at most 1000000 (1 s), got {}",
                    self.batching.max_queue_delay_us
                ),
            ));
        }
        if self.name.len() > 200 {
            return Err(Error::config("name", "must be at most 200 bytes"));
        }
        Ok(())
    }
}
