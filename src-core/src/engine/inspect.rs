//! Looking at a user's slate without touching anything: a preview of the slate under
//! another strategy (a draft, a past version) or the one in force, and an explanation of
//! it (each item's score by source and task head, and what the attention model looked at
//! in the user's history). Neither records an impression, feeds the learner, counts a
//! recommendation or moves the session's state: the control panel calls them while the
//! engine serves.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::learner::initial_live;
use super::session::Preview;
use super::strategy::{Strategy, StrategyVersion};
use super::{check_user, Engine, Recommendation};
use crate::error::{Error, Result};

/// Which strategy a preview ranks under.
#[derive(Debug, Clone, Default)]
pub enum PreviewOf {
    /// The one in force, with the weights the learner has set.
    #[default]
    Live,
    /// A strategy not yet published (validated first), with its own starting weights: the
    /// slate a publish would serve first.
    Draft(Box<Strategy>),
    /// A stored version, with its starting weights.
    Version(u64),
}

/// What the attention model looked at for a slate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attention {
    /// The heads' rows averaged: one weight per history item, summing to 1.
    pub mean: Vec<f32>,
    /// One row per head of the last block, each summing to 1.
    pub heads: Vec<Vec<f32>>,
}

/// A slate and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Explanation {
    /// The user.
    pub user: String,
    /// The model's window of the user's history (external item ids, oldest first): the
    /// columns of `attention`. Items the model does not know are left out.
    pub history: Vec<String>,
    /// The last block's attention of the newest position over `history`; `None` when no
    /// model serves or the user has no history the model knows.
    pub attention: Option<Attention>,
    /// The slate under the strategy in force, as a preview (nothing recorded). Each item's
    /// score is the sum over sources of `weights[s] × breakdown[s]`.
    pub recommendation: Recommendation,
}

impl Engine {
    /// The `k` best items for `user` under `of`, recording nothing (see the module doc).
    pub async fn preview(&self, user: &str, k: usize, of: PreviewOf) -> Result<Recommendation> {
        Ok(self.preview_with_history(user, k, of).await?.0)
    }

    async fn preview_with_history(
        &self,
        user: &str,
        k: usize,
        of: PreviewOf,
    ) -> Result<(Recommendation, Vec<crate::event::ItemId>)> {
        check_user(user)?;
        if !(1..=1000).contains(&k) {
            return Err(Error::BadRequest(format!(
                "k must be in [1, 1000], got {k}"
            )));
        }
        let live = match of {
            PreviewOf::Live => self.shared.live(),
            PreviewOf::Draft(strategy) => {
                let strategy = *strategy;
                strategy.validate()?;
                let current = self.shared.live();
                Arc::new(initial_live(Arc::new(StrategyVersion {
                    version: current.version,
                    created_ms: crate::store::now_ms(),
                    note: "draft".into(),
                    author: String::new(),
                    message: String::new(),
                    based_on: Some(current.version),
                    strategy,
                })))
            }
            PreviewOf::Version(v) => {
                let version =
                    self.shared.book.get(v)?.ok_or_else(|| {
                        Error::NotFound(format!("there is no strategy version {v}"))
                    })?;
                Arc::new(initial_live(Arc::new(version)))
            }
        };
        self.ask(user, || Preview {
            k,
            live: Arc::clone(&live),
        })
        .await?
    }

    /// The slate `user` would get now under the strategy in force (a preview: nothing
    /// recorded), with the attention behind it.
    pub async fn explain(&self, user: &str, k: usize) -> Result<Explanation> {
        let (recommendation, history) = self.preview_with_history(user, k, PreviewOf::Live).await?;
        let model = self.shared.model();
        let catalog = self.shared.catalog_for(history.iter().copied().max());
        let (mut window, mut attention) = (Vec::new(), None);
        if let Some(m) = model.as_deref() {
            let items: Vec<u32> = history.iter().filter_map(|&i| m.to_model(i)).collect();
            let heads = m.fast.attention(&items)?;
            if !heads.is_empty() {
                let len = heads[0].len();
                let mean = (0..len)
                    .map(|j| heads.iter().map(|h| h[j]).sum::<f32>() / heads.len() as f32)
                    .collect();
                window = m
                    .fast
                    .window(&items)
                    .iter()
                    .map(|&i| {
                        let id = m.from_model[i as usize];
                        catalog.name(id).to_string()
                    })
                    .collect();
                attention = Some(Attention { mean, heads });
            }
        }
        Ok(Explanation {
            user: user.to_string(),
            history: window,
            attention,
            recommendation,
        })
    }
}
