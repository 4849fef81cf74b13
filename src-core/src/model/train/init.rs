//! Warm start: the attention model's item table initialised from a pre-trained
//! encoder's text vectors instead of random values.
//!
//! The text vectors (384-d for MiniLM) are projected to the model's width by PCA
//! (`linfa-reduction`): the directions along which the catalogue's texts differ most. The
//! projections are centred and scaled so that their spread equals the random
//! initialisation's (standard deviation `1/√dim`), so that the attention blocks and the
//! learning rate see the same magnitudes either way; only the geometry differs (items
//! with similar text start close). Items without text get the random initialisation.

use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use linfa_reduction::Pca;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::TextTable;

/// How the item table was initialised, for the report and the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitInfo {
    /// What the vectors came from (the encoder's identity).
    pub source: String,
    /// Items that had text (the others were initialised at random).
    pub items_with_text: usize,
    /// Items in the catalogue.
    pub items: usize,
    /// The share of the text vectors' variance the kept components explain.
    pub explained_variance: f64,
}

/// The initial item table: `rows[i * dim..(i + 1) * dim]` is item `i` (the model's row
/// `i + 1`; row 0 is padding), `None` for an item without text.
#[derive(Debug, Clone)]
pub struct ItemInit {
    pub dim: usize,
    pub rows: Vec<Option<Vec<f32>>>,
    pub info: InitInfo,
}

/// Projects the text vectors of items `0..n_items` to `dim` by PCA, scaled to the random
/// initialisation's spread. `source` names the encoder in the report.
pub fn from_text(table: &TextTable, n_items: usize, dim: usize, source: &str) -> Result<ItemInit> {
    let with_text: Vec<usize> = (0..n_items)
        .filter(|&i| table.get(i as crate::event::ItemId).is_some())
        .collect();
    if with_text.len() <= dim {
        return Err(Error::config(
            "init_from_text",
            format!(
                "{} of {n_items} items have text; a projection to dim {dim} needs more than {dim}",
                with_text.len()
            ),
        ));
    }
    if table.dim() < dim {
        return Err(Error::config(
            "init_from_text",
            format!(
                "the text vectors are {}-d, narrower than the model's dim {dim}",
                table.dim()
            ),
        ));
    }
    let width = table.dim();
    let mut x = Array2::<f64>::zeros((with_text.len(), width));
    for (r, &i) in with_text.iter().enumerate() {
        let v = table.get(i as crate::event::ItemId).unwrap_or_default();
        for (c, &value) in v.iter().enumerate() {
            x[[r, c]] = f64::from(value);
        }
    }
    let data = DatasetBase::from(x);
    let x = data.records();
    let pca = Pca::params(dim)
        .fit(&data)
        .map_err(|e| Error::config("init_from_text", format!("PCA failed: {e}")))?;
    // linfa's ratio is over the kept components only (and its `explained_variance`
    // divides by the component count), so the share of the whole variance is computed
    // here: the kept singular values' squares over the columns' summed squares.
    let total: f64 = x
        .columns()
        .into_iter()
        .map(|c| {
            let m = c.mean().unwrap_or(0.0);
            c.iter().map(|v| (v - m) * (v - m)).sum::<f64>()
        })
        .sum();
    let kept: f64 = pca.singular_values().iter().map(|s| s * s).sum();
    let explained_variance = if total > 0.0 {
        (kept / total).min(1.0)
    } else {
        0.0
    };
    let projected: Array2<f64> = pca.predict(x);
    let mean = projected.mean().unwrap_or(0.0);
    let var = projected
        .mapv(|v| (v - mean) * (v - mean))
        .mean()
        .unwrap_or(0.0);
    let target = 1.0 / (dim as f64).sqrt();
    let scale = if var > 0.0 { target / var.sqrt() } else { 0.0 };
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; n_items];
    for (r, &i) in with_text.iter().enumerate() {
        rows[i] = Some(
            projected
                .row(r)
                .iter()
                .map(|&v| ((v - mean) * scale) as f32)
                .collect(),
        );
    }
    Ok(ItemInit {
        dim,
        rows,
        info: InitInfo {
            source: source.to_owned(),
            items_with_text: with_text.len(),
            items: n_items,
            explained_variance,
        },
    })
}

/// Overwrites the item rows of the model's `item_emb.weight` (padding row 0 left at
/// zero) with `init`'s, leaving the random rows of items without text.
pub(super) fn apply(varmap: &candle_nn::VarMap, init: &ItemInit) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::config("init_from_text", "the weights' lock is poisoned"))?;
    let var = data
        .get("item_emb.weight")
        .ok_or_else(|| Error::config("init_from_text", "the model has no item_emb.weight"))?;
    let (rows, dim) = var.dims2()?;
    if dim != init.dim || rows != init.rows.len() + 1 {
        return Err(Error::config(
            "init_from_text",
            format!(
                "the item table is {rows}×{dim}, the initial values {}×{}",
                init.rows.len() + 1,
                init.dim
            ),
        ));
    }
    let mut values = var
        .as_tensor()
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    for (i, row) in init.rows.iter().enumerate() {
        if let Some(row) = row {
            values[(i + 1) * dim..(i + 2) * dim].copy_from_slice(row);
        }
    }
    let t = candle_core::Tensor::from_vec(values, (rows, dim), var.device())?;
    var.set(&t.to_dtype(var.dtype())?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::seqrec::fresh;
    use crate::model::Config;

    /// `n` unit vectors in 32-d around two directions (even items near one, odd near the
    /// other), with item `skip` left without text.
    fn two_clusters(n: usize, skip: usize) -> TextTable {
        let mut t = TextTable::new(32);
        let mut state = 7_u64;
        let mut noise = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.4
        };
        for i in 0..n {
            if i == skip {
                continue;
            }
            let mut v: Vec<f32> = (0..32).map(|_| noise()).collect();
            v[i % 2] += 1.0;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            t.set(i as crate::event::ItemId, &v);
        }
        t
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        d / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    }

    #[test]
    fn the_projection_keeps_the_clusters_at_the_random_spread() {
        let init = from_text(&two_clusters(200, 7), 200, 8, "test").expect("projects");
        assert_eq!(init.rows.len(), 200);
        assert!(init.rows[7].is_none(), "no text, no row");
        assert_eq!(init.info.items_with_text, 199);
        assert!(
            init.info.explained_variance > 0.3 && init.info.explained_variance <= 1.0,
            "{}",
            init.info.explained_variance
        );
        let values: Vec<f32> = init.rows.iter().flatten().flatten().copied().collect();
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt();
        assert!(mean.abs() < 1e-4, "centred: {mean}");
        assert!((std - 1.0 / 8f32.sqrt()).abs() < 1e-3, "spread {std}");
        // Items of one cluster start close, of the two clusters apart.
        let row = |i: usize| init.rows[i].as_deref().expect("row");
        assert!(cos(row(0), row(2)) > 0.5, "{}", cos(row(0), row(2)));
        assert!(cos(row(0), row(1)) < 0.0, "{}", cos(row(0), row(1)));
    }

    #[test]
    fn too_few_items_with_text_or_too_narrow_vectors_are_refused() {
        let err = from_text(&two_clusters(6, 99), 6, 8, "t").expect_err("6 items, dim 8");
        assert!(err.to_string().contains("6 of 6 items have text"), "{err}");
        let err = from_text(&two_clusters(100, 99), 100, 64, "t").expect_err("32-d into 64");
        assert!(err.to_string().contains("narrower"), "{err}");
    }

    #[test]
    fn apply_sets_the_item_rows_and_keeps_padding_and_textless_items() {
        let cfg = Config {
            dim: 8,
            n_items: 50,
            layers: 1,
            heads: 2,
            max_len: 8,
            ..Config::default()
        };
        let (varmap, _) = fresh(&cfg, &candle_core::Device::Cpu, 1).expect("model");
        let before = varmap.data().lock().expect("lock")["item_emb.weight"]
            .as_tensor()
            .to_vec2::<f32>()
            .expect("rows");
        let init = from_text(&two_clusters(50, 3), 50, 8, "t").expect("init");
        apply(&varmap, &init).expect("applies");
        let after = varmap.data().lock().expect("lock")["item_emb.weight"]
            .as_tensor()
            .to_vec2::<f32>()
            .expect("rows");
        assert!(after[0].iter().all(|&v| v == 0.0), "padding row stays zero");
        assert_eq!(after[1], init.rows[0].clone().expect("item 0"));
        assert_eq!(after[4], before[4], "item 3 has no text: random row kept");
        // A table of another width is refused.
        let narrow = from_text(&two_clusters(50, 99), 50, 4, "t").expect("init");
        let err = apply(&varmap, &narrow).expect_err("4 wide into 8");
        assert!(err.to_string().contains("51×8"), "{err}");
    }
}
