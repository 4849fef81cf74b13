//! The fine-tuning trigger: recent interactions remembered, and every `finetune_every`
//! of them a fine-tuning pass of the attention model on a background thread, swapped in
//! when done.
//!
//! A deterministic engine (replays) runs the pass on the learner's own thread instead,
//! when the events that triggered it are applied: the next round is ranked with the new
//! weights, as live traffic (events minutes apart, a pass of seconds) would be, and two
//! replays give the same figures.

use std::collections::HashMap;
use std::sync::Arc;

use super::Learner;
use crate::engine::{EngineCore, ModelSlot};
use crate::event::ItemId;

impl Learner {
    pub(super) fn remember(&mut self, user: &Arc<str>, item: ItemId) {
        if self.finetune_every == 0 {
            return;
        }
        self.recent.push_back((Arc::clone(user), item));
        while self.recent.len() > 50_000 {
            self.recent.pop_front();
        }
        self.since_finetune += 1;
        if self.since_finetune >= self.finetune_every
            && !self
                .finetune_running
                .load(std::sync::atomic::Ordering::Acquire)
        {
            self.since_finetune = 0;
            self.start_finetune();
        }
    }

    fn start_finetune(&mut self) {
        let Some(model) = self.shared.model() else {
            return;
        };
        let mut by_user: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (u, item) in &self.recent {
            if let Some(idx) = model.to_model(*item) {
                by_user.entry(Arc::clone(u)).or_default().push(idx);
            }
        }
        let mut sequences: Vec<Vec<u32>> = by_user.into_values().filter(|s| s.len() >= 2).collect();
        sequences.sort();
        if sequences.is_empty() {
            return;
        }
        if self.deterministic {
            pass(&self.shared, &model, &sequences);
            return;
        }
        let shared = Arc::clone(&self.shared);
        let running = Arc::clone(&self.finetune_running);
        running.store(true, std::sync::atomic::Ordering::Release);
        let sup = shared.store.supervisor().clone();
        let priority = shared.config.background_priority;
        // A run that fails is logged and the serving model stays; one that panics is a
        // fault like any thread's death (`running` then stays set: no more runs start).
        let spawned = sup.spawn(
            "attune-finetune",
            priority,
            crate::supervise::Restart::Never,
            move || {
                crate::supervise::checkpoint();
                pass(&shared, &model, &sequences);
                running.store(false, std::sync::atomic::Ordering::Release);
                Ok(())
            },
        );
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start fine-tuning");
            self.finetune_running
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

/// One fine-tuning pass, swapped in when done; a failure is logged and the serving model
/// stays.
fn pass(shared: &EngineCore, model: &ModelSlot, sequences: &[Vec<u32>]) {
    match shared.fine_tune_and_swap(model, sequences) {
        Ok(v) => tracing::info!(
            version = v,
            users = sequences.len(),
            "fine-tuned model swapped in"
        ),
        Err(e) => tracing::warn!(error = %e, "fine-tuning failed; the serving model stays"),
    }
}
