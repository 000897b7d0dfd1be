//! Union-find over row indices, with deterministic cluster representatives.
//!
//! Every cluster's root is its smallest row index, whatever order the edges arrive in: [`UnionFind::union`]
//! always hangs the larger root under the smaller one. The kept member of a cluster ("keeper") is
//! chosen by [`keepers`]: the first row in input order, or the row with the highest score (ties go to
//! the earlier row).

use crate::{Error, Result};

/// Disjoint sets over `0..n` whose roots are the smallest member of each set.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    /// `n` singleton sets.
    pub fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The root (smallest member) of `x`'s set; halves the path as it goes.
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// Merge the sets of `a` and `b`; the smaller root becomes the root of both.
    pub fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra < rb {
            self.parent[rb as usize] = ra;
        } else if rb < ra {
            self.parent[ra as usize] = rb;
        }
    }

    /// The root of every element.
    pub fn roots(&mut self) -> Vec<u32> {
        (0..self.parent.len() as u32)
            .map(|x| self.find(x))
            .collect()
    }
}

/// The cluster root (smallest member) of every row of `0..n`, given undirected edges.
pub fn clusters(n: usize, edges: &[(u32, u32)]) -> Result<Vec<u32>> {
    if n > u32::MAX as usize {
        return Err(Error::InvalidArgument("at most 2^32 - 1 rows".into()));
    }
    let mut uf = UnionFind::new(n);
    for &(a, b) in edges {
        if a as usize >= n || b as usize >= n {
            return Err(Error::InvalidArgument(format!(
                "edge ({a}, {b}) names a row outside 0..{n}: pass row indices of the same table"
            )));
        }
        uf.union(a, b);
    }
    Ok(uf.roots())
}

/// The kept row of every row's cluster. With `scores`, the highest-scoring member is kept (ties: the
/// earlier row); without, the first member in input order. `roots` comes from [`clusters`].
pub fn keepers(roots: &[u32], scores: Option<&[f64]>) -> Result<Vec<u32>> {
    let n = roots.len();
    let Some(scores) = scores else {
        return Ok(roots.to_vec());
    };
    if scores.len() != n {
        return Err(Error::InvalidArgument(format!(
            "scores has {} entries but there are {n} rows: pass one score per row",
            scores.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::InvalidArgument(format!(
            "scores[{i}] is NaN: replace missing scores (e.g. with -inf) before clustering"
        )));
    }
    // best[root] = best member seen so far; rows are visited in order, so ties keep the earlier row.
    let mut best: Vec<u32> = (0..n as u32).collect();
    for (i, &r) in roots.iter().enumerate() {
        let b = best[r as usize] as usize;
        if scores[i] > scores[b] {
            best[r as usize] = i as u32;
        }
    }
    Ok(roots.iter().map(|&r| best[r as usize]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_smallest_members() {
        let r = clusters(6, &[(4, 2), (5, 4), (1, 3)]).unwrap();
        assert_eq!(r, vec![0, 1, 2, 1, 2, 2]);
        assert!(clusters(3, &[(0, 3)]).is_err());
    }

    #[test]
    fn keepers_by_score_with_ties() {
        let r = clusters(4, &[(0, 1), (1, 2)]).unwrap();
        let k = keepers(&r, Some(&[1.0, 3.0, 3.0, 0.0])).unwrap();
        assert_eq!(k, vec![1, 1, 1, 3]);
        assert!(keepers(&r, Some(&[f64::NAN, 0.0, 0.0, 0.0])).is_err());
        assert!(keepers(&r, Some(&[0.0])).is_err());
    }
}
