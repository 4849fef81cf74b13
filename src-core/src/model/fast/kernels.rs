//! The panel layout of weight matrices and the item table, the layers built on it
//! (dense, LayerNorm), and the loops written for the compiler to vectorise: panel
//! products, dot products, sums and maxima over fixed-width accumulators.

use super::*;

/// A `(rows, cols)` matrix as panels of `P` rows: panel `p` holds rows `p·P..p·P + P`
/// column by column (`cols` arrays of `P` lanes), zero past the last row.
#[derive(Clone)]
pub(super) struct Panels<T> {
    pub(super) data: Vec<[T; P]>,
    pub(super) cols: usize,
}

impl<T: Copy + Default> Panels<T> {
    /// From a row-major `(rows, cols)` matrix, converting each value with `f`.
    pub(super) fn from_rows<S: Copy>(
        w: &[S],
        rows: usize,
        cols: usize,
        f: impl Fn(S) -> T,
    ) -> Self {
        let mut data = vec![[T::default(); P]; rows.div_ceil(P) * cols];
        for (r, row) in w.chunks_exact(cols).take(rows).enumerate() {
            let base = (r / P) * cols;
            for (col, &v) in data[base..base + cols].iter_mut().zip(row) {
                col[r % P] = f(v);
            }
        }
        Panels { data, cols }
    }

    pub(super) fn panels(&self) -> std::slice::ChunksExact<'_, [T; P]> {
        self.data.chunks_exact(self.cols)
    }
}

impl Panels<f32> {
    /// `y = W x`.
    pub(super) fn matvec(&self, x: &[f32], y: &mut [f32]) {
        for (panel, y) in self.panels().zip(y.chunks_mut(P)) {
            let acc = panel_mul(x, panel);
            y.copy_from_slice(&acc[..y.len()]);
        }
    }
}

/// A linear layer `y = W x + b`.
#[derive(Clone)]
pub(super) struct Dense {
    pub(super) w: Panels<f32>,
    pub(super) b: Vec<f32>,
}

impl Dense {
    pub(super) fn from_candle(
        l: &candle_nn::Linear,
        out: usize,
        inp: usize,
        name: &str,
    ) -> Result<Self> {
        let w = host_vec(l.weight(), &[out, inp], name)?;
        let b = match l.bias() {
            Some(b) => host_vec(b, &[out], name)?,
            None => vec![0.0; out],
        };
        Ok(Dense {
            w: Panels::from_rows(&w, out, inp, |v| v),
            b,
        })
    }

    pub(super) fn forward(&self, x: &[f32], y: &mut [f32]) {
        self.w.matvec(x, y);
        add_assign(y, &self.b);
    }
}

/// LayerNorm over the last dimension, as `layers::LayerNorm` computes it (biased variance,
/// division by `sqrt(var + eps)`).
#[derive(Clone)]
pub(super) struct Norm {
    pub(super) w: Vec<f32>,
    pub(super) b: Vec<f32>,
    pub(super) eps: f32,
}

impl Norm {
    pub(super) fn from_candle(
        ln: &crate::model::layers::LayerNorm,
        dim: usize,
        eps: f64,
        name: &str,
    ) -> Result<Self> {
        Ok(Norm {
            w: host_vec(ln.weight(), &[dim], name)?,
            b: host_vec(ln.bias(), &[dim], name)?,
            eps: eps as f32,
        })
    }

    pub(super) fn forward(&self, x: &[f32], y: &mut [f32]) {
        let n = x.len() as f32;
        let mean = sum(x) / n;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x - mean;
        }
        let denom = (dot(y, y) / n + self.eps).sqrt();
        for ((y, &w), &b) in y.iter_mut().zip(&self.w).zip(&self.b) {
            *y = *y / denom * w + b;
        }
    }
}

/// Reserves room for one more `unit` of elements with a bounded doubling (at least
/// `min_units`, at most `max_units`), so that a long-lived cache never holds much more
/// capacity than a full window needs.
pub(super) fn grow<T>(v: &mut Vec<T>, unit: usize, min_units: usize, max_units: usize) {
    if v.capacity() - v.len() < unit {
        let units = v.len() / unit;
        let target = (2 * units).clamp(min_units, max_units.max(units + 1));
        v.reserve_exact(target * unit - v.len());
    }
}

/// `a + x · w`, fused where the target has FMA (x86-64-v3, this crate's build target):
/// Rust never fuses `a + x * w` by itself, and without FMA `mul_add` is a slow library
/// call.
#[inline(always)]
pub(super) fn madd(a: f32, x: f32, w: f32) -> f32 {
    #[cfg(target_feature = "fma")]
    {
        x.mul_add(w, a)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        a + x * w
    }
}

/// `P` outputs of a panel times `x`: `Σ_i x[i] · panel[i]`, lane by lane, in order of `i`
/// with fused multiply-adds ([`panel_mul2`] adds in the same order, so a user's scores
/// do not depend on the batch they were computed in).
#[inline(always)]
pub(super) fn panel_mul(x: &[f32], panel: &[[f32; P]]) -> [f32; P] {
    let mut acc = [0.0f32; P];
    for (&xi, col) in x.iter().zip(panel) {
        for (a, &w) in acc.iter_mut().zip(col) {
            *a = madd(*a, xi, w);
        }
    }
    acc
}

/// [`panel_mul`] for two vectors at once: each panel row is loaded once and used by both,
/// and the two sets of accumulators are independent chains. One vector at a time, every
/// step waited on the previous step's addition into the same four registers: 16 µs to
/// score 3,700 items for a user, against 7.8 µs a user two at a time.
#[inline(always)]
pub(super) fn panel_mul2(x: &[f32], y: &[f32], panel: &[[f32; P]]) -> ([f32; P], [f32; P]) {
    let n = x.len().min(y.len()).min(panel.len());
    let mut ax = [0.0f32; P];
    let mut ay = [0.0f32; P];
    for i in 0..n {
        let (xi, yi, c) = (x[i], y[i], &panel[i]);
        for j in 0..P {
            ax[j] = madd(ax[j], xi, c[j]);
            ay[j] = madd(ay[j], yi, c[j]);
        }
    }
    (ax, ay)
}

/// `out = Σ_t weights[t] · rows[t][off..off + out.len()]` over the rows (`stride` values
/// each) of a row-major matrix, 16 outputs at a time held in registers.
pub(super) fn weighted_rows(
    weights: &[f32],
    rows: &[f32],
    stride: usize,
    off: usize,
    out: &mut [f32],
) {
    let (chunks, rest) = out.as_chunks_mut::<16>();
    for (c, oc) in chunks.iter_mut().enumerate() {
        let start = off + c * 16;
        let mut acc = [0.0f32; 16];
        for (&w, row) in weights.iter().zip(rows.chunks_exact(stride)) {
            for (a, &v) in acc.iter_mut().zip(&row[start..start + 16]) {
                *a += w * v;
            }
        }
        *oc = acc;
    }
    let start = off + chunks.len() * 16;
    rest.fill(0.0);
    for (&w, row) in weights.iter().zip(rows.chunks_exact(stride)) {
        for (o, &v) in rest.iter_mut().zip(&row[start..]) {
            *o += w * v;
        }
    }
}

/// [`panel_mul`] over a bf16 panel, widened on the fly (one shift per value).
#[inline(always)]
pub(super) fn panel_mul_bf16(x: &[f32], panel: &[[u16; P]]) -> [f32; P] {
    let mut acc = [0.0f32; P];
    for (&xi, col) in x.iter().zip(panel) {
        for (a, &w) in acc.iter_mut().zip(col) {
            *a += xi * bf16_to_f32(w);
        }
    }
    acc
}

/// Widens a panel of 16-bit values into f32.
pub(super) fn widen(bits: &[[u16; P]], out: &mut [[f32; P]], f: impl Fn(u16) -> f32) {
    for (o, b) in out.iter_mut().zip(bits) {
        for (o, &b) in o.iter_mut().zip(b) {
            *o = f(b);
        }
    }
}

/// An int8 panel widened to f32 with each lane's scale folded in.
#[inline(always)]
pub(super) fn widen_i8(q: &[[i8; P]], scale: &[f32; P], out: &mut [[f32; P]]) {
    for (o, q) in out.iter_mut().zip(q) {
        for j in 0..P {
            o[j] = f32::from(q[j]) * scale[j];
        }
    }
}

/// [`panel_mul`] over an int8 panel: the products accumulate in f32 over the raw values
/// and each lane's scale is applied once at the end.
#[inline(always)]
pub(super) fn panel_mul_i8(x: &[f32], panel: &[[i8; P]], scale: &[f32; P]) -> [f32; P] {
    let mut acc = [0.0f32; P];
    for (&xi, q) in x.iter().zip(panel) {
        for j in 0..P {
            acc[j] = madd(acc[j], xi, f32::from(q[j]));
        }
    }
    for j in 0..P {
        acc[j] *= scale[j];
    }
    acc
}

pub(super) fn add_assign(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + crate::model::ops::fast_exp(-x))
}

/// The lanes of an accumulator, summed. Kept out of line on purpose: inlined, LLVM's SLP
/// vectoriser reshapes the accumulation loops around this reduction into two-lane
/// shuffles, which made the loops three times slower.
#[inline(never)]
pub(super) fn reduce(acc: &[f32; 16]) -> f32 {
    acc.iter().sum()
}

/// `a · b` with 16 independent accumulator lanes.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<16>();
    let (bc, br) = b.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for (x, y) in ac.iter().zip(bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    reduce(&acc) + ar.iter().zip(br).map(|(x, y)| x * y).sum::<f32>()
}

/// `Σ a` with 16 independent accumulator lanes.
pub(super) fn sum(a: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for x in ac {
        for (s, &x) in acc.iter_mut().zip(x) {
            *s += x;
        }
    }
    reduce(&acc) + ar.iter().sum::<f32>()
}

/// The largest of `a` (−∞ when empty), 16 lanes at a time.
pub(super) fn max_of(a: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<16>();
    let mut acc = [f32::NEG_INFINITY; 16];
    for x in ac {
        for (m, &x) in acc.iter_mut().zip(x) {
            *m = m.max(x);
        }
    }
    ar.iter().fold(reduce_max(&acc), |m, &x| m.max(x))
}

/// Out of line for the same reason as [`reduce`].
#[inline(never)]
pub(super) fn reduce_max(acc: &[f32; 16]) -> f32 {
    acc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}
