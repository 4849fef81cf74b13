//! Fused CPU kernels with their backward passes, where candle's composed ops make many
//! passes and allocations over large tensors: the causal, scaled softmax of attention, and
//! a vectorisable `exp` for them and the fused cross-entropy. Other devices use the
//! composed forms (see `layers::softmax` and `loss`).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

const LOG2E: f32 = std::f32::consts::LOG2_E;

/// `exp(x)` to about 2e-7 relative error, written so that LLVM vectorises loops over it
/// (no libm call, integer-only exponent handling): 2^round(x·log2 e) from the exponent
/// bits times a degree-6 polynomial for 2^f, |f| ≤ ½.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let t = x.clamp(-87.0, 88.0) * LOG2E;
    let v = t + MAGIC;
    let r = v - MAGIC;
    // The rounded integer sits in the low mantissa bits of `v`.
    let ri = (v.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let f = (t - r) * std::f32::consts::LN_2;
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (0.166_666_67
                    + f * (0.041_666_668 + f * (0.008_333_334 + f * 0.001_388_889)))));
    f32::from_bits((ri.wrapping_add(127) << 23) as u32) * p
}

/// Lanes of the accumulators below: f32 reductions only vectorise with explicit lanes.
const LANES: usize = 16;

/// The maximum of a slice.
#[inline]
pub fn max_of(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    rest.iter().fold(
        acc.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        |m, &x| m.max(x),
    )
}

/// Σ exp(scale·x − shift) over a slice.
#[inline]
pub fn sum_exp(xs: &[f32], scale: f32, shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += fast_exp(x * scale - shift);
        }
    }
    acc.iter().sum::<f32>()
        + rest
            .iter()
            .map(|&x| fast_exp(x * scale - shift))
            .sum::<f32>()
}

/// The sum of a slice.
#[inline]
pub fn sum_of(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// The dot product of two slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The f32 data of a contiguous CPU tensor.
pub(crate) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("fused kernel needs a contiguous f32 tensor"),
    }
}

/// `softmax(scale · x + causal mask)` over the last dimension of attention scores
/// `(…, len, len)`: row `q` of each `len × len` matrix sees keys `0..=q`.
pub struct CausalSoftmax {
    pub scale: f32,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous(s, l)?;
        let len = *l.shape().dims().last().unwrap_or(&1);
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(len)
            .zip(xs.par_chunks(len))
            .enumerate()
            .for_each(|(row, (o, x))| {
                let q = row % len;
                let (o, x) = (&mut o[..=q], &x[..=q]);
                let max = max_of(x) * self.scale;
                for (oi, &xi) in o.iter_mut().zip(x) {
                    *oi = fast_exp(xi * self.scale - max);
                }
                let inv = 1.0 / sum_of(o);
                o.iter_mut().for_each(|v| *v *= inv);
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = res.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &CausalSoftmaxGrad { scale: self.scale },
        )?;
        Ok(Some(grad))
    }
}

/// dx = scale · y ⊙ (dy − Σ dy ⊙ y), row by row.
struct CausalSoftmaxGrad {
    scale: f32,
}

impl candle_core::CustomOp2 for CausalSoftmaxGrad {
    fn name(&self) -> &'static str {
        "causal-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ys = contiguous(s1, l1)?;
        let dys = contiguous(s2, l2)?;
        let len = *l1.shape().dims().last().unwrap_or(&1);
        let mut out = vec![0f32; ys.len()];
        out.par_chunks_mut(len)
            .zip(ys.par_chunks(len).zip(dys.par_chunks(len)))
            .for_each(|(o, (y, dy))| {
                let d = dot(y, dy);
                for ((oi, &yi), &dyi) in o.iter_mut().zip(y).zip(dy) {
                    *oi = self.scale * yi * (dyi - d);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Test helpers shared by the kernels' tests.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Tensor, Var};

    /// The flattened gradient of `var` in the gradients of `loss`.
    pub fn grad_of(loss: &Tensor, var: &Var) -> Vec<f32> {
        loss.backward()
            .expect("backward")
            .get(var.as_tensor())
            .expect("a gradient")
            .flatten_all()
            .expect("flatten")
            .to_vec1::<f32>()
            .expect("f32 values")
    }

    /// Asserts two slices agree element by element within `tol`.
    pub fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < tol, "{x} vs {y}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_close, grad_of};
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fast_exp_is_accurate() {
        for i in -8000..8000 {
            let x = i as f32 / 100.0;
            let (a, b) = (fast_exp(x), x.exp());
            // f32 keeps fewer fraction bits of x·log2 e as |x| grows.
            let tol = if x.abs() <= 20.0 { 2e-6 } else { 1e-5 };
            assert!(((a - b) / b).abs() < tol, "exp({x}): {a} vs {b}");
        }
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
    }

    #[test]
    fn causal_softmax_matches_the_composed_form_with_gradients() {
        let dev = Device::Cpu;
        let (b, len) = (3, 5);
        let data: Vec<f32> = (0..b * len * len)
            .map(|i| ((i * 29 % 13) as f32 - 6.0) * 0.4)
            .collect();
        let x1 = Var::from_tensor(&Tensor::from_vec(data.clone(), (b, len, len), &dev).expect("t"))
            .expect("v");
        let x2 =
            Var::from_tensor(&Tensor::from_vec(data, (b, len, len), &dev).expect("t")).expect("v");
        let w = Tensor::from_vec(
            (0..b * len * len)
                .map(|i| (i % 7) as f32)
                .collect::<Vec<_>>(),
            (b, len, len),
            &dev,
        )
        .expect("w");
        let fused = x1.apply_op1(CausalSoftmax { scale: 0.5 }).expect("fused");
        let mask =
            crate::model::layers::causal_mask(len, &dev, candle_core::DType::F32).expect("mask");
        let scaled = (x2.as_tensor() * 0.5)
            .expect("s")
            .broadcast_add(&mask)
            .expect("m");
        let composed = crate::model::layers::softmax(&scaled).expect("softmax");
        let a = fused.flatten_all().expect("f").to_vec1::<f32>().expect("v");
        let c = composed
            .flatten_all()
            .expect("f")
            .to_vec1::<f32>()
            .expect("v");
        assert_close(&a, &c, 1e-5);
        let l1 = (fused * &w).expect("m").sum_all().expect("s");
        let l2 = (composed * &w).expect("m").sum_all().expect("s");
        assert_close(&grad_of(&l1, &x1), &grad_of(&l2, &x2), 1e-4);
    }
}
