//! The compact encodings of the item table: IEEE half and bfloat16 (round to nearest
//! even; half flushes values below 2^-14 to zero) and symmetric int8 with a scale per row.

/// f32 → f16 bits, rounding to nearest even (F. Giesen's `float_to_half_fast3_rtne`),
/// with f16 subnormals flushed to zero so that widening never meets f32 denormals (slow
/// on x86).
pub(super) fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    let mag = if abs > 0x7f80_0000 {
        0x7e00 // NaN
    } else if abs >= 0x4780_0000 {
        0x7c00 // ≥ 65536: infinity
    } else if abs < 0x3880_0000 {
        0 // below 2^-14: flushed to zero
    } else {
        let odd = (abs >> 13) & 1;
        ((abs - ((127 - 15) << 23) + 0xfff + odd) >> 13) as u16
    };
    sign | mag
}

/// f16 bits → f32 without branches (so that loops over it vectorise): the f16 exponent and
/// mantissa sit in an f32 scaled by 2^-112, which a multiplication by 2^112 undoes. Zero,
/// normals and subnormals are exact; infinities and NaNs (never in a table) are not.
#[inline(always)]
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let mag = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(mag.to_bits() | ((h & 0x8000) << 16))
}

/// f32 → bf16 bits, rounding to nearest even.
pub(super) fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
pub(super) fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Symmetric int8 quantisation of one vector into `out`: the largest magnitude maps to
/// 127, each value to the nearest step; returns the scale (`value ≈ q · scale`; 0 for a
/// zero vector).
pub fn quantise_i8(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let scale = max / 127.0;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}
