//! Ranking metrics as free functions over a full score vector, so every model and every
//! report computes them the same way (see "Evaluation protocol" in the design brief).

use crate::event::ItemId;

/// Number of items scoring strictly higher than `target`; ties do not count.
///
/// A NaN target score ranks below everything; NaN scores of other items never count.
pub fn rank_of(scores: &[f32], target: ItemId) -> usize {
    let t = scores[target as usize];
    let t = if t.is_nan() { f32::NEG_INFINITY } else { t };
    scores.iter().filter(|&&s| s > t).count()
}

/// Hides the items of `history` from the ranking (score `-inf`), except `target` itself.
pub fn mask_history(scores: &mut [f32], history: &[ItemId], target: ItemId) {
    for &item in history {
        if item != target {
            scores[item as usize] = f32::NEG_INFINITY;
        }
    }
}

/// 1 when the target is within the top `k`, else 0.
pub fn hit_at(rank: usize, k: usize) -> f64 {
    if rank < k {
        1.0
    } else {
        0.0
    }
}

/// `1 / log2(rank + 2)` when the target is within the top `k`, else 0 (one relevant item).
pub fn ndcg_at(rank: usize, k: usize) -> f64 {
    if rank < k {
        1.0 / ((rank + 2) as f64).log2()
    } else {
        0.0
    }
}

/// `1 / (rank + 1)`.
pub fn reciprocal_rank(rank: usize) -> f64 {
    1.0 / (rank + 1) as f64
}

/// The `k` best items into `out`, best first; ties go to the lower id, and items scored
/// `-inf` (masked) or NaN are never recommended. `out` is cleared first.
pub fn top_k_into(scores: &[f32], k: usize, out: &mut Vec<(f32, ItemId)>) {
    out.clear();
    if k == 0 {
        return;
    }
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() || s == f32::NEG_INFINITY {
            continue;
        }
        if out.len() == k && s <= out[k - 1].0 {
            continue;
        }
        // Earlier (lower-id) items with an equal score stay ahead.
        let at = out.partition_point(|&(o, _)| o >= s);
        out.insert(at, (s, i as ItemId));
        out.truncate(k);
    }
}

/// Share of the catalogue that was recommended at least once.
pub fn coverage(recommended: &[bool]) -> f64 {
    if recommended.is_empty() {
        return 0.0;
    }
    recommended.iter().filter(|&&r| r).count() as f64 / recommended.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_are_not_higher() {
        let scores = [1.0, 3.0, 2.0, 2.0, f32::NAN];
        assert_eq!(rank_of(&scores, 1), 0);
        assert_eq!(rank_of(&scores, 2), 1);
        assert_eq!(rank_of(&scores, 3), 1);
        assert_eq!(rank_of(&scores, 0), 3);
        assert_eq!(rank_of(&scores, 4), 4);
    }

    #[test]
    fn masking_spares_the_target() {
        let mut scores = [5.0, 4.0, 3.0, 2.0];
        mask_history(&mut scores, &[0, 2, 2], 2);
        assert_eq!(scores, [f32::NEG_INFINITY, 4.0, 3.0, 2.0]);
        assert_eq!(rank_of(&scores, 2), 1);
    }

    #[test]
    fn metric_values() {
        assert_eq!(hit_at(9, 10), 1.0);
        assert_eq!(hit_at(10, 10), 0.0);
        assert_eq!(ndcg_at(0, 10), 1.0);
        assert!((ndcg_at(2, 10) - 0.5).abs() < 1e-12);
        assert_eq!(ndcg_at(10, 10), 0.0);
        assert_eq!(reciprocal_rank(3), 0.25);
        assert_eq!(coverage(&[true, false, true, false]), 0.5);
        assert_eq!(coverage(&[]), 0.0);
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_id() {
        let scores = [1.0, 3.0, f32::NEG_INFINITY, 3.0, f32::NAN, 2.0];
        let mut out = Vec::new();
        top_k_into(&scores, 3, &mut out);
        assert_eq!(out, vec![(3.0, 1), (3.0, 3), (2.0, 5)]);
        top_k_into(&scores, 10, &mut out);
        assert_eq!(
            out.iter().map(|&(_, i)| i).collect::<Vec<_>>(),
            vec![1, 3, 5, 0]
        );
        top_k_into(&scores, 0, &mut out);
        assert!(out.is_empty());
    }
}
