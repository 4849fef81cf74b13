//! Ranking one request: candidates from the model's best logits, transitions and
//! co-occurrence of the user's last items, and popularity; each candidate's features (the
//! model's task scores and the baselines', normalised); exploration; and the blend by the
//! strategy's weights, with the task heads computed only while a candidate can still
//! reach the top k.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::reply::{Scored, ScoredItem};
use super::sources::{SourceSnapshot, KNN_HISTORY, MARKOV_WEIGHTS};
use super::strategy::{Exploration, N_SOURCES, TEXT};
use super::{Catalog, LiveStrategy, ModelSlot};
use crate::event::ItemId;

/// What a request is ranked with: the batch's model, sources, strategy and catalogue, and
/// the request's own user vector and logits row (when the model scored it).
#[derive(Clone, Copy)]
pub(super) struct Inputs<'a> {
    pub model: Option<&'a ModelSlot>,
    pub user_vec: Option<&'a [f32]>,
    pub logits: Option<&'a [f32]>,
    pub sources: &'a SourceSnapshot,
    pub live: &'a LiveStrategy,
    pub catalog: &'a Catalog,
    /// The items' text vectors (none: no text source).
    pub text: Option<&'a crate::text::TextTable>,
}

/// What ranking reads of a request.
pub(super) struct Ask<'a> {
    /// The user's recent interactions (store item ids), oldest first.
    pub history: &'a [ItemId],
    /// Items never to recommend (sorted).
    pub exclude: &'a [ItemId],
    /// Items wanted.
    pub k: usize,
    /// Only items with one of these tags (empty: any).
    pub include_tags: &'a [String],
    /// Never items with these tags.
    pub exclude_tags: &'a [String],
    /// Seed of this request's exploration.
    pub seed: u64,
}

/// Per-thread scratch buffers, reused across requests.
#[derive(Default)]
pub(super) struct RankScratch {
    pub(super) gen: u32,
    pub(super) cand_mark: Vec<u32>,
    pub(super) excl_mark: Vec<u32>,
    pub(super) knn: Vec<f32>,
    pub(super) markov: Vec<f32>,
    pub(super) candidates: Vec<ItemId>,
    /// Items with a transition or co-occurrence score this request.
    pub(super) touched: Vec<ItemId>,
    pub(super) order: Vec<(f32, ItemId)>,
    /// The batch's logits (users × items), kept between batches.
    pub(super) logits: Vec<f32>,
    /// Cosines of the user's text profile with every item, when the text source ran.
    pub(super) text: Vec<f32>,
}

/// Which accumulator [`RankScratch::touch`] returns.
#[derive(Clone, Copy)]
enum Acc {
    Markov,
    Knn,
}

impl RankScratch {
    fn reset(&mut self, n: usize) {
        if self.cand_mark.len() < n {
            self.cand_mark.resize(n, 0);
            self.excl_mark.resize(n, 0);
            self.knn.resize(n, 0.0);
            self.markov.resize(n, 0.0);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.cand_mark.fill(0);
            self.excl_mark.fill(0);
            self.gen = 1;
        }
        for &c in &self.touched {
            self.knn[c as usize] = 0.0;
            self.markov[c as usize] = 0.0;
        }
        self.touched.clear();
        self.candidates.clear();
    }

    /// Adds the `c` best entries of `order` (highest value first, ties by lower id) to the
    /// candidates.
    fn add_best(&mut self, c: usize) {
        let take = c.min(self.order.len());
        if take > 0 && take < self.order.len() {
            self.order
                .select_nth_unstable_by(take - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        for k in 0..take {
            let item = self.order[k].1;
            self.add(item);
        }
    }

    /// The accumulator of `item` (None if excluded or unknown), noting it as touched.
    fn touch(&mut self, item: ItemId, acc: Acc) -> Option<&mut f32> {
        let i = item as usize;
        if i >= self.excl_mark.len() || self.excl_mark[i] == self.gen {
            return None;
        }
        if self.knn[i] == 0.0 && self.markov[i] == 0.0 {
            self.touched.push(item);
        }
        Some(match acc {
            Acc::Markov => &mut self.markov[i],
            Acc::Knn => &mut self.knn[i],
        })
    }

    fn excluded(&self, item: ItemId) -> bool {
        self.excl_mark.get(item as usize) == Some(&self.gen)
    }

    /// Adds a candidate unless excluded or already in; returns whether it is in now.
    fn add(&mut self, item: ItemId) -> bool {
        let i = item as usize;
        if i >= self.cand_mark.len() || self.excl_mark[i] == self.gen {
            return false;
        }
        if self.cand_mark[i] != self.gen {
            self.cand_mark[i] = self.gen;
            self.candidates.push(item);
        }
        true
    }
}

/// Ranks the candidates of one request.
pub(super) fn blend(job: &Ask<'_>, with: &Inputs<'_>, s: &mut RankScratch) -> Scored {
    let Inputs {
        model,
        user_vec,
        logits,
        sources: src,
        live,
        catalog,
        text,
    } = *with;
    let strategy = &live.strategy;
    let n = catalog.len().max(src.n_items());
    s.reset(n);
    for &e in job.exclude {
        if let Some(m) = s.excl_mark.get_mut(e as usize) {
            *m = s.gen;
        }
    }
    if !job.include_tags.is_empty() || !job.exclude_tags.is_empty() {
        for item in 0..catalog.len() {
            let tags = catalog.tags(item as ItemId);
            let keep = (job.include_tags.is_empty()
                || tags.iter().any(|t| job.include_tags.contains(t)))
                && !tags.iter().any(|t| job.exclude_tags.contains(t));
            if !keep {
                s.excl_mark[item] = s.gen;
            }
        }
    }
    let c = strategy.candidates;
    // Model candidates: the best `c` logits among items not excluded.
    let mut max_logit = f32::NEG_INFINITY;
    if let (Some(m), Some(row)) = (model, logits) {
        max_logit = top_logits(row, c, &m.from_model, s);
    } else if let (Some(m), Some(u)) = (model, user_vec) {
        // A large catalogue: the best `c` from the graph index (approximate), and the
        // highest logit it saw as the row's maximum.
        if let Some(found) = m
            .fast
            .ann_top_k(u, c, |idx| !s.excluded(m.from_model[idx as usize]))
        {
            max_logit = found.best_seen;
            for (idx, _) in found.items {
                s.add(m.from_model[idx as usize]);
            }
        }
    }
    // Transitions out of the last three items and co-occurrence with the last few, scored
    // for every item they reach; the best `c` of each source become candidates.
    let hist = &job.history;
    let mut max_markov = 0.0f32;
    for (w, &h) in MARKOV_WEIGHTS.iter().zip(hist.iter().rev()) {
        if let Some(row) = src.successors.get(h as usize) {
            for &(j, p) in row.iter() {
                if let Some(v) = s.touch(j, Acc::Markov) {
                    *v += w * p;
                    if *v > max_markov {
                        max_markov = *v;
                    }
                }
            }
        }
    }
    let mut max_knn = 0.0f32;
    let mut used = 0;
    for (k, &h) in hist.iter().enumerate().rev() {
        if used == KNN_HISTORY {
            break;
        }
        if hist[k + 1..].contains(&h) {
            continue;
        }
        used += 1;
        if let Some(row) = src.neighbours.get(h as usize) {
            for &(j, sim) in row.iter() {
                if let Some(v) = s.touch(j, Acc::Knn) {
                    *v += sim;
                    if *v > max_knn {
                        max_knn = *v;
                    }
                }
            }
        }
    }
    for acc in [Acc::Markov, Acc::Knn] {
        s.order.clear();
        for &j in &s.touched {
            let v = match acc {
                Acc::Markov => s.markov[j as usize],
                Acc::Knn => s.knn[j as usize],
            };
            if v > 0.0 {
                s.order.push((v, j));
            }
        }
        s.add_best(c);
    }
    // Text: the user's profile against every item's text vector; the best `c` become
    // candidates, which is how an item nobody has interacted with reaches a slate.
    let mut has_text = false;
    // Computed while the strategy lets the source count at all, even at a learned weight
    // of 0: the learner needs its feature to see that it would help again.
    let text_enabled = strategy.observes(TEXT, live.weights[TEXT]);
    if let (Some(table), true) = (text, text_enabled) {
        if let Some(profile) = table.profile(hist) {
            if s.text.len() < n {
                s.text.resize(n, 0.0);
            }
            table.score_all_i8(&profile, &mut s.text[..n]);
            s.order.clear();
            for (j, &cos) in s.text[..n].iter().enumerate() {
                if cos > 0.0 && !s.excluded(j as ItemId) {
                    s.order.push((cos, j as ItemId));
                }
            }
            s.add_best(c);
            has_text = true;
        }
    }
    let before_pop = s.candidates.len();
    let mut added = 0;
    for &p in &src.pop_top {
        if added == c {
            break;
        }
        if s.add(p) {
            added += 1;
        }
    }
    let mut fallback = None;
    if hist.is_empty() || (before_pop == 0 && user_vec.is_none()) {
        fallback = Some("popularity");
    }
    if s.candidates.is_empty() {
        // Nothing counted yet: the catalogue in order.
        for item in 0..n as ItemId {
            if s.candidates.len() >= c {
                break;
            }
            s.add(item);
        }
        fallback = Some("catalogue");
    }
    // Features of every candidate.
    let cands = std::mem::take(&mut s.candidates);
    let mut feats: Vec<[f32; N_SOURCES]> = vec![[0.0; N_SOURCES]; cands.len()];
    if let (Some(m), Some(u)) = (model, user_vec) {
        // The logits row when the model scored the catalogue, else (a graph index) each
        // candidate's own inner product.
        let logit = |idx: u32| match logits {
            Some(row) => Some(row[idx as usize]),
            None if m.fast.index().is_some() => {
                let mut out = [0.0];
                m.fast
                    .score_candidates(u, &[idx], &mut out)
                    .ok()
                    .map(|()| out[0])
            }
            None => None,
        };
        for (ci, &item) in cands.iter().enumerate() {
            if let Some(l) = m.to_model(item).and_then(logit) {
                // A candidate of another source can score above the index's best.
                feats[ci][0] = crate::model::ops::fast_exp((l - max_logit).min(0.0));
            }
        }
    }
    for (ci, &item) in cands.iter().enumerate() {
        let i = item as usize;
        if max_knn > 0.0 {
            feats[ci][3] = s.knn[i] / max_knn;
        }
        if max_markov > 0.0 {
            feats[ci][4] = s.markov[i] / max_markov;
        }
        feats[ci][5] = src.pop(i);
        if has_text {
            feats[ci][TEXT] = crate::text::feature(s.text[i]);
        }
    }
    s.candidates = cands;
    // Weights of this request.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(job.seed);
    let mut weights = live.weights;
    if let Exploration::Thompson { scale } = strategy.exploration {
        let drawn: [f32; N_SOURCES] = std::array::from_fn(|j| {
            let sd = scale / (1.0 + live.evidence[j]).sqrt();
            weights[j] + sd * gaussian(&mut rng)
        });
        weights = strategy.bound(drawn);
    }
    // Blend. The task heads (like, purchase) each need the candidate's embedding, so they
    // are computed in order of the rest of the score, and only while a candidate can still
    // reach the top k: its score without them plus the most they can add (a probability
    // below 1 times the positive weights) must beat the k-th best complete score so far.
    // At a weight of 0 that is still the slate's items (and any explored one): their
    // features reach the learner, which can then raise a head's weight again.
    let w = weights;
    let heads_observed = (1..=2).any(|j| w[j] != 0.0 || strategy.observes(j, live.weights[j]));
    let heads = match (model, user_vec) {
        (Some(m), Some(u)) if m.has_task_heads && heads_observed => Some((m, m.fast.task_heads(u))),
        _ => None,
    };
    let mut ranked: Vec<(f32, u32)> = (0..s.candidates.len())
        .map(|ci| {
            let f = &feats[ci];
            (
                f[0] * w[0] + f[3] * w[3] + f[4] * w[4] + f[5] * w[5] + f[TEXT] * w[TEXT],
                ci as u32,
            )
        })
        .collect();
    let mut done = vec![heads.is_none(); s.candidates.len()];
    if heads.is_some() {
        let bound = w[1].max(0.0) + w[2].max(0.0);
        ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut tops: Vec<f32> = Vec::with_capacity(job.k + 1);
        for r in ranked.iter_mut() {
            if tops.len() >= job.k && r.0 + bound < tops[job.k - 1] {
                break;
            }
            let ci = r.1 as usize;
            r.0 += task_features(&heads, s.candidates[ci], &w, &mut feats[ci]);
            done[ci] = true;
            let at = tops.partition_point(|&x| x >= r.0);
            tops.insert(at, r.0);
            tops.truncate(job.k);
        }
    }
    let cands = &s.candidates;
    let better = |a: &(f32, u32), b: &(f32, u32)| {
        b.0.total_cmp(&a.0)
            .then(cands[a.1 as usize].cmp(&cands[b.1 as usize]))
    };
    let k = job.k.min(ranked.len());
    if k > 0 && k < ranked.len() {
        ranked.select_nth_unstable_by(k - 1, better);
    }
    ranked[..k].sort_unstable_by(better);
    let item_of = |&(score, ci): &(f32, u32)| ScoredItem {
        item: cands[ci as usize],
        score,
        features: feats[ci as usize],
        explored: false,
    };
    let mut picked: Vec<ScoredItem> = ranked[..k].iter().map(item_of).collect();
    if let Exploration::Epsilon { epsilon } = strategy.exploration {
        let rest = &ranked[k..];
        let mut pool: Vec<usize> = (0..rest.len()).collect();
        for slot in picked.iter_mut() {
            if pool.is_empty() {
                break;
            }
            if rng.gen::<f32>() < epsilon {
                let p = pool.swap_remove(rng.gen_range(0..pool.len()));
                let (score, ci) = rest[p];
                let mut item = item_of(&(score, ci));
                if !done[ci as usize] {
                    item.score += task_features(&heads, item.item, &w, &mut item.features);
                }
                *slot = ScoredItem {
                    explored: true,
                    ..item
                };
            }
        }
    }
    Scored {
        items: picked,
        strategy_version: live.version,
        weights,
        model_version: model.map_or(0, |m| m.version),
        fallback,
    }
}

/// Fills the like and purchase features of `item` from the task heads and returns what
/// they add to its score under weights `w`.
pub(super) fn task_features(
    heads: &Option<(&ModelSlot, crate::model::fast::TaskHeads)>,
    item: ItemId,
    w: &[f32; N_SOURCES],
    f: &mut [f32; N_SOURCES],
) -> f32 {
    let Some((m, h)) = heads else { return 0.0 };
    let Some(idx) = m.to_model(item) else {
        return 0.0;
    };
    match m.fast.task_probs(h, idx) {
        Ok((like, buy)) => {
            f[1] = like;
            f[2] = buy;
            w[1] * like + w[2] * buy
        }
        Err(_) => 0.0,
    }
}

/// Adds the `c` items of highest logit (not excluded) to the candidates and returns the
/// highest logit of the row.
///
/// Two passes instead of a heap over the whole row: the maxima of chunks of 16 give a
/// threshold, then only the items at or above it are selected among. With the `c`-th
/// largest chunk maximum as threshold at least `c` items reach it (typically `c` to
/// `2c`), but a user's seen items are excluded and are often among the highest logits:
/// that left fewer than `c`, and the whole row (3,700 items) was selected over, about
/// a third of the time. So the threshold starts at the `2c`-th largest maximum and, if
/// exclusions still leave fewer than `c` items, drops to the `8c`-th before the plain
/// selection over the row. Any threshold gives the same result as long as `c` items
/// reach it: every item below it ranks below those.
fn top_logits(row: &[f32], c: usize, from_model: &[ItemId], s: &mut RankScratch) -> f32 {
    const CHUNK: usize = 16;
    let gt = |x: f32, m: f32| if x > m { x } else { m };
    let maxima: Vec<f32> = row
        .chunks(CHUNK)
        .map(|ch| ch.iter().fold(f32::NEG_INFINITY, |m, &x| gt(x, m)))
        .collect();
    let max_logit = maxima.iter().fold(f32::NEG_INFINITY, |m, &x| gt(x, m));
    if c == 0 {
        return max_logit;
    }
    let mut sorted = Vec::new();
    for rank in [2 * c, 8 * c] {
        if rank >= maxima.len() {
            break;
        }
        if sorted.is_empty() {
            sorted = maxima.clone();
        }
        let (_, t, _) = sorted.select_nth_unstable_by(rank - 1, |a, b| b.total_cmp(a));
        let threshold = *t;
        s.order.clear();
        for (ci, ch) in row.chunks(CHUNK).enumerate() {
            if maxima[ci] < threshold {
                continue;
            }
            for (j, &l) in ch.iter().enumerate() {
                if l >= threshold && l.is_finite() {
                    let item = from_model[ci * CHUNK + j];
                    if !s.excluded(item) {
                        s.order.push((l, item));
                    }
                }
            }
        }
        if s.order.len() >= c {
            s.add_best(c);
            return max_logit;
        }
    }
    // Exclusions thinned every threshold (or the row is short): select over the row.
    s.order.clear();
    for (idx, &l) in row.iter().enumerate() {
        let item = from_model[idx];
        if l.is_finite() && !s.excluded(item) {
            s.order.push((l, item));
        }
    }
    s.add_best(c);
    max_logit
}

fn gaussian(rng: &mut impl Rng) -> f32 {
    // Box–Muller.
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The candidates `top_logits` picks are the `c` best non-excluded items (lower id
    /// first among equal logits), whatever the share of excluded items among the highest
    /// logits, and with many ties.
    #[test]
    fn top_logits_agrees_with_a_full_selection_under_exclusions() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for (n, c, excluded_share, levels) in [
            (3700, 50, 0.0, None),
            (3700, 50, 0.05, None),
            (3700, 50, 0.5, None),
            (3700, 50, 0.99, None),
            (100, 50, 0.3, None),
            (40, 50, 0.0, None),
            (3700, 50, 0.1, Some(8.0)),
            (3700, 10, 0.0, Some(1.0)),
            (3700, 1, 0.2, None),
        ] {
            let row: Vec<f32> = (0..n)
                .map(|_| match levels {
                    // Few distinct values: long runs of ties at every threshold.
                    Some(l) => (rng.gen::<f32>() * l).floor() / l,
                    None => rng.gen::<f32>(),
                })
                .collect();
            // Items are numbered differently from model indices, as in the engine.
            let from_model: Vec<ItemId> = (0..n as ItemId).rev().collect();
            let mut s = RankScratch::default();
            s.reset(n);
            // Exclude mostly high-logit items, where exclusions hurt the threshold.
            for idx in 0..n {
                if rng.gen::<f64>() < excluded_share * (0.5 + f64::from(row[idx])) {
                    s.excl_mark[from_model[idx] as usize] = s.gen;
                }
            }
            let max = top_logits(&row, c, &from_model, &mut s);
            let mut got: Vec<ItemId> = s.candidates.clone();
            got.sort_unstable();
            let mut all: Vec<(f32, ItemId)> = (0..n)
                .filter(|&idx| !s.excluded(from_model[idx]))
                .map(|idx| (row[idx], from_model[idx]))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut want: Vec<ItemId> = all.iter().take(c).map(|x| x.1).collect();
            want.sort_unstable();
            assert_eq!(got, want, "n {n} c {c} excluded {excluded_share}");
            assert_eq!(max, row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
    }
}
