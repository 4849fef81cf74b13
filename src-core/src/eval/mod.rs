//! The evaluation harness: the protocol of `docs/evaluation.md`, shared by every model.
//!
//! Leave-one-out over time: each kept user's last interaction is the test target, the one
//! before it the validation target. Models are fitted on every user's interactions before
//! their target only, see the full history before the target, and rank the whole
//! catalogue with the earlier history masked. The harness knows models only as
//! `&dyn Scorer` and a fit function, so new model kinds plug in without touching it.

pub mod cold;
pub mod heads;
pub mod metrics;

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::baselines::{self, Scorer, TrainSet};
use crate::data::{Dataset, Seq};
use crate::error::{Error, Result};
use crate::event::ItemId;

/// Users with fewer interactions than this are left out of training and evaluation.
pub const MIN_INTERACTIONS: usize = 3;

/// Which held-out item is the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The second-to-last interaction (for tuning); the last one is never seen.
    Validation,
    /// The last interaction.
    Test,
}

impl Split {
    /// Position of the target counted from the end of a history (1 = the last item).
    fn offset_from_end(self) -> usize {
        match self {
            Split::Validation => 2,
            Split::Test => 1,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Validation => "validation",
            Split::Test => "test",
        })
    }
}

impl FromStr for Split {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "validation" | "valid" | "val" => Ok(Split::Validation),
            "test" => Ok(Split::Test),
            _ => Err(Error::config(
                "split",
                format!("`{s}` is not one of: test, validation"),
            )),
        }
    }
}

/// One evaluated user: the target is `items[pos]`, the history `items[..pos]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// Index into [`Dataset::users`].
    pub user: usize,
    /// Position of the target in the user's history.
    pub pos: usize,
}

/// A data set cut for one split: the training view and the held-out targets.
#[derive(Debug, Clone)]
pub struct Holdout<'a> {
    dataset: &'a Dataset,
    split: Split,
    train: TrainSet<'a>,
    cases: Vec<Case>,
}

impl<'a> Holdout<'a> {
    /// Cuts `dataset` for `split`; fails with [`Error::EmptyData`] when no user has
    /// [`MIN_INTERACTIONS`] interactions.
    pub fn new(dataset: &'a Dataset, split: Split) -> Result<Self> {
        let mut cases = Vec::new();
        let mut train = Vec::new();
        for (user, history) in dataset.users.iter().enumerate() {
            if history.len() < MIN_INTERACTIONS {
                continue;
            }
            let pos = history.len() - split.offset_from_end();
            cases.push(Case { user, pos });
            train.push(history.prefix(pos));
        }
        if cases.is_empty() {
            return Err(Error::EmptyData(format!(
                "{}: no user has at least {MIN_INTERACTIONS} interactions",
                dataset.name
            )));
        }
        Ok(Holdout {
            dataset,
            split,
            train: TrainSet {
                n_items: dataset.n_items(),
                users: train,
            },
            cases,
        })
    }

    /// The split this holdout was cut for.
    pub fn split(&self) -> Split {
        self.split
    }

    /// What models are fitted on: each kept user's interactions before their target.
    pub fn train(&self) -> &TrainSet<'a> {
        &self.train
    }

    /// The evaluated users, in data set order.
    pub fn cases(&self) -> &[Case] {
        &self.cases
    }

    /// Catalogue size.
    pub fn n_items(&self) -> usize {
        self.dataset.n_items()
    }

    /// What the model sees for `case`: everything before the target.
    pub fn history(&self, case: Case) -> Seq<'a> {
        self.dataset.users[case.user].prefix(case.pos)
    }

    /// The held-out item of `case`.
    pub fn target(&self, case: Case) -> ItemId {
        self.dataset.users[case.user].items[case.pos]
    }
}

/// Ranking quality of one model on one holdout, averaged over its users.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of evaluated users.
    pub users: usize,
    /// Hit rate at K.
    pub hr: f64,
    /// NDCG at K.
    pub ndcg: f64,
    /// Mean reciprocal rank (no cut-off).
    pub mrr: f64,
    /// Share of the catalogue appearing in at least one user's top K.
    pub coverage: f64,
}

/// Users scored together in one [`Scorer::score_batch`] call.
const SCORE_CHUNK: usize = 64;

/// Ranks every holdout target under `scorer`, in parallel over chunks of users.
pub fn evaluate_scorer(holdout: &Holdout<'_>, scorer: &dyn Scorer, k: usize) -> Result<Metrics> {
    let n_items = holdout.n_items();
    let chunks: Vec<Vec<(usize, Vec<ItemId>)>> = holdout
        .cases
        .par_chunks(SCORE_CHUNK)
        .map_init(
            || (vec![0f32; n_items * SCORE_CHUNK], Vec::with_capacity(k)),
            |(buf, top), cases| -> Result<Vec<(usize, Vec<ItemId>)>> {
                let histories: Vec<_> = cases.iter().map(|&c| holdout.history(c)).collect();
                let buf = &mut buf[..n_items * cases.len()];
                scorer.score_batch(&histories, buf)?;
                Ok(cases
                    .iter()
                    .zip(buf.chunks_mut(n_items))
                    .map(|(&case, scores)| {
                        let history = holdout.history(case);
                        let target = holdout.target(case);
                        metrics::mask_history(scores, history.items, target);
                        let rank = metrics::rank_of(scores, target);
                        metrics::top_k_into(scores, k, top);
                        (rank, top.iter().map(|&(_, item)| item).collect())
                    })
                    .collect())
            },
        )
        .collect::<Result<_>>()?;
    let per_user: Vec<(usize, Vec<ItemId>)> = chunks.into_iter().flatten().collect();

    let mut recommended = vec![false; n_items];
    let (mut hr, mut ndcg, mut mrr) = (0.0, 0.0, 0.0);
    for (rank, top) in &per_user {
        hr += metrics::hit_at(*rank, k);
        ndcg += metrics::ndcg_at(*rank, k);
        mrr += metrics::reciprocal_rank(*rank);
        for &item in top {
            recommended[item as usize] = true;
        }
    }
    let users = per_user.len();
    let n = users.max(1) as f64;
    Ok(Metrics {
        users,
        hr: hr / n,
        ndcg: ndcg / n,
        mrr: mrr / n,
        coverage: metrics::coverage(&recommended),
    })
}

/// The result of `attune eval`: one row per model. The JSON field names are a contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The data set's name.
    pub dataset: String,
    /// Number of evaluated users.
    pub users: usize,
    /// Catalogue size.
    pub items: usize,
    /// The cut-off of HR@K, NDCG@K and coverage.
    pub k: usize,
    /// One entry per model, in the order asked for.
    pub results: Vec<ModelResult>,
    /// A cold-start evaluation's cold items (`attune eval --cold-items`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold: Option<cold::ColdInfo>,
    /// What the attention models' task heads know (`attune eval --heads`); absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<Vec<heads::HeadAuc>>,
}

/// One model's row of an [`EvalReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// The model's name as asked for.
    pub model: String,
    /// Hit rate at K.
    pub hr: f64,
    /// NDCG at K.
    pub ndcg: f64,
    /// Mean reciprocal rank.
    pub mrr: f64,
    /// Share of the catalogue in at least one top K.
    pub coverage: f64,
    /// Wall time of fitting plus ranking, in seconds.
    pub seconds: f64,
}

impl EvalReport {
    /// A human-readable table, one aligned row per model.
    pub fn to_table(&self) -> String {
        let width = self
            .results
            .iter()
            .map(|r| r.model.len())
            .chain(["model".len()])
            .max()
            .unwrap_or(0);
        let k = self.k;
        let mut table = format!(
            "{}: {} users, {} items\n",
            self.dataset, self.users, self.items
        );
        let (hr, ndcg) = (format!("HR@{k}"), format!("NDCG@{k}"));
        // Writing into a String cannot fail.
        let _ = writeln!(
            table,
            "{:<width$}  {hr:>8}  {ndcg:>8}  {:>8}  {:>8}  {:>8}",
            "model", "MRR", "coverage", "seconds"
        );
        for r in &self.results {
            let _ = writeln!(
                table,
                "{:<width$}  {:>8.4}  {:>8.4}  {:>8.4}  {:>8.4}  {:>8.2}",
                r.model, r.hr, r.ndcg, r.mrr, r.coverage, r.seconds
            );
        }
        for h in self.heads.iter().flatten() {
            let _ = writeln!(
                table,
                "{} {} head: AUC {:.4} (item popularity {:.4}) over {} targets, {} positive",
                h.model, h.task, h.auc, h.popularity_auc, h.cases, h.positives
            );
        }
        table
    }
}

/// Evaluates the named baselines (see [`baselines::MODEL_NAMES`]) on `dataset`.
pub fn evaluate(
    dataset: &Dataset,
    models: &[String],
    k: usize,
    split: Split,
) -> Result<EvalReport> {
    evaluate_with(dataset, models, k, split, baselines::fit)
}

/// Evaluates models made by `fit(name, train)`, timing each fit plus its ranking.
///
/// This is the plug-in point for model kinds beyond the baselines: pass a function that
/// recognises their names and falls back to [`baselines::fit`].
pub fn evaluate_with<F>(
    dataset: &Dataset,
    models: &[String],
    k: usize,
    split: Split,
    fit: F,
) -> Result<EvalReport>
where
    F: Fn(&str, &TrainSet<'_>) -> Result<Box<dyn Scorer>>,
{
    if k == 0 {
        return Err(Error::config("k", "must be at least 1"));
    }
    if models.is_empty() {
        return Err(Error::config("models", "name at least one model"));
    }
    let holdout = Holdout::new(dataset, split)?;
    tracing::info!(
        dataset = %dataset.name,
        users = holdout.cases().len(),
        items = dataset.n_items(),
        %split,
        k,
        "evaluating"
    );
    let mut results = Vec::with_capacity(models.len());
    for name in models {
        let start = Instant::now();
        let scorer = fit(name, holdout.train())?;
        let fitted = start.elapsed().as_secs_f64();
        let m = evaluate_scorer(&holdout, scorer.as_ref(), k)?;
        let seconds = start.elapsed().as_secs_f64();
        tracing::info!(
            model = %name,
            hr = m.hr,
            ndcg = m.ndcg,
            mrr = m.mrr,
            coverage = m.coverage,
            fit_seconds = fitted,
            seconds,
            "evaluated"
        );
        results.push(ModelResult {
            model: name.clone(),
            hr: m.hr,
            ndcg: m.ndcg,
            mrr: m.mrr,
            coverage: m.coverage,
            seconds,
        });
    }
    Ok(EvalReport {
        dataset: dataset.name.clone(),
        users: holdout.cases().len(),
        items: dataset.n_items(),
        k,
        results,
        cold: None,
        heads: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetBuilder;
    use crate::event::EventKind;

    /// Builds a data set from `(user, [items in time order])`.
    fn dataset(rows: &[(&str, &[&str])]) -> Dataset {
        let mut b = DatasetBuilder::new("tiny");
        for (user, items) in rows {
            for (t, item) in items.iter().enumerate() {
                b.push(user, item, t as i64, EventKind::View, 0.0);
            }
        }
        b.finish()
    }

    /// Scores every item with fixed values, whatever the history.
    struct Fixed(Vec<f32>);

    impl Scorer for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn score(&self, _history: Seq<'_>, out: &mut [f32]) {
            out.copy_from_slice(&self.0);
        }
    }

    fn id(d: &Dataset, name: &str) -> usize {
        d.item_names
            .iter()
            .position(|n| n == name)
            .expect("known item")
    }

    #[test]
    fn short_users_are_left_out() {
        let d = dataset(&[("a", &["x", "y"]), ("b", &["x", "y", "z"]), ("c", &["z"])]);
        let h = Holdout::new(&d, Split::Test).expect("one user kept");
        assert_eq!(h.cases(), &[Case { user: 1, pos: 2 }]);
        assert_eq!(h.train().users.len(), 1);
        let short = dataset(&[("a", &["x", "y"])]);
        assert!(matches!(
            Holdout::new(&short, Split::Test),
            Err(Error::EmptyData(_))
        ));
    }

    #[test]
    fn targets_never_leak_into_training() {
        let d = dataset(&[
            ("a", &["p", "q", "v1", "t1"]),
            ("b", &["q", "r", "v2", "t2"]),
            ("c", &["p", "r", "v3", "t3"]),
        ]);
        for split in [Split::Test, Split::Validation] {
            let h = Holdout::new(&d, split).expect("users kept");
            for (case, seq) in h.cases().iter().zip(&h.train().users) {
                let user = &d.users[case.user];
                assert_eq!(seq.items, &user.items[..case.pos]);
                assert_eq!(h.history(*case).items, seq.items);
            }
            let held_out: Vec<ItemId> = d
                .users
                .iter()
                .flat_map(|u| u.items[u.len() - split.offset_from_end()..].to_vec())
                .collect();
            let report = evaluate_with(&d, &["spy".to_owned()], 2, split, |_, train| {
                for seq in &train.users {
                    assert!(seq.items.iter().all(|i| !held_out.contains(i)));
                }
                baselines::fit("pop", train)
            })
            .expect("evaluates");
            assert_eq!(report.users, 3);
        }
    }

    #[test]
    fn ranks_with_masking_and_ties() {
        // One user: history x, y, then target z. Catalogue x, y, z, w.
        let d = dataset(&[("u", &["x", "y", "z"]), ("v", &["w"])]);
        let h = Holdout::new(&d, Split::Test).expect("kept");
        let (x, y, z, w) = (id(&d, "x"), id(&d, "y"), id(&d, "z"), id(&d, "w"));
        let with = |pairs: &[(usize, f32)]| {
            let mut s = vec![0.0; 4];
            for &(i, v) in pairs {
                s[i] = v;
            }
            Fixed(s)
        };
        // History items outscoring the target are masked: rank 0.
        let m = evaluate_scorer(&h, &with(&[(x, 9.0), (y, 8.0), (z, 1.0)]), 1).expect("scores");
        assert_eq!((m.hr, m.ndcg, m.mrr), (1.0, 1.0, 1.0));
        // An unseen item higher: rank 1.
        let m = evaluate_scorer(&h, &with(&[(w, 2.0), (z, 1.0)]), 1).expect("scores");
        assert_eq!((m.hr, m.mrr), (0.0, 0.5));
        let m = evaluate_scorer(&h, &with(&[(w, 2.0), (z, 1.0)]), 2).expect("scores");
        assert!((m.ndcg - 1.0 / 3f64.log2()).abs() < 1e-12);
        // A tie is not higher.
        let m = evaluate_scorer(&h, &with(&[(w, 1.0), (z, 1.0)]), 1).expect("scores");
        assert_eq!(m.hr, 1.0);
        // Coverage counts what reached a top K: one of the tied w, z at K = 1.
        assert_eq!(m.coverage, 0.25);
    }

    #[test]
    fn the_target_is_not_masked_when_seen_before() {
        let d = dataset(&[("u", &["z", "x", "z"]), ("v", &["w"])]);
        let h = Holdout::new(&d, Split::Test).expect("kept");
        let mut s = vec![0.0; 3];
        s[id(&d, "z")] = 5.0;
        s[id(&d, "w")] = 4.0;
        let m = evaluate_scorer(&h, &Fixed(s), 1).expect("scores");
        assert_eq!(m.hr, 1.0);
    }

    #[test]
    fn validation_targets_the_second_to_last() {
        let d = dataset(&[("u", &["x", "y", "z"])]);
        let h = Holdout::new(&d, Split::Validation).expect("kept");
        let case = h.cases()[0];
        assert_eq!(d.item_names[h.target(case) as usize], "y");
        assert_eq!(h.history(case).items.len(), 1);
        assert_eq!(
            "validation".parse::<Split>().expect("parses"),
            Split::Validation
        );
        assert!("train".parse::<Split>().is_err());
    }

    #[test]
    fn reports_render_and_serialize() {
        let d = dataset(&[("u", &["x", "y", "z"]), ("v", &["x", "z", "y"])]);
        let models: Vec<String> = baselines::MODEL_NAMES
            .iter()
            .map(|&m| m.to_owned())
            .collect();
        let report = evaluate(&d, &models, 10, Split::Test).expect("evaluates");
        assert_eq!(report.results.len(), models.len());
        let table = report.to_table();
        assert!(table.contains("NDCG@10") && table.contains("pop-recent"));
        let json = serde_json::to_value(&report).expect("serializes");
        for field in ["model", "hr", "ndcg", "mrr", "coverage", "seconds"] {
            assert!(json["results"][0].get(field).is_some(), "{field}");
        }
        for field in ["dataset", "users", "items", "k"] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(evaluate(&d, &["nope".to_owned()], 10, Split::Test).is_err());
        assert!(evaluate(&d, &models, 0, Split::Test).is_err());
    }
}
