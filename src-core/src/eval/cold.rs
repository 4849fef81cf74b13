//! Cold-start evaluation (`attune eval --cold-items FRACTION`): how well a model ranks
//! items that nobody has interacted with yet, the case interaction models cannot serve.
//!
//! A seeded FRACTION of the catalogue becomes cold: every interaction with a cold item is
//! removed from what models are fitted on. Each user with at least one interaction with a
//! cold item and at least [`MIN_WARM`] warm interactions before it is a case: the target
//! is their first cold interaction, the history their (warm) interactions before it. The
//! target is ranked among all cold items; its rank is the number of cold items scoring
//! strictly higher plus half the other cold items scoring the same, rounded down, so that
//! a model with many tied scores is not flattered. Models: `text` (the user's text
//! profile against the items' text vectors), `random` (its expectation, computed
//! exactly), `tag-overlap` (Jaccard of the item's tags with the history's tags) and
//! `blend` (the engine's default weights over its sources fitted on the warm data, plus
//! the text source).

use std::collections::HashSet;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::metrics;
use super::{EvalReport, ModelResult};
use crate::baselines::{self, TrainSet};
use crate::data::{Dataset, Seq, UserHistory};
use crate::engine::strategy::SourceWeights;
use crate::error::{Error, Result};
use crate::event::ItemId;
use crate::text::TextTable;

/// Warm interactions a user needs before their first cold one to be a case.
pub const MIN_WARM: usize = 3;
/// The models a cold-start evaluation knows.
pub const COLD_MODELS: &[&str] = &["text", "random", "tag-overlap", "blend"];

/// What a cold-start evaluation was asked for; part of its report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColdOptions {
    /// Share of the catalogue made cold, in `(0, 1)`.
    pub fraction: f64,
    /// Seed of the choice of cold items.
    pub seed: u64,
}

/// The cold half of a report: which items were cold, and how many warm items remained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdInfo {
    /// Share of the catalogue made cold.
    pub fraction: f64,
    /// Seed of the choice.
    pub seed: u64,
    /// Cold items (the ranked set).
    pub cold_items: usize,
    /// Warm items.
    pub warm_items: usize,
}

/// A data set cut for cold-start evaluation.
#[derive(Debug)]
pub struct ColdSplit<'a> {
    dataset: &'a Dataset,
    options: ColdOptions,
    cold: Vec<bool>,
    cold_items: Vec<ItemId>,
    warm: Dataset,
    /// (user, position of the first cold interaction).
    cases: Vec<(usize, usize)>,
}

impl<'a> ColdSplit<'a> {
    /// Chooses the cold items and the cases; fails on a fraction outside `(0, 1)` or when
    /// no user qualifies.
    pub fn new(dataset: &'a Dataset, options: ColdOptions) -> Result<Self> {
        let f = options.fraction;
        if !(f > 0.0 && f < 1.0) {
            return Err(Error::config(
                "cold-items",
                format!("{f} is not a fraction between 0 and 1 (exclusive), e.g. 0.2"),
            ));
        }
        let n = dataset.n_items();
        let n_cold = ((n as f64 * f).round() as usize).clamp(1, n.saturating_sub(1).max(1));
        let mut ids: Vec<ItemId> = (0..n as ItemId).collect();
        ids.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(options.seed));
        let mut cold_items = ids[..n_cold].to_vec();
        cold_items.sort_unstable();
        let mut cold = vec![false; n];
        for &c in &cold_items {
            cold[c as usize] = true;
        }
        let mut cases = Vec::new();
        let mut warm_users = Vec::with_capacity(dataset.users.len());
        for (u, h) in dataset.users.iter().enumerate() {
            if let Some(pos) = h.items.iter().position(|&i| cold[i as usize]) {
                if pos >= MIN_WARM {
                    cases.push((u, pos));
                }
            }
            warm_users.push(without(h, &cold));
        }
        if cases.is_empty() {
            return Err(Error::EmptyData(format!(
                "{}: no user has a cold interaction after {MIN_WARM} warm ones \
                 ({n_cold} cold items of {n}); try a larger --cold-items",
                dataset.name
            )));
        }
        let warm = Dataset {
            name: dataset.name.clone(),
            item_names: dataset.item_names.clone(),
            users: warm_users,
            item_info: dataset.item_info.clone(),
        };
        Ok(ColdSplit {
            dataset,
            options,
            cold,
            cold_items,
            warm,
            cases,
        })
    }

    /// The cold items, in id order.
    pub fn cold_items(&self) -> &[ItemId] {
        &self.cold_items
    }

    /// Whether `item` is cold.
    pub fn is_cold(&self, item: ItemId) -> bool {
        self.cold[item as usize]
    }

    /// What models are fitted on: every interaction with a warm item.
    pub fn warm(&self) -> &Dataset {
        &self.warm
    }

    /// The evaluated users as (history, target).
    pub fn cases(&self) -> impl Iterator<Item = (Seq<'a>, ItemId)> + '_ {
        self.cases.iter().map(|&(u, pos)| {
            let h = &self.dataset.users[u];
            (h.prefix(pos), h.items[pos])
        })
    }

    /// Number of evaluated users.
    pub fn n_cases(&self) -> usize {
        self.cases.len()
    }
}

/// `h` with every interaction with a cold item removed.
fn without(h: &UserHistory, cold: &[bool]) -> UserHistory {
    let mut out = UserHistory {
        name: h.name.clone(),
        ..UserHistory::default()
    };
    for j in 0..h.len() {
        if !cold[h.items[j] as usize] {
            out.items.push(h.items[j]);
            out.ts.push(h.ts[j]);
            out.kinds.push(h.kinds[j]);
            out.values.push(h.values[j]);
        }
    }
    out
}

/// Fills a score per item id for a history (only the cold items' scores are read).
type ColdScorer<'s> = Box<dyn FnMut(Seq<'_>, &mut [f32]) + 's>;

/// The rank of `target` among `cold` items under `scores` (indexed by item id): those
/// scoring strictly higher plus half the others scoring the same, rounded down.
pub fn cold_rank(scores: &[f32], cold: &[ItemId], target: ItemId) -> usize {
    let t = scores[target as usize];
    let t = if t.is_nan() { f32::NEG_INFINITY } else { t };
    let (mut higher, mut equal) = (0, 0);
    for &c in cold {
        if c == target {
            continue;
        }
        let s = scores[c as usize];
        if s > t {
            higher += 1;
        } else if s == t {
            equal += 1;
        }
    }
    higher + equal / 2
}

/// The expected metrics of a uniformly random ranking of `n` items for `users` users.
fn random_expectation(n: usize, users: usize, k: usize) -> (f64, f64, f64, f64) {
    let nf = n as f64;
    let hr = k.min(n) as f64 / nf;
    let ndcg = (0..k.min(n)).map(|r| metrics::ndcg_at(r, k)).sum::<f64>() / nf;
    let mrr = (0..n).map(metrics::reciprocal_rank).sum::<f64>() / nf;
    // An item is in a given user's top k with probability k/n, independently per user.
    let coverage = 1.0 - (1.0 - hr).powi(users as i32);
    (hr, ndcg, mrr, coverage)
}

/// The Jaccard similarity of `item`'s tags with the tag set `history`.
fn jaccard(item: &[String], history: &HashSet<&str>) -> f32 {
    if item.is_empty() || history.is_empty() {
        return 0.0;
    }
    let inter = item.iter().filter(|t| history.contains(t.as_str())).count();
    let union = history.len() + item.len() - inter;
    inter as f32 / union as f32
}

/// Evaluates `models` (from [`COLD_MODELS`]) on `split`; `text` holds the items' text
/// vectors, needed by `text` and `blend`.
pub fn evaluate_cold(
    split: &ColdSplit<'_>,
    models: &[String],
    k: usize,
    text: Option<&TextTable>,
) -> Result<EvalReport> {
    if k == 0 {
        return Err(Error::config("k", "must be at least 1"));
    }
    let cold = split.cold_items();
    let n = split.dataset.n_items();
    let users = split.n_cases();
    let mut results = Vec::with_capacity(models.len());
    for name in models {
        let start = Instant::now();
        let row = |hr: f64, ndcg: f64, mrr: f64, coverage: f64| ModelResult {
            model: name.clone(),
            hr,
            ndcg,
            mrr,
            coverage,
            seconds: start.elapsed().as_secs_f64(),
        };
        if name == "random" {
            let (hr, ndcg, mrr, cov) = random_expectation(cold.len(), users, k);
            results.push(row(hr, ndcg, mrr, cov));
            continue;
        }
        let need_text = || {
            text.ok_or_else(|| {
                Error::config(
                    "encoder",
                    format!("model `{name}` needs the items' text vectors: pass --encoder DIR"),
                )
            })
        };
        let mut scores = vec![0f32; n];
        let mut fill: ColdScorer<'_> = match name.as_str() {
            "text" => {
                let table = need_text()?;
                Box::new(
                    move |h: Seq<'_>, out: &mut [f32]| match table.profile(h.items) {
                        Some(p) => table.score_all(&p, out),
                        None => out.fill(0.0),
                    },
                )
            }
            "tag-overlap" => {
                let info = &split.dataset.item_info;
                Box::new(move |h: Seq<'_>, out: &mut [f32]| {
                    let tags: HashSet<&str> = h
                        .items
                        .iter()
                        .flat_map(|&i| info[i as usize].tags.iter().map(String::as_str))
                        .collect();
                    for &c in cold {
                        out[c as usize] = jaccard(&info[c as usize].tags, &tags);
                    }
                })
            }
            "blend" => blend_scorer(split, text)?,
            other => {
                return Err(Error::UnknownModel {
                    name: other.to_owned(),
                    known: COLD_MODELS.join(", "),
                })
            }
        };
        let mut recommended = vec![false; n];
        let (mut hr, mut ndcg, mut mrr) = (0.0, 0.0, 0.0);
        let mut order: Vec<(f32, ItemId)> = Vec::with_capacity(cold.len());
        for (history, target) in split.cases() {
            fill(history, &mut scores);
            let rank = cold_rank(&scores, cold, target);
            hr += metrics::hit_at(rank, k);
            ndcg += metrics::ndcg_at(rank, k);
            mrr += metrics::reciprocal_rank(rank);
            order.clear();
            order.extend(cold.iter().map(|&c| (scores[c as usize], c)));
            let top = k.min(order.len());
            order.select_nth_unstable_by(top - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, c) in &order[..top] {
                recommended[c as usize] = true;
            }
        }
        let u = users.max(1) as f64;
        let covered = cold.iter().filter(|&&c| recommended[c as usize]).count();
        results.push(row(
            hr / u,
            ndcg / u,
            mrr / u,
            covered as f64 / cold.len() as f64,
        ));
    }
    Ok(EvalReport {
        dataset: format!(
            "{} (cold items {:.0}%, seed {})",
            split.dataset.name,
            split.options.fraction * 100.0,
            split.options.seed
        ),
        users,
        items: cold.len(),
        k,
        results,
        heads: None,
        cold: Some(ColdInfo {
            fraction: split.options.fraction,
            seed: split.options.seed,
            cold_items: cold.len(),
            warm_items: n - cold.len(),
        }),
    })
}

/// The engine's blend on the cold set: its default weights over popularity, item-kNN and
/// transitions fitted on the warm data (each scaled by its largest score over the
/// catalogue) and the text source. Cold items have no interactions, so only the text
/// source can tell them apart; the row shows that the blend keeps what text finds.
fn blend_scorer<'s>(
    split: &'s ColdSplit<'_>,
    text: Option<&'s TextTable>,
) -> Result<ColdScorer<'s>> {
    let w = SourceWeights::default();
    let train = TrainSet::from_dataset(split.warm());
    let fitted: Vec<(f32, Box<dyn baselines::Scorer>)> =
        [("pop", w.pop), ("itemknn", w.itemknn), ("markov", w.markov)]
            .into_iter()
            .map(|(name, weight)| Ok((weight, baselines::fit(name, &train)?)))
            .collect::<Result<_>>()?;
    let n = split.dataset.n_items();
    let mut buf = vec![0f32; n];
    Ok(Box::new(move |h: Seq<'_>, out: &mut [f32]| {
        out.fill(0.0);
        for (weight, model) in &fitted {
            model.score(h, &mut buf);
            let max = buf.iter().copied().fold(0f32, f32::max);
            if max > 0.0 {
                for (o, s) in out.iter_mut().zip(&buf) {
                    *o += weight * s.max(0.0) / max;
                }
            }
        }
        if let Some(table) = text {
            if let Some(p) = table.profile(h.items) {
                for (i, o) in out.iter_mut().enumerate() {
                    *o += crate::text::DEFAULT_WEIGHT
                        * crate::text::feature(table.score(&p, i as ItemId));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetBuilder;
    use crate::event::{EventKind, Item};

    /// 40 items in two categories (`a` even ids, `b` odd) and 30 users, each clicking
    /// through items of one category only. The answer is known: a user's text profile or
    /// tags point at their category, so a cold target ties with the other cold items of
    /// its category and beats the rest.
    fn two_categories() -> Dataset {
        let mut b = DatasetBuilder::new("two categories");
        for i in 0..40 {
            b.describe(Item {
                id: format!("i{i}"),
                title: format!("item {i}"),
                tags: vec![if i % 2 == 0 { "a" } else { "b" }.into()],
                ..Item::default()
            });
        }
        for u in 0..30usize {
            let cat = u % 2;
            for step in 0..12usize {
                let item = 2 * ((u * 7 + step * 3) % 20) + cat;
                b.push(
                    &format!("u{u}"),
                    &format!("i{item}"),
                    step as i64,
                    EventKind::Click,
                    0.0,
                );
            }
        }
        b.finish()
    }

    /// Category vectors: e1 for `a`, e2 for `b`.
    fn table(d: &Dataset) -> TextTable {
        let mut t = TextTable::new(2);
        for (i, info) in d.item_info.iter().enumerate() {
            let v = if info.tags[0] == "a" {
                [1.0, 0.0]
            } else {
                [0.0, 1.0]
            };
            t.set(i as ItemId, &v);
        }
        t
    }

    fn names(models: &[&str]) -> Vec<String> {
        models.iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn the_known_answer_is_found() {
        let d = two_categories();
        let split = ColdSplit::new(
            &d,
            ColdOptions {
                fraction: 0.5,
                seed: 7,
            },
        )
        .expect("split");
        let cold = split.cold_items().to_vec();
        assert_eq!(cold.len(), 20);
        // Nothing cold is fitted on.
        for h in &split.warm().users {
            assert!(h.items.iter().all(|&i| !split.is_cold(i)));
        }
        // Expected: the target ties with the other cold items of its category.
        let cat = |i: ItemId| d.item_info[i as usize].tags[0].clone();
        let k = 3;
        let (mut hr, mut users) = (0.0, 0);
        for (history, target) in split.cases() {
            assert!(history.items.len() >= MIN_WARM);
            assert!(history.items.iter().all(|&i| !split.is_cold(i)));
            let same = cold
                .iter()
                .filter(|&&c| c != target && cat(c) == cat(target))
                .count();
            hr += metrics::hit_at(same / 2, k);
            users += 1;
        }
        let t = table(&d);
        let report = evaluate_cold(&split, &names(COLD_MODELS), k, Some(&t)).expect("evaluates");
        assert_eq!(report.users, users);
        assert_eq!(report.items, 20);
        let row = |m: &str| report.results.iter().find(|r| r.model == m).expect("row");
        for m in ["text", "tag-overlap", "blend"] {
            assert!((row(m).hr - hr / users as f64).abs() < 1e-12, "{m}");
        }
        assert!((row("random").hr - 3.0 / 20.0).abs() < 1e-12);
        let ndcg: f64 = (0..3).map(|r| metrics::ndcg_at(r, 3)).sum::<f64>() / 20.0;
        assert!((row("random").ndcg - ndcg).abs() < 1e-12);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["cold"]["cold_items"], 20);
        assert_eq!(json["results"][0]["model"], "text");
    }

    #[test]
    fn ties_count_half() {
        let scores = [1.0, 1.0, 1.0, 1.0, 2.0];
        // Target 0 among cold {0, 1, 2, 3, 4}: one higher, three tied: 1 + 3 / 2 = 2.
        assert_eq!(cold_rank(&scores, &[0, 1, 2, 3, 4], 0), 2);
        assert_eq!(cold_rank(&scores, &[0, 4], 4), 0);
        assert_eq!(cold_rank(&[f32::NAN, 0.0], &[0, 1], 0), 1);
    }

    #[test]
    fn bad_requests_are_clear_errors() {
        let d = two_categories();
        for f in [0.0, 1.0, -0.5, f64::NAN] {
            let err = ColdSplit::new(
                &d,
                ColdOptions {
                    fraction: f,
                    seed: 0,
                },
            )
            .expect_err("bad");
            assert!(err.to_string().contains("cold-items"), "{err}");
        }
        let split = ColdSplit::new(
            &d,
            ColdOptions {
                fraction: 0.3,
                seed: 1,
            },
        )
        .expect("split");
        let err = evaluate_cold(&split, &names(&["text"]), 10, None).expect_err("no text");
        assert!(err.to_string().contains("--encoder"), "{err}");
        let err = evaluate_cold(&split, &names(&["pop"]), 10, None).expect_err("not cold");
        assert!(err.to_string().contains("tag-overlap"), "{err}");
        assert!(evaluate_cold(&split, &names(&["random"]), 0, None).is_err());
        // Two users with two warm interactions each: nobody qualifies.
        let mut b = DatasetBuilder::new("short");
        for (u, items) in [("x", ["p", "q", "r"]), ("y", ["q", "p", "r"])] {
            for (t, i) in items.iter().enumerate() {
                b.push(u, i, t as i64, EventKind::Click, 0.0);
            }
        }
        let short = b.finish();
        assert!(matches!(
            ColdSplit::new(
                &short,
                ColdOptions {
                    fraction: 0.34,
                    seed: 0
                }
            ),
            Err(Error::EmptyData(_))
        ));
    }

    #[test]
    fn the_same_seed_picks_the_same_items() {
        let d = two_categories();
        let pick = |seed| {
            ColdSplit::new(
                &d,
                ColdOptions {
                    fraction: 0.25,
                    seed,
                },
            )
            .expect("split")
            .cold_items()
            .to_vec()
        };
        assert_eq!(pick(3), pick(3));
        assert_ne!(pick(3), pick(4));
    }
}
