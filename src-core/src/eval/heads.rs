//! What the task heads know (`attune eval --heads`): the AUC of the attention model's
//! `like` and `purchase` heads on each user's held-out target, beside the item's
//! popularity in the training view (the `pop` baseline) as a predictor of the same label.
//!
//! The engine blends the heads' probabilities into every slate (the `like` and `purchase`
//! sources); whether the learner should weigh them depends on whether they know more than
//! which items are popular. The labels are the ones the heads were trained on: `like` is a
//! rating at or above the model's threshold (targets that are ratings only), `purchase` is
//! a target whose deepest event was a purchase (data sets holding purchases only).

use serde::{Deserialize, Serialize};

use super::Holdout;
use crate::data::{Dataset, Seq};
use crate::error::Result;
use crate::event::EventKind;

/// One head's figures on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadAuc {
    /// The model (as named to `attune eval`).
    pub model: String,
    /// `like` or `purchase`.
    pub task: String,
    /// Held-out targets with a label (and an item the model knows).
    pub cases: usize,
    /// Of which positive.
    pub positives: usize,
    /// AUC of the head's logit (0.5: no better than chance).
    pub auc: f64,
    /// AUC of the item's popularity in the training view (the `pop` baseline's score:
    /// distinct users).
    pub popularity_auc: f64,
}

/// The area under the ROC curve of `scores` for `labels` (ties count half); `None` when
/// one class is empty.
pub fn auc(scored: &[(f32, bool)]) -> Option<f64> {
    let pos = scored.iter().filter(|s| s.1).count();
    let neg = scored.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut v: Vec<(f32, bool)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mann-Whitney: the sum of the positives' mid-ranks.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let mid = (i + j + 1) as f64 / 2.0; // ranks i+1..=j
        rank_sum += mid * v[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The heads' AUCs of `model` on `holdout`'s targets. `task_logits(histories, targets)`
/// gives each target's (like, purchase) logits, `None` where the model does not know it.
pub fn evaluate(
    dataset: &Dataset,
    holdout: &Holdout<'_>,
    model: &str,
    like_threshold: f32,
    task_logits: impl Fn(&[Seq<'_>], &[u32]) -> Result<Vec<Option<(f32, f32)>>>,
) -> Result<Vec<HeadAuc>> {
    let cases = holdout.cases();
    let histories: Vec<Seq<'_>> = cases.iter().map(|&c| holdout.history(c)).collect();
    let targets: Vec<u32> = cases.iter().map(|&c| holdout.target(c)).collect();
    let logits = task_logits(&histories, &targets)?;
    let pop = crate::baselines::Pop::fit(holdout.train());
    let popularity = pop.counts();
    let has_purchases = dataset
        .users
        .iter()
        .any(|u| u.kinds.contains(&EventKind::Purchase));
    let mut like = (Vec::new(), Vec::new());
    let mut buy = (Vec::new(), Vec::new());
    for ((case, target), l) in cases.iter().zip(&targets).zip(&logits) {
        let Some((like_logit, buy_logit)) = *l else {
            continue;
        };
        let u = &dataset.users[case.user];
        let pop = popularity[*target as usize];
        if u.kinds[case.pos] == EventKind::Rating {
            let y = u.values[case.pos] >= like_threshold;
            like.0.push((like_logit, y));
            like.1.push((pop, y));
        }
        if has_purchases {
            let y = u.kinds[case.pos] == EventKind::Purchase;
            buy.0.push((buy_logit, y));
            buy.1.push((pop, y));
        }
    }
    let mut out = Vec::new();
    for (task, (head, pop)) in [("like", like), ("purchase", buy)] {
        if let (Some(a), Some(p)) = (auc(&head), auc(&pop)) {
            out.push(HeadAuc {
                model: model.to_owned(),
                task: task.to_owned(),
                cases: head.len(),
                positives: head.iter().filter(|s| s.1).count(),
                auc: a,
                popularity_auc: p,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::auc;

    #[test]
    fn auc_counts_pairs_with_ties_half() {
        assert_eq!(auc(&[(1.0, false), (2.0, true)]), Some(1.0));
        assert_eq!(auc(&[(2.0, false), (1.0, true)]), Some(0.0));
        assert_eq!(auc(&[(1.0, false), (1.0, true)]), Some(0.5));
        // 3 positives, 2 negatives: pairs won 5, tied 1 of 6 → (5 + 0.5) / 6.
        let s = [
            (0.1, false),
            (0.5, true),
            (0.5, false),
            (0.9, true),
            (0.8, true),
        ];
        assert!((auc(&s).expect("auc") - 5.5 / 6.0).abs() < 1e-12);
        assert_eq!(auc(&[(1.0, true)]), None);
    }
}
