//! Random draws and hashes shared by the generator: cumulative weights, Zipf weights,
//! Gaussian, exponential and geometric draws, SplitMix64.

use rand::Rng;

/// Attempts at drawing a fresh value by rejection before falling back to a scan.
pub(super) const REJECTION_TRIES: usize = 16;

pub(super) fn zipf_weight(rank: usize, exponent: f64) -> f64 {
    ((rank + 1) as f64).powf(-exponent)
}

pub(super) fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    weights
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// An index drawn in proportion to the increments of the non-empty cumulative `cdf`.
pub(super) fn sample_cdf(cdf: &[f64], rng: &mut impl Rng) -> usize {
    let total = cdf[cdf.len() - 1];
    let x = rng.gen::<f64>() * total;
    cdf.partition_point(|&c| c <= x).min(cdf.len() - 1)
}

pub(super) fn shuffle<T>(xs: &mut [T], rng: &mut impl Rng) {
    for i in (1..xs.len()).rev() {
        xs.swap(i, rng.gen_range(0..=i));
    }
}

/// A standard normal draw (Box–Muller, one of the pair).
pub(super) fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An exponential draw with the given mean.
pub(super) fn exponential(rng: &mut impl Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

/// A geometric count on `1, 2, …` with the given mean (≥ 1).
pub(super) fn geometric(rng: &mut impl Rng, mean: f64) -> usize {
    if mean <= 1.0 {
        return 1;
    }
    let u = 1.0 - rng.gen::<f64>();
    1 + (u.ln() / (1.0 - 1.0 / mean).ln()).floor() as usize
}

/// SplitMix64's finaliser: a cheap, well-mixed hash of a `u64`.
pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits of `h` as a number in [0, 1).
pub(super) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}
