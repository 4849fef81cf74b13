//! Losses. The next-item loss is a fused log-softmax + negative log-likelihood on the CPU:
//! one pass over each row of logits for the loss and one for the gradient, where
//! `candle_nn::loss::cross_entropy` makes about ten passes and allocations over a
//! (positions × catalogue) matrix. Other devices use the composed form.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::ops::{contiguous, dot, fast_exp, max_of, sum_exp};

/// Mean cross-entropy of `logits` `(n, classes)` (f32) against `targets` `(n,)` (u32).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        logits.apply_op2(targets, FusedCrossEntropy::default())
    } else {
        let lse = logsumexp(logits)?;
        let picked = logits.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
        (lse - picked)?.mean_all()
    }
}

fn logsumexp(xs: &Tensor) -> candle_core::Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let s = xs
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?;
    (s + max)?.squeeze(D::Minus1)
}

/// Mean binary cross-entropy with logits, `x` and `y` of one shape (f32).
pub fn bce_with_logits(x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    // max(x, 0) - x*y + log(1 + exp(-|x|)), stable for any x.
    let pos = x.relu()?;
    let soft = ((x.abs()?.neg()?.exp()? + 1.0)?).log()?;
    ((pos - (x * y)?)? + soft)?.mean_all()
}

fn contiguous_u32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [u32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::U32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("fused cross-entropy needs contiguous u32 targets"),
    }
}

/// Per-row log-sum-exp of a contiguous row.
fn row_lse(row: &[f32]) -> f32 {
    let max = max_of(row);
    max + sum_exp(row, 1.0, max).ln()
}

/// The forward pass keeps each row's log-sum-exp for the backward pass.
#[derive(Default)]
struct FusedCrossEntropy {
    lse: std::sync::Mutex<Vec<f32>>,
}

impl CustomOp2 for FusedCrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c) = l1.shape().dims2()?;
        let logits = contiguous(s1, l1)?;
        let targets = contiguous_u32(s2, l2)?;
        if targets.len() != n {
            candle_core::bail!("{} targets for {n} rows", targets.len());
        }
        let lse: Vec<f32> = logits.par_chunks(c).map(row_lse).collect();
        let total: f64 = lse
            .iter()
            .zip(logits.chunks(c))
            .zip(targets)
            .map(|((&l, row), &t)| f64::from(l - row[t as usize]))
            .sum();
        *self.lse.lock().unwrap_or_else(|e| e.into_inner()) = lse;
        Ok((
            CpuStorage::F32(vec![(total / n.max(1) as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let lse = std::mem::take(&mut *self.lse.lock().unwrap_or_else(|e| e.into_inner()));
        let grad = logits.apply_op2_no_bwd(targets, &CrossEntropyGrad { lse })?;
        Ok((Some(grad.broadcast_mul(grad_res)?), None))
    }
}

/// d(mean CE)/d(logits) = (softmax(logits) - onehot(target)) / n, in one pass per row,
/// from the forward pass's log-sum-exps (recomputed if absent).
struct CrossEntropyGrad {
    lse: Vec<f32>,
}

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c) = l1.shape().dims2()?;
        let logits = contiguous(s1, l1)?;
        let targets = contiguous_u32(s2, l2)?;
        let inv_n = 1.0 / n.max(1) as f32;
        let mut grad = vec![0f32; n * c];
        grad.par_chunks_mut(c)
            .zip(logits.par_chunks(c))
            .zip(targets.par_iter())
            .enumerate()
            .for_each(|(i, ((g, row), &t))| {
                let lse = self.lse.get(i).copied().unwrap_or_else(|| row_lse(row));
                for (gi, &x) in g.iter_mut().zip(row) {
                    *gi = fast_exp(x - lse) * inv_n;
                }
                g[t as usize] -= inv_n;
            });
        Ok((CpuStorage::F32(grad), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::ops::testing::{assert_close, grad_of};
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_matches_composed_in_value_and_gradient() {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..5 * 7)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let targets = Tensor::new(&[0u32, 3, 6, 2, 2], &dev).expect("targets");
        let a = Var::from_tensor(&Tensor::from_vec(data.clone(), (5, 7), &dev).expect("t"))
            .expect("var");
        let b = Var::from_tensor(&Tensor::from_vec(data, (5, 7), &dev).expect("t")).expect("var");
        let fused = cross_entropy(a.as_tensor(), &targets).expect("fused");
        let lse = logsumexp(b.as_tensor()).expect("lse");
        let picked = b
            .gather(&targets.unsqueeze(1).expect("u"), 1)
            .expect("g")
            .squeeze(1)
            .expect("s");
        let composed = (lse - picked).expect("sub").mean_all().expect("mean");
        let (fv, cv) = (
            fused.to_scalar::<f32>().expect("f"),
            composed.to_scalar::<f32>().expect("c"),
        );
        assert!((fv - cv).abs() < 1e-5, "{fv} vs {cv}");
        assert_close(&grad_of(&fused, &a), &grad_of(&composed, &b), 1e-5);
    }

    #[test]
    fn bce_matches_the_formula() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[-30f32, -1.0, 0.0, 2.0, 40.0], &dev).expect("x");
        let y = Tensor::new(&[0f32, 1.0, 1.0, 0.0, 1.0], &dev).expect("y");
        let got = bce_with_logits(&x, &y)
            .expect("bce")
            .to_scalar::<f32>()
            .expect("s");
        let want: f32 = [
            (-30f32, 0f32),
            (-1.0, 1.0),
            (0.0, 1.0),
            (2.0, 0.0),
            (40.0, 1.0),
        ]
        .iter()
        .map(|&(x, y)| {
            let p = 1.0 / (1.0 + (-x).exp());
            -(y * p.max(1e-30).ln() + (1.0 - y) * (1.0 - p).max(1e-30).ln())
        })
        .sum::<f32>()
            / 5.0;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
}

/// Rows of logits materialised at a time by [`softmax_cross_entropy`].
const CE_CHUNK: usize = 512;

/// Mean cross-entropy of the full softmax `hs · tableᵀ` against `targets`, without ever
/// materialising the `(n, catalogue)` logits in the autograd graph: the forward and
/// backward passes compute them [`CE_CHUNK`] rows at a time, in cache, and hand back
/// only the gradients of `hs` `(n, d)` and `table` `(catalogue, d)`. On the CPU this
/// saves the allocation, zeroing and several passes over the largest tensors of a step.
pub fn softmax_cross_entropy(
    hs: &Tensor,
    table: &Tensor,
    targets: &Tensor,
) -> candle_core::Result<Tensor> {
    if hs.device().is_cpu() && hs.dtype() == DType::F32 {
        hs.contiguous()?
            .apply_op3(&table.contiguous()?, targets, TiedSoftmaxCe)
    } else {
        cross_entropy(&hs.matmul(&table.t()?)?, targets)
    }
}

struct TiedSoftmaxCe;

/// Log-sum-exp of every row of `hs · tableᵀ`, chunk by chunk.
fn chunked_lse(hs: &Tensor, table_t: &Tensor) -> candle_core::Result<Vec<f32>> {
    let n = hs.dim(0)?;
    let mut out = Vec::with_capacity(n);
    for r0 in (0..n).step_by(CE_CHUNK) {
        let rows = CE_CHUNK.min(n - r0);
        let logits = hs.narrow(0, r0, rows)?.matmul(table_t)?;
        let c = logits.dim(1)?;
        let (storage, layout) = logits.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("tied cross-entropy: logits are not on the CPU")
        };
        let v = contiguous(cpu, layout)?;
        out.par_extend(v.par_chunks(c).map(row_lse));
    }
    Ok(out)
}

impl candle_core::CustomOp3 for TiedSoftmaxCe {
    fn name(&self) -> &'static str {
        "tied-softmax-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, d) = l1.shape().dims2()?;
        let (c, d2) = l2.shape().dims2()?;
        if d != d2 {
            candle_core::bail!("hidden width {d} differs from the table's {d2}");
        }
        let dev = candle_core::Device::Cpu;
        let hs = Tensor::from_slice(contiguous(s1, l1)?, (n, d), &dev)?;
        let table = Tensor::from_slice(contiguous(s2, l2)?, (c, d), &dev)?;
        let targets = contiguous_u32(s3, l3)?;
        let lse = chunked_lse(&hs, &table.t()?)?;
        // The target's logit is a dot product.
        let hv = contiguous(s1, l1)?;
        let tv = contiguous(s2, l2)?;
        let total: f64 = (0..n)
            .into_par_iter()
            .map(|i| {
                let t = targets[i] as usize;
                f64::from(lse[i] - dot(&hv[i * d..(i + 1) * d], &tv[t * d..(t + 1) * d]))
            })
            .sum();
        Ok((
            CpuStorage::F32(vec![(total / n.max(1) as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        hs: &Tensor,
        table: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (hs, table) = (hs.detach(), table.detach());
        let table_t = table.t()?;
        let lse = chunked_lse(&hs, &table_t)?;
        let scale = grad_res.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let n = hs.dim(0)?;
        let mut grad_hs = Vec::new();
        let mut grad_table = table.zeros_like()?;
        for r0 in (0..n).step_by(CE_CHUNK) {
            let rows = CE_CHUNK.min(n - r0);
            let h = hs.narrow(0, r0, rows)?;
            let logits = h.matmul(&table_t)?;
            let g = logits.apply_op2_no_bwd(
                &targets.narrow(0, r0, rows)?,
                &CrossEntropyGrad {
                    lse: lse[r0..r0 + rows].to_vec(),
                },
            )?;
            // CrossEntropyGrad divides by its own row count; rescale to the whole batch.
            let g = (g * (f64::from(scale) * rows as f64 / n as f64))?;
            grad_hs.push(g.matmul(&table)?);
            grad_table = (grad_table + g.t()?.matmul(&h)?)?;
        }
        Ok((Some(Tensor::cat(&grad_hs, 0)?), Some(grad_table), None))
    }
}

#[cfg(test)]
mod tied_tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn tied_matches_materialised_logits_in_value_and_gradients() {
        let dev = Device::Cpu;
        let (n, c, d) = (CE_CHUNK + 37, 23, 8);
        let hv: Vec<f32> = (0..n * d)
            .map(|i| ((i * 17 % 29) as f32 - 14.0) * 0.05)
            .collect();
        let tv: Vec<f32> = (0..c * d)
            .map(|i| ((i * 11 % 19) as f32 - 9.0) * 0.07)
            .collect();
        let targets = Tensor::from_vec(
            (0..n as u32).map(|i| i * 7 % c as u32).collect::<Vec<_>>(),
            n,
            &dev,
        )
        .expect("t");
        let h1 =
            Var::from_tensor(&Tensor::from_vec(hv.clone(), (n, d), &dev).expect("h")).expect("v");
        let t1 =
            Var::from_tensor(&Tensor::from_vec(tv.clone(), (c, d), &dev).expect("t")).expect("v");
        let h2 = Var::from_tensor(&Tensor::from_vec(hv, (n, d), &dev).expect("h")).expect("v");
        let t2 = Var::from_tensor(&Tensor::from_vec(tv, (c, d), &dev).expect("t")).expect("v");
        let a = (softmax_cross_entropy(h1.as_tensor(), t1.as_tensor(), &targets).expect("tied")
            * 3.0)
            .expect("s");
        let b = (cross_entropy(&h2.matmul(&t2.t().expect("t")).expect("m"), &targets).expect("ce")
            * 3.0)
            .expect("s");
        let (av, bv) = (
            a.to_scalar::<f32>().expect("a"),
            b.to_scalar::<f32>().expect("b"),
        );
        assert!((av - bv).abs() < 1e-4, "{av} vs {bv}");
        let (ga, gb) = (a.backward().expect("bwd"), b.backward().expect("bwd"));
        for (x, y) in [
            (h1.as_tensor(), h2.as_tensor()),
            (t1.as_tensor(), t2.as_tensor()),
        ] {
            let gx = ga
                .get(x)
                .expect("grad")
                .flatten_all()
                .expect("f")
                .to_vec1::<f32>()
                .expect("v");
            let gy = gb
                .get(y)
                .expect("grad")
                .flatten_all()
                .expect("f")
                .to_vec1::<f32>()
                .expect("v");
            for (p, q) in gx.iter().zip(&gy) {
                assert!((p - q).abs() < 1e-5, "{p} vs {q}");
            }
        }
    }
}
