//! Whether one strategy really did better than another in a replay: the difference of
//! each ranking figure (HR, NDCG, MRR) and of the reward per ranking, with a 95%
//! confidence interval from a paired bootstrap over users (the same users, resampled
//! with replacement, for both strategies), and a one-line verdict. Coverage and latency
//! get no interval: they are not sums over users.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

/// Resamples of the bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// One user's sums in one strategy's replay.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UserSums {
    /// Positive events ranked.
    pub rankings: f64,
    pub hits: f64,
    pub ndcg: f64,
    pub mrr: f64,
    pub reward: f64,
}

/// Per-user sums of a strategy, by user.
pub type PerUser = BTreeMap<String, UserSums>;

/// One figure's difference between a strategy and the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// `hr`, `ndcg`, `mrr` or `reward_per_ranking`.
    pub metric: &'static str,
    pub baseline: f64,
    pub value: f64,
    /// `value - baseline`.
    pub diff: f64,
    /// 95% confidence interval of `diff`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Whether the interval leaves out 0.
    pub significant: bool,
}

/// A strategy against the baseline (the first strategy of the replay).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub baseline: String,
    pub strategy: String,
    /// Users in both replays.
    pub users: usize,
    pub differences: Vec<Difference>,
}

/// One figure's numerator of a user's sums (its denominator is the user's rankings).
type Numerator = fn(&UserSums) -> f64;

const METRICS: [(&str, Numerator); 4] = [
    ("hr", |u| u.hits),
    ("ndcg", |u| u.ndcg),
    ("mrr", |u| u.mrr),
    ("reward_per_ranking", |u| u.reward),
];

/// The ratio of sums of a metric over the users picked (`idx` into `pairs`).
fn ratio(
    pairs: &[(UserSums, UserSums)],
    idx: impl Iterator<Item = usize>,
    f: Numerator,
) -> (f64, f64) {
    let (mut na, mut da, mut nb, mut db) = (0.0, 0.0, 0.0, 0.0);
    for i in idx {
        let (a, b) = &pairs[i];
        na += f(a);
        da += a.rankings;
        nb += f(b);
        db += b.rankings;
    }
    (na / da.max(1.0), nb / db.max(1.0))
}

/// Compares `strategy` against `baseline` (paired over the users both replayed).
pub fn compare(baseline: (&str, &PerUser), strategy: (&str, &PerUser), seed: u64) -> Comparison {
    let pairs: Vec<(UserSums, UserSums)> = baseline
        .1
        .iter()
        .filter_map(|(u, a)| strategy.1.get(u).map(|b| (*a, *b)))
        .collect();
    let n = pairs.len();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut diffs: Vec<Vec<f64>> = vec![Vec::with_capacity(BOOTSTRAP_RESAMPLES); METRICS.len()];
    if n > 0 {
        let mut pick = vec![0usize; n];
        for _ in 0..BOOTSTRAP_RESAMPLES {
            pick.iter_mut().for_each(|p| *p = rng.gen_range(0..n));
            for (m, (_, f)) in METRICS.iter().enumerate() {
                let (a, b) = ratio(&pairs, pick.iter().copied(), *f);
                diffs[m].push(b - a);
            }
        }
    }
    let differences = METRICS
        .iter()
        .zip(&mut diffs)
        .map(|((metric, f), d)| {
            let (base, value) = ratio(&pairs, 0..n, *f);
            d.sort_by(f64::total_cmp);
            let at = |q: f64| -> f64 {
                if d.is_empty() {
                    0.0
                } else {
                    d[((d.len() - 1) as f64 * q).round() as usize]
                }
            };
            let (lo, hi) = (at(0.025), at(0.975));
            Difference {
                metric,
                baseline: base,
                value,
                diff: value - base,
                ci_low: lo,
                ci_high: hi,
                significant: lo > 0.0 || hi < 0.0,
            }
        })
        .collect();
    Comparison {
        baseline: baseline.0.to_string(),
        strategy: strategy.0.to_string(),
        users: n,
        differences,
    }
}

fn label(metric: &str, k: usize) -> String {
    match metric {
        "hr" => format!("HR@{k}"),
        "ndcg" => format!("NDCG@{k}"),
        "mrr" => "MRR".into(),
        _ => "reward per ranking".into(),
    }
}

/// The one-line verdict of the comparisons.
pub fn verdict(comparisons: &[Comparison], k: usize) -> String {
    if comparisons.is_empty() {
        return "One strategy replayed: nothing to compare.".into();
    }
    let lines: Vec<String> = comparisons
        .iter()
        .map(|c| {
            let fmt = |d: &Difference| {
                format!(
                    "{} {:+.4} (95% CI [{:+.4}, {:+.4}])",
                    label(d.metric, k),
                    d.diff,
                    d.ci_low,
                    d.ci_high
                )
            };
            let wins: Vec<String> = c
                .differences
                .iter()
                .filter(|d| d.significant && d.diff > 0.0)
                .map(fmt)
                .collect();
            let losses: Vec<String> = c
                .differences
                .iter()
                .filter(|d| d.significant && d.diff < 0.0)
                .map(fmt)
                .collect();
            let pair = format!("{} vs {}", c.strategy, c.baseline);
            match (wins.is_empty(), losses.is_empty()) {
                (true, true) => format!(
                    "{pair}: no difference beyond noise on HR, NDCG, MRR or reward ({} users)",
                    c.users
                ),
                (false, true) => format!("{}: {} wins on {}", pair, c.strategy, wins.join(", ")),
                (true, false) => format!("{}: {} loses on {}", pair, c.strategy, losses.join(", ")),
                (false, false) => format!(
                    "{}: mixed, {} wins on {} but loses on {}",
                    pair,
                    c.strategy,
                    wins.join(", "),
                    losses.join(", ")
                ),
            }
        })
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize, hit_rate: f64) -> PerUser {
        (0..n)
            .map(|i| {
                let hits = if (i as f64 / n as f64) < hit_rate {
                    1.0
                } else {
                    0.0
                };
                (
                    format!("u{i}"),
                    UserSums {
                        rankings: 1.0,
                        hits,
                        ndcg: hits * 0.5,
                        mrr: hits * 0.3,
                        reward: hits,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_strategy_against_itself_shows_no_difference() {
        let a = users(200, 0.4);
        let c = compare(("live", &a), ("live#2", &a), 7);
        for d in &c.differences {
            assert_eq!(d.diff, 0.0);
            assert!(d.ci_low <= 0.0 && d.ci_high >= 0.0);
            assert!(!d.significant);
        }
        assert!(verdict(&[c], 10).contains("no difference beyond noise"));
    }

    #[test]
    fn a_crippled_strategy_loses_beyond_noise() {
        let c = compare(
            ("live", &users(400, 0.5)),
            ("crippled", &users(400, 0.1)),
            7,
        );
        let hr = &c.differences[0];
        assert!((hr.diff + 0.4).abs() < 1e-9, "{hr:?}");
        assert!(hr.significant && hr.ci_high < 0.0, "{hr:?}");
        let v = verdict(&[c], 10);
        assert!(
            v.starts_with("crippled vs live: crippled loses on HR@10 -0.4000"),
            "{v}"
        );
    }
}
