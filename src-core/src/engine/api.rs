//! The engine's request and answer types: per-request options, recommendations with
//! their score breakdown, feedback, and what the engine reports of its strategy and model.

use super::*;

/// Per-request options of [`Engine::recommend`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = Context)]
pub struct RecommendOptions {
    /// Only items with one of these tags (overrides the strategy's include list).
    pub include_tags: Vec<String>,
    /// Never items with these tags (added to the strategy's).
    pub exclude_tags: Vec<String>,
    /// Never these items.
    pub exclude_items: Vec<String>,
    /// Log the impression (and let the learner join feedback to it).
    pub log_impression: bool,
}

/// The former name of [`RecommendOptions`] (it collided with actix's and anyhow's).
#[deprecated(since = "0.1.0", note = "renamed to RecommendOptions")]
pub type Context = RecommendOptions;

impl Default for RecommendOptions {
    fn default() -> Self {
        RecommendOptions {
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            exclude_items: Vec::new(),
            log_impression: true,
        }
    }
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecItem {
    /// The item's external id.
    pub item: String,
    /// Blended score (higher first).
    pub score: f32,
    /// The normalised score of each task and source that went into the blend.
    pub breakdown: SourceWeights,
    /// Put in by exploration rather than by score.
    pub explored: bool,
}

/// The answer to [`Engine::recommend`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendation {
    /// Id of this request (feedback may name it).
    pub request_id: String,
    /// The user.
    pub user: String,
    /// Best first.
    pub items: Vec<RecItem>,
    /// Strategy version that ranked them.
    pub strategy_version: u64,
    /// Blend weights used.
    pub weights: SourceWeights,
    /// Version of the model that scored them (0: none).
    pub model_version: u64,
    /// Set when the user was cold: `popularity` or `catalogue`.
    pub fallback: Option<String>,
}

/// Feedback on a recommendation (a click, cart, purchase, rating or skip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The user.
    pub user: String,
    /// The item acted on.
    pub item: String,
    /// `click`, `view`, `cart`, `purchase`, `rating` or `skip`.
    pub kind: EventKind,
    /// Rating value, price or dwell, by kind.
    #[serde(default)]
    pub value: Option<f32>,
    /// The recommendation it answers, if known.
    #[serde(default)]
    pub request_id: Option<String>,
    /// When (ms since the epoch; default now).
    #[serde(default)]
    pub ts: Option<i64>,
}

impl Feedback {
    pub(super) fn into_event(self) -> Result<(RawEvent, Option<String>)> {
        let item = self.item;
        let action = match self.kind {
            EventKind::View => Action::View {
                item,
                dwell_ms: self.value.map(|v| v as u32),
            },
            EventKind::Click => Action::Click { item },
            EventKind::Cart => Action::Cart {
                item,
                price: self.value,
            },
            EventKind::Purchase => Action::Purchase {
                item,
                price: self.value,
            },
            EventKind::Rating => Action::Rating {
                item,
                value: self
                    .value
                    .ok_or_else(|| Error::BadRequest("rating feedback needs a value".into()))?,
            },
            EventKind::Skip => Action::Skip { item },
            EventKind::Impression => {
                return Err(Error::BadRequest(
                    "impressions are logged by the engine, not sent as feedback".into(),
                ))
            }
        };
        Ok((
            RawEvent {
                user: self.user,
                ts: self.ts.unwrap_or_else(crate::store::now_ms),
                action,
            },
            self.request_id,
        ))
    }
}

/// The strategy in force and the weights the learner has set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StrategyView {
    /// Version in force.
    pub version: u64,
    /// The strategy as set.
    pub strategy: Strategy,
    /// Blend weights now (learned, within bounds).
    pub weights: SourceWeights,
}

/// What [`Engine::model_info`] reports of the serving model.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Model)]
pub struct ModelInfo {
    /// Model version (1 for the first loaded; every swap or fine-tune adds one).
    pub version: u64,
    /// The checkpoint's name (its directory's name).
    pub name: String,
    /// The checkpoint directory it came from.
    #[schema(value_type = String)]
    pub dir: PathBuf,
    /// The weights file serving (a fine-tuned one lies in the store's `finetuned/`).
    #[schema(value_type = String)]
    pub weights: PathBuf,
    /// Whether the weights come from background fine-tuning.
    pub fine_tuned: bool,
    /// Items the model knows.
    pub items: usize,
    /// Embedding width, blocks, heads and window of the model.
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_len: usize,
    /// Precision of the item table catalogue scoring reads (`f32`, `f16`, `bf16`, `int8`).
    #[schema(value_type = String, example = "f32")]
    pub score_dtype: crate::model::fast::ScoreDtype,
    /// Bytes per item of that table.
    pub scoring_bytes_per_item: usize,
    /// The graph index the model's candidates come from, on a catalogue of at least
    /// `ann_min_items` items (none: every item is scored per request).
    pub candidate_index: Option<CandidateIndexInfo>,
}

/// The graph index over a large catalogue's item table.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CandidateIndexInfo {
    /// `hnsw`.
    pub kind: String,
    /// Layers of the graph.
    pub layers: usize,
    /// How deep a request searches it (`ann_ef`).
    pub ef: usize,
    /// Bytes the graph holds (the item vectors are the model's own).
    pub bytes: usize,
    /// Seconds its build took.
    pub build_s: f64,
}
