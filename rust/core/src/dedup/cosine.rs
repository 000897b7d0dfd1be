//! Exact all-pairs cosine similarity above a threshold, by blocked matrix products.
//!
//! Shapes: `N` rows (texts), `D` embedding width, `T` tile side (`block` rows). The rows are
//! L2-normalised once, then every tile pair `(bi, bj)`, `bj >= bi`, is one `T x D . D x T` product
//! (matrixmultiply's runtime-dispatched SIMD kernel via ndarray, one thread per tile through rayon),
//! scanned for similarities at or above the threshold. Memory beyond the input is the normalised copy
//! (`N * D * 4` bytes) plus one `T x T` f32 tile per thread, so it stays exact well past 100K rows;
//! time grows as `N^2 * D / 2`.
//!
//! Rows whose norm is zero have no direction and never pair. Non-finite values are an error.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::{Error, Result};

/// Default tile side.
pub const DEFAULT_BLOCK: usize = 2048;

/// Every pair `(i, j, cosine)` with `i < j` and `cosine >= threshold`, sorted by `(i, j)`.
/// `data_ND` is row-major `(n, d)` float32.
#[allow(non_snake_case)]
pub fn cosine_pairs(
    data_ND: &[f32],
    n: usize,
    d: usize,
    threshold: f32,
    block: usize,
) -> Result<Vec<(u32, u32, f32)>> {
    if d == 0 || data_ND.len() != n * d {
        return Err(Error::InvalidArgument(format!(
            "embeddings must be a non-empty (n, d) matrix: got {} values for n={n}, d={d}",
            data_ND.len()
        )));
    }
    if n > u32::MAX as usize {
        return Err(Error::InvalidArgument("at most 2^32 - 1 rows".into()));
    }
    if !threshold.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "threshold must be finite, got {threshold}"
        )));
    }
    if block == 0 {
        return Err(Error::InvalidArgument(
            "block must be at least 1 (2048 is a good tile side)".into(),
        ));
    }
    if let Some(pos) = data_ND.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "embeddings row {} has a non-finite value: drop or recompute that row",
            pos / d
        )));
    }
    let mut unit_ND = data_ND.to_vec();
    let valid_N: Vec<bool> = unit_ND
        .par_chunks_mut(d)
        .map(|row| {
            let norm = row
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 {
                return false;
            }
            let inv = (1.0 / norm) as f32;
            row.iter_mut().for_each(|v| *v *= inv);
            true
        })
        .collect();

    let nb = n.div_ceil(block);
    let tiles: Vec<(usize, usize)> = (0..nb)
        .flat_map(|bi| (bi..nb).map(move |bj| (bi, bj)))
        .collect();
    let per_tile: Vec<Vec<(u32, u32, f32)>> = tiles
        .par_iter()
        .map_init(
            || vec![0f32; block.min(n) * block.min(n)],
            |buf, &(bi, bj)| {
                let (r0, r1) = (bi * block, ((bi + 1) * block).min(n));
                let (c0, c1) = (bj * block, ((bj + 1) * block).min(n));
                let view = |a: usize, b: usize| {
                    ArrayView2::from_shape((b - a, d), &unit_ND[a * d..b * d]).expect("tile shape")
                };
                let (a_TD, b_TD) = (view(r0, r1), view(c0, c1));
                let mut c_TT = ArrayViewMut2::from_shape(
                    (r1 - r0, c1 - c0),
                    &mut buf[..(r1 - r0) * (c1 - c0)],
                )
                .expect("tile shape");
                general_mat_mul(1.0, &a_TD, &b_TD.t(), 0.0, &mut c_TT);
                let mut out = Vec::new();
                for (ti, row) in c_TT.outer_iter().enumerate() {
                    let i = r0 + ti;
                    if !valid_N[i] {
                        continue;
                    }
                    // On a diagonal tile only the strict upper triangle is a new pair.
                    let start = if bi == bj { ti + 1 } else { 0 };
                    for (tj, &sim) in row.iter().enumerate().skip(start) {
                        if sim >= threshold && valid_N[c0 + tj] {
                            out.push((i as u32, (c0 + tj) as u32, sim));
                        }
                    }
                }
                out
            },
        )
        .collect();
    let mut pairs: Vec<(u32, u32, f32)> = per_tile.into_iter().flatten().collect();
    pairs.par_sort_unstable_by_key(|&(i, j, _)| (i, j));
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_on_small_input_for_any_block() {
        let (n, d) = (37, 5);
        let data: Vec<f32> = (0..n * d)
            .map(|k| (((k * 7919) % 23) as f32 - 11.0) / 7.0)
            .collect();
        let t = 0.3f64;
        let (mut naive, mut borderline) = (Vec::new(), Vec::new());
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (&data[i * d..(i + 1) * d], &data[j * d..(j + 1) * d]);
                let dot: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(&x, &y)| f64::from(x) * f64::from(y))
                    .sum();
                let na = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                let nb = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                let c = dot / (na * nb);
                if (c - t).abs() < 1e-5 {
                    borderline.push((i as u32, j as u32));
                } else if c >= t {
                    naive.push((i as u32, j as u32));
                }
            }
        }
        assert!(
            naive.len() > 10,
            "the fixture must have pairs above the threshold"
        );
        for block in [1, 4, 16, 64] {
            let got: Vec<(u32, u32)> = cosine_pairs(&data, n, d, t as f32, block)
                .unwrap()
                .into_iter()
                .map(|(i, j, _)| (i, j))
                .filter(|p| !borderline.contains(p))
                .collect();
            assert_eq!(got, naive, "block {block}");
        }
    }

    #[test]
    fn zero_rows_never_pair_and_nan_is_an_error() {
        let data = [0.0, 0.0, 1.0, 0.0, 2.0, 0.0];
        let p = cosine_pairs(&data, 3, 2, -1.0, 2).unwrap();
        assert_eq!(
            p.iter().map(|&(i, j, _)| (i, j)).collect::<Vec<_>>(),
            vec![(1, 2)]
        );
        assert!(cosine_pairs(&[f32::NAN, 1.0], 1, 2, 0.5, 2).is_err());
        assert!(cosine_pairs(&[1.0, 1.0, 1.0], 1, 2, 0.5, 2).is_err());
    }
}
