//! Compressed sparse rows of item-to-item weights, shared by the neighbourhood and
//! transition models: item catalogues are too large for dense `n × n` matrices.

use crate::event::ItemId;

/// Rows of `(column, weight)` pairs, each row sorted by column.
#[derive(Debug, Clone, Default)]
pub(crate) struct SparseRows {
    offsets: Vec<usize>,
    cols: Vec<ItemId>,
    vals: Vec<f32>,
}

impl SparseRows {
    /// Packs per-row `(columns, weights)` vectors, row `r` being `rows[r]`.
    pub(crate) fn from_rows(rows: Vec<(Vec<ItemId>, Vec<f32>)>) -> Self {
        let nnz = rows.iter().map(|(c, _)| c.len()).sum();
        let mut packed = SparseRows {
            offsets: Vec::with_capacity(rows.len() + 1),
            cols: Vec::with_capacity(nnz),
            vals: Vec::with_capacity(nnz),
        };
        packed.offsets.push(0);
        for (cols, vals) in rows {
            debug_assert_eq!(cols.len(), vals.len());
            packed.cols.extend_from_slice(&cols);
            packed.vals.extend_from_slice(&vals);
            packed.offsets.push(packed.cols.len());
        }
        packed
    }

    /// The columns and weights of row `row` (empty past the last row).
    pub(crate) fn row(&self, row: ItemId) -> (&[ItemId], &[f32]) {
        let row = row as usize;
        if row + 1 >= self.offsets.len() {
            return (&[], &[]);
        }
        let range = self.offsets[row]..self.offsets[row + 1];
        (&self.cols[range.clone()], &self.vals[range])
    }

    /// Adds `weight * row` into the dense vector `out`.
    pub(crate) fn add_row_into(&self, row: ItemId, weight: f32, out: &mut [f32]) {
        let (cols, vals) = self.row(row);
        for (&c, &v) in cols.iter().zip(vals) {
            out[c as usize] += weight * v;
        }
    }

    /// Number of stored entries.
    pub(crate) fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// Bytes held: offsets, columns and values.
    pub(crate) fn bytes(&self) -> usize {
        self.offsets.len() * std::mem::size_of::<usize>()
            + self.cols.len() * 4
            + self.vals.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_accumulate() {
        let m = SparseRows::from_rows(vec![
            (vec![1, 2], vec![0.5, 1.0]),
            (vec![], vec![]),
            (vec![0], vec![2.0]),
        ]);
        assert_eq!(m.nnz(), 3);
        assert_eq!(m.row(0), (&[1, 2][..], &[0.5, 1.0][..]));
        assert_eq!(m.row(1).0.len(), 0);
        assert_eq!(m.row(7).0.len(), 0);
        let mut out = vec![0.0; 3];
        m.add_row_into(0, 2.0, &mut out);
        m.add_row_into(2, 1.0, &mut out);
        assert_eq!(out, vec![2.0, 1.0, 2.0]);
    }
}
