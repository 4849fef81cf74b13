//! The trainer's unit tests: the training windows, strided or not, and where they stop.

use super::windows::windows;
use crate::data::{Dataset, DatasetBuilder};
use crate::eval::{Holdout, Split};
use crate::event::EventKind;
use crate::model::Config;

/// One user with items 0..n in order (validation target n-2, test target n-1).
fn one_user(n: usize) -> Dataset {
    let mut b = DatasetBuilder::new("line");
    for j in 0..n {
        b.push("u", &format!("i{j}"), j as i64, EventKind::Click, 0.0);
    }
    b.finish()
}

fn spans(n: usize, max_len: usize, stride: usize, split: Split) -> Vec<(u32, u32, usize)> {
    let data = one_user(n);
    let holdout = Holdout::new(&data, split).expect("holdout");
    let cfg = Config {
        max_len,
        ..Config::default()
    };
    windows(&data, &holdout, &cfg, stride, false)
        .iter()
        .map(|w| {
            // Each position predicts the item that follows it in the history.
            for (t, y) in w.tokens.iter().zip(&w.targets) {
                let h = &data.users[0].items;
                let j = h.iter().position(|i| *i == t - 1).expect("token");
                assert_eq!(h[j + 1], *y);
            }
            (
                w.tokens[0] - 1,
                *w.targets.last().expect("target"),
                w.tokens.len(),
            )
        })
        .collect()
}

#[test]
fn strided_windows_cover_a_long_history_and_never_reach_the_target() {
    // 23 items: validation target at 21, so positions 0..20 predict 1..=20.
    let id =
        |name: &str, d: &Dataset| d.item_names.iter().position(|n| n == name).expect("item") as u32;
    let data = one_user(23);
    // One window: the most recent max_len positions.
    assert_eq!(
        spans(23, 8, 0, Split::Validation),
        vec![(id("i12", &data), id("i20", &data), 8)]
    );
    // Stride 8: non-overlapping windows back to the start, the first one shorter.
    assert_eq!(
        spans(23, 8, 8, Split::Validation),
        vec![
            (id("i12", &data), id("i20", &data), 8),
            (id("i4", &data), id("i12", &data), 8),
            (id("i0", &data), id("i4", &data), 4),
        ]
    );
    // Stride 5: overlapping windows.
    assert_eq!(
        spans(23, 8, 5, Split::Validation),
        vec![
            (id("i12", &data), id("i20", &data), 8),
            (id("i7", &data), id("i15", &data), 8),
            (id("i2", &data), id("i10", &data), 8),
            (id("i0", &data), id("i5", &data), 5),
        ]
    );
    // A short user gives one window whatever the stride.
    assert_eq!(spans(6, 8, 3, Split::Validation).len(), 1);
    // Before the test target, the validation target is the last one learned.
    assert_eq!(
        spans(23, 8, 0, Split::Test),
        vec![(id("i13", &data), id("i21", &data), 8)]
    );
}
