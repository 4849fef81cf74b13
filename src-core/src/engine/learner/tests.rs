//! The learner's FTRL: the warm start gives the strategy's weights and survives extreme
//! knobs, and evidence moves the weight to the informative source.

use linfa::prelude::*;
use ndarray::{Array1, Array2};

use super::ftrl::BETA;
use super::*;

#[test]
fn warm_start_gives_the_strategy_weights() {
    let w = [1.0, 0.2, 0.0, 0.5, 2.0, 0.1, 0.7];
    let f = warm_ftrl(w, 0.1);
    let got = f.get_weights();
    for j in 0..N_SOURCES {
        assert!((got[j] - w[j]).abs() < 1e-5, "{j}: {} vs {}", got[j], w[j]);
    }
    assert!(got[N_SOURCES].abs() < 1e-6);
}

#[test]
fn warm_start_never_panics_on_extreme_knobs() {
    for alpha in [1e-40, 0.0, -1.0, f32::NAN, f32::INFINITY] {
        let f = warm_ftrl([1000.0, -1000.0, 0.0, 1.0, 2.0, 3.0, 0.5], alpha);
        assert!(
            f.get_weights().iter().all(|w| w.is_finite()),
            "alpha {alpha}"
        );
    }
}

#[test]
fn ftrl_moves_weight_to_the_informative_source() {
    let alpha = 0.5;
    let mut m = warm_ftrl([0.5; N_SOURCES], alpha);
    let params = Ftrl::params()
        .alpha(alpha)
        .beta(BETA)
        .l1_ratio(0.0)
        .l2_ratio(0.0);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
    use rand::{Rng, SeedableRng};
    for _ in 0..200 {
        let mut x = Array2::zeros((32, N_FEATURES));
        let mut y = Array1::from_elem(32, false);
        for i in 0..32 {
            for j in 0..N_SOURCES {
                x[[i, j]] = rng.gen::<f32>();
            }
            x[[i, N_SOURCES]] = 1.0;
            // Only source 4 (markov) predicts the reward.
            y[i] = rng.gen::<f32>() < x[[i, 4]] * 0.8;
        }
        m = params
            .fit_with(Some(m), &linfa::Dataset::new(x, y))
            .expect("fit");
    }
    let w = m.get_weights();
    for j in [0, 1, 2, 3, 5] {
        assert!(w[4] > w[j] + 0.5, "markov {} vs source {j} {}", w[4], w[j]);
    }
}
