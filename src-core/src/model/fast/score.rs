//! Scoring with a user vector: the whole catalogue (panel kernels, or candle's gemm for
//! large batches, in f32 or a compact item table: f16, bf16, int8), chosen candidates, the like and purchase
//! heads, and top-k selection.

use super::*;

impl FastModel {
    pub(super) fn check_user_vec(&self, user_vec: &[f32]) {
        assert_eq!(
            user_vec.len(),
            self.cfg.dim,
            "a user vector has dim = {} values",
            self.cfg.dim
        );
    }

    /// Next-item logits of every item for one user vector, into `out` (`n_items` values),
    /// with the item table of [`FastModel::score_dtype`].
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values or `out` does not hold `n_items`.
    pub fn score_all(&self, user_vec: &[f32], out: &mut [f32]) {
        self.check_user_vec(user_vec);
        self.score_batch(user_vec, out);
    }

    /// Next-item logits for a batch of `b` user vectors (`b × dim`, row-major) into `out`
    /// (`b × n_items`). With the f32 table and gemm on, batches of `GEMM_MIN_BATCH` or more go
    /// through candle's gemm (which uses its own thread pool); otherwise each panel of 32 item rows (8 KiB at
    /// d = 64) is read once and reused from L1 by every user of the batch, and a 16-bit
    /// panel is widened once for them all.
    ///
    /// # Panics
    /// If `user_vecs` is not a multiple of `dim` or `out` does not hold `b × n_items`.
    pub fn score_batch(&self, user_vecs: &[f32], out: &mut [f32]) {
        let (d, n) = (self.cfg.dim, self.cfg.n_items);
        assert_eq!(user_vecs.len() % d, 0, "user vectors are rows of dim = {d}");
        let b = user_vecs.len() / d;
        assert_eq!(out.len(), b * n, "scores of {b} users × {n} items");
        if let Some(table_t) = self
            .table_t
            .as_ref()
            .filter(|_| self.gemm && b >= GEMM_MIN_BATCH)
        {
            match self.gemm_scores(table_t, user_vecs, b, out) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "gemm scoring failed; using the panel kernels")
                }
            }
        }
        let mut wide = vec![[0.0f32; P]; if self.compact.is_some() { d } else { 0 }];
        for p in 0..n.div_ceil(P) {
            let (j0, width) = (p * P, (n - p * P).min(P));
            let panel: &[[f32; P]] = match &self.compact {
                None => &self.table.data[p * d..(p + 1) * d],
                Some(CompactTable::Half { dtype, bits }) => {
                    let bits = &bits.data[p * d..(p + 1) * d];
                    match dtype {
                        ScoreDtype::BF16 if b < WIDEN_MIN_BATCH => {
                            each_user(user_vecs, out, d, j0, width, |u| panel_mul_bf16(u, bits));
                            continue;
                        }
                        ScoreDtype::BF16 => widen(bits, &mut wide, bf16_to_f32),
                        _ => widen(bits, &mut wide, f16_to_f32),
                    }
                    &wide
                }
                Some(CompactTable::Int8 { q, scale }) => {
                    let q = &q.data[p * d..(p + 1) * d];
                    let scale: &[f32; P] = scale[j0..j0 + P].try_into().expect("P scales");
                    if b < WIDEN_MIN_BATCH {
                        each_user(user_vecs, out, d, j0, width, |u| panel_mul_i8(u, q, scale));
                        continue;
                    }
                    widen_i8(q, scale, &mut wide);
                    &wide
                }
            };
            let mut users = user_vecs.chunks_exact(d).zip(out.chunks_exact_mut(n));
            while let Some((u, su)) = users.next() {
                if let Some((v, sv)) = users.next() {
                    let (au, av) = panel_mul2(u, v, panel);
                    su[j0..j0 + width].copy_from_slice(&au[..width]);
                    sv[j0..j0 + width].copy_from_slice(&av[..width]);
                } else {
                    let acc = panel_mul(u, panel);
                    su[j0..j0 + width].copy_from_slice(&acc[..width]);
                }
            }
        }
    }

    /// `out = user_vecs · table^T` by candle's matmul, copied straight from its storage.
    fn gemm_scores(
        &self,
        table_t: &Tensor,
        user_vecs: &[f32],
        b: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let h = Tensor::from_slice(user_vecs, (b, self.cfg.dim), &Device::Cpu)?;
        let logits = h.matmul(table_t)?;
        let (storage, layout) = logits.storage_and_layout();
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_err("gemm gave non-contiguous logits".into()))?;
        match &*storage {
            Storage::Cpu(cpu) => out.copy_from_slice(&cpu.as_slice::<f32>()?[start..end]),
            _ => return Err(candle_err("gemm logits are not on the CPU".into())),
        }
        Ok(())
    }

    /// Next-item logits (f32) of the given candidates (dense ids) into `out`.
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values or `out` is not as long as `candidates`.
    pub fn score_candidates(
        &self,
        user_vec: &[f32],
        candidates: &[u32],
        out: &mut [f32],
    ) -> Result<()> {
        self.check_user_vec(user_vec);
        assert_eq!(out.len(), candidates.len(), "one score per candidate");
        for (s, &c) in out.iter_mut().zip(candidates) {
            *s = dot(user_vec, self.item_row(c)?);
        }
        Ok(())
    }

    fn item_row(&self, item: u32) -> Result<&[f32]> {
        self.check_item(item)?;
        let d = self.cfg.dim;
        Ok(&self.item_emb[(item as usize + 1) * d..][..d])
    }

    /// Next-item logit, like and purchase probabilities of each candidate:
    /// `sigmoid((W h + b) · e_j + offset)` for the two task heads.
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values.
    pub fn task_scores(&self, user_vec: &[f32], candidates: &[u32]) -> Result<Vec<TaskScores>> {
        self.check_user_vec(user_vec);
        let d = self.cfg.dim;
        let (mut like, mut buy) = (vec![0.0; d], vec![0.0; d]);
        self.like.forward(user_vec, &mut like);
        self.purchase.forward(user_vec, &mut buy);
        candidates
            .iter()
            .map(|&item| {
                let e = self.item_row(item)?;
                Ok(TaskScores {
                    item,
                    next: dot(user_vec, e),
                    like: sigmoid(dot(&like, e) + self.like_offset),
                    purchase: sigmoid(dot(&buy, e) + self.purchase_offset),
                })
            })
            .collect()
    }

    /// The task heads' projections of a user vector (`W h + b` of the like and purchase
    /// heads), for scoring candidates one at a time with [`FastModel::task_probs`].
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values.
    pub fn task_heads(&self, user_vec: &[f32]) -> TaskHeads {
        self.check_user_vec(user_vec);
        let d = self.cfg.dim;
        let (mut like, mut purchase) = (vec![0.0; d], vec![0.0; d]);
        self.like.forward(user_vec, &mut like);
        self.purchase.forward(user_vec, &mut purchase);
        TaskHeads { like, purchase }
    }

    /// Like and purchase probabilities of one candidate (dense id), as
    /// [`FastModel::task_scores`] gives them.
    pub fn task_probs(&self, heads: &TaskHeads, item: u32) -> Result<(f32, f32)> {
        let e = self.item_row(item)?;
        Ok((
            sigmoid(dot(&heads.like, e) + self.like_offset),
            sigmoid(dot(&heads.purchase, e) + self.purchase_offset),
        ))
    }

    /// The `k` best items for one user vector, best first (ties: lower id first), never
    /// any of `exclude` (ids outside the catalogue there are ignored).
    ///
    /// # Panics
    /// If `user_vec` does not hold `dim` values.
    pub fn top_k(&self, user_vec: &[f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
        let mut scores = vec![0.0; self.cfg.n_items];
        self.score_all(user_vec, &mut scores);
        top_k_of(&mut scores, k, exclude)
    }

    /// [`FastModel::top_k`] for a batch of user vectors (`b × dim`), scored together with
    /// [`FastModel::score_batch`]. `exclude` is empty (nothing excluded) or holds one list
    /// per user.
    ///
    /// # Panics
    /// If `user_vecs` is not a multiple of `dim`, or `exclude` is neither empty nor `b` long.
    pub fn top_k_batch(
        &self,
        user_vecs: &[f32],
        k: usize,
        exclude: &[&[u32]],
    ) -> Vec<Vec<(u32, f32)>> {
        let (d, n) = (self.cfg.dim, self.cfg.n_items);
        assert_eq!(user_vecs.len() % d, 0, "user vectors are rows of dim = {d}");
        let b = user_vecs.len() / d;
        assert!(
            exclude.is_empty() || exclude.len() == b,
            "one exclusion list per user, or none"
        );
        let mut scores = vec![0.0; TOP_K_BATCH.min(b) * n];
        let mut result = Vec::with_capacity(b);
        for (chunk, users) in user_vecs.chunks(TOP_K_BATCH * d).enumerate() {
            let scores = &mut scores[..users.len() / d * n];
            self.score_batch(users, scores);
            for (i, row) in scores.chunks_exact_mut(n).enumerate() {
                let ex = exclude.get(chunk * TOP_K_BATCH + i).copied().unwrap_or(&[]);
                result.push(top_k_of(row, k, ex));
            }
        }
        result
    }
}

/// Scores panel `j0..j0 + width` for each user of `user_vecs` (rows of `d`) alone, with
/// `kernel`, into that user's row of `out`: the path of compact tables for batches too
/// small to widen a panel for.
fn each_user(
    user_vecs: &[f32],
    out: &mut [f32],
    d: usize,
    j0: usize,
    width: usize,
    kernel: impl Fn(&[f32]) -> [f32; P],
) {
    let n = out.len() / (user_vecs.len() / d).max(1);
    for (u, scores) in user_vecs.chunks_exact(d).zip(out.chunks_exact_mut(n)) {
        let acc = kernel(u);
        scores[j0..j0 + width].copy_from_slice(&acc[..width]);
    }
}

/// The `k` highest of `scores` as `(index, score)`, best first, ties by lower index;
/// entries listed in `exclude` (overwritten with −∞ here) and NaNs never appear.
pub fn top_k_of(scores: &mut [f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
    for &e in exclude {
        if let Some(s) = scores.get_mut(e as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
    let k = k.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    // A sorted buffer of the best so far: most items fail the one comparison with its
    // floor, so the scan costs about a compare per item.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    let mut floor = f32::NEG_INFINITY;
    for (i, &s) in scores.iter().enumerate() {
        // `>` also drops NaN and −∞ (excluded) entries.
        if s > floor {
            let at = best.partition_point(|&(_, b)| b >= s);
            best.insert(at, (i as u32, s));
            if best.len() > k {
                best.pop();
            }
            if best.len() == k {
                floor = best[k - 1].1;
            }
        }
    }
    best
}
