//! Bindings for `s1kit_core::dedup`. Each call copies its Python inputs into owned Rust values (or
//! borrows a read-only numpy buffer), releases the GIL for the work, and returns numpy arrays.
//! Callers must not mutate an input array from another thread during a call.
//!
//! Fork safety: rayon's global pool does not survive `fork()` (the child has none of its threads, so
//! the first parallel call would hang). [`parallel`] runs the work on the global pool only in the
//! process that created the module; a forked child gets its own pool, built on first use.

use std::sync::{Arc, Mutex, OnceLock};

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use s1kit_core::dedup::{cosine, exact, lsh, minhash, ngram, normalize, union_find};

use crate::to_py_err;

/// The process that loaded the module; rayon's global pool belongs to it.
static OWNER_PID: OnceLock<u32> = OnceLock::new();
/// A pool for a forked child: `(pid, pool)`.
static CHILD_POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// Run `f` (which may use rayon) on a thread pool that exists in this process. Called inside
/// `py.detach`, so the GIL is not held.
fn parallel<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let pid = std::process::id();
    if *OWNER_PID.get_or_init(|| pid) == pid {
        return f();
    }
    let pool = {
        let mut guard = CHILD_POOL.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some((p, pool)) if *p == pid => pool.clone(),
            _ => {
                let pool = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .build()
                        .expect("a rayon pool for the forked child"),
                );
                *guard = Some((pid, pool.clone()));
                pool
            }
        }
    };
    pool.install(f)
}

type I64s<'py> = Bound<'py, PyArray1<i64>>;
type Pairs<'py> = (I64s<'py>, I64s<'py>);
/// `(i, j, value)` columns of scored pairs.
type Scored<'py, T> = (I64s<'py>, I64s<'py>, Bound<'py, PyArray1<T>>);
type Signatures<'py> = (Bound<'py, PyArray2<u64>>, Bound<'py, PyArray1<bool>>);

fn refs(texts: &[String]) -> Vec<&str> {
    texts.iter().map(String::as_str).collect()
}

fn i64s<'py>(py: Python<'py>, v: impl Iterator<Item = u32>) -> Bound<'py, PyArray1<i64>> {
    PyArray1::from_vec(py, v.map(i64::from).collect())
}

/// `" ".join(text.lower().split())`, with Python's exact whitespace set.
#[pyfunction]
fn normalize_text(text: &str) -> String {
    normalize::normalize(text)
}

/// The word n-grams of `text` as strings (one shingle for texts shorter than `n` words).
#[pyfunction]
#[pyo3(signature = (text, n=8))]
fn word_ngrams(text: &str, n: usize) -> PyResult<Vec<String>> {
    ngram::word_ngrams(text, n).map_err(to_py_err)
}

/// The 64-bit hashes of `text`'s word n-grams, in order.
#[pyfunction]
#[pyo3(signature = (text, n=8))]
fn ngram_hashes<'py>(py: Python<'py>, text: &str, n: usize) -> PyResult<Bound<'py, PyArray1<u64>>> {
    Ok(PyArray1::from_vec(
        py,
        ngram::shingle_hashes(text, n).map_err(to_py_err)?,
    ))
}

/// An n-gram index of evaluation items, for decontamination.
#[pyclass(name = "NgramIndex", module = "s1kit._core", frozen)]
struct PyNgramIndex {
    inner: ngram::NgramIndex,
}

#[pymethods]
impl PyNgramIndex {
    #[new]
    #[pyo3(signature = (items, n=8))]
    fn new(py: Python<'_>, items: Vec<String>, n: usize) -> PyResult<Self> {
        let inner = py
            .detach(|| parallel(|| ngram::NgramIndex::build(&refs(&items), n)))
            .map_err(to_py_err)?;
        Ok(PyNgramIndex { inner })
    }

    #[getter]
    fn n(&self) -> usize {
        self.inner.n()
    }
    #[getter]
    fn num_items(&self) -> usize {
        self.inner.num_items()
    }
    #[getter]
    fn num_ngrams(&self) -> usize {
        self.inner.num_ngrams()
    }

    #[pyo3(signature = (docs, min_shared=1))]
    fn decontaminate<'py>(
        &self,
        py: Python<'py>,
        docs: Vec<String>,
        min_shared: u32,
    ) -> PyResult<Scored<'py, i64>> {
        let m = py
            .detach(|| parallel(|| self.inner.decontaminate(&refs(&docs), min_shared)))
            .map_err(to_py_err)?;
        Ok((
            i64s(py, m.iter().map(|x| x.doc)),
            i64s(py, m.iter().map(|x| x.item)),
            i64s(py, m.iter().map(|x| x.shared)),
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "NgramIndex(n={}, num_items={}, num_ngrams={})",
            self.inner.n(),
            self.inner.num_items(),
            self.inner.num_ngrams()
        )
    }
}

/// For each text, the index of the first text equal to it after normalisation.
#[pyfunction]
fn exact_duplicates<'py>(py: Python<'py>, texts: Vec<String>) -> Bound<'py, PyArray1<i64>> {
    let rep = py.detach(|| parallel(|| exact::exact_duplicates(&refs(&texts))));
    i64s(py, rep.into_iter())
}

/// MinHash signatures `(N, num_perm)` uint64 and a bool mask of texts that have one.
#[pyfunction]
#[pyo3(signature = (texts, n=8, num_perm=128, seed=0))]
fn minhash_signatures<'py>(
    py: Python<'py>,
    texts: Vec<String>,
    n: usize,
    num_perm: usize,
    seed: u64,
) -> PyResult<Signatures<'py>> {
    let (sigs, has) = py
        .detach(|| {
            parallel(|| minhash::MinHasher::new(num_perm, seed)?.signatures(&refs(&texts), n))
        })
        .map_err(to_py_err)?;
    let rows = has.len();
    Ok((
        PyArray1::from_vec(py, sigs).reshape([rows, num_perm])?,
        PyArray1::from_vec(py, has),
    ))
}

/// Candidate pairs `(i, j)` of rows agreeing on at least one LSH band.
#[pyfunction]
#[pyo3(signature = (signatures, has_signature, bands=18, rows=7))]
fn lsh_candidates<'py>(
    py: Python<'py>,
    signatures: PyReadonlyArray2<'py, u64>,
    has_signature: PyReadonlyArray1<'py, bool>,
    bands: usize,
    rows: usize,
) -> PyResult<Pairs<'py>> {
    let num_perm = signatures.shape()[1];
    let sigs = signatures.as_slice().map_err(|_| {
        PyValueError::new_err("signatures must be C-contiguous (np.ascontiguousarray)")
    })?;
    let has = has_signature
        .as_slice()
        .map_err(|_| PyValueError::new_err("has_signature must be C-contiguous"))?;
    let pairs = py
        .detach(|| parallel(|| lsh::candidate_pairs(sigs, has, num_perm, bands, rows)))
        .map_err(to_py_err)?;
    Ok((
        i64s(py, pairs.iter().map(|p| p.0)),
        i64s(py, pairs.iter().map(|p| p.1)),
    ))
}

/// Near-duplicate pairs `(i, j, jaccard)`: MinHash-LSH candidates verified by exact Jaccard.
#[pyfunction]
#[pyo3(signature = (texts, n=8, num_perm=128,
    bands=18, rows=7, threshold=0.8, seed=0))]
#[allow(clippy::too_many_arguments)]
fn near_duplicates<'py>(
    py: Python<'py>,
    texts: Vec<String>,
    n: usize,
    num_perm: usize,
    bands: usize,
    rows: usize,
    threshold: f64,
    seed: u64,
) -> PyResult<Scored<'py, f64>> {
    let p = lsh::NearDupParams {
        n,
        num_perm,
        bands,
        rows,
        threshold,
        seed,
    };
    let pairs = py
        .detach(|| parallel(|| lsh::near_duplicates(&refs(&texts), &p)))
        .map_err(to_py_err)?;
    Ok((
        i64s(py, pairs.iter().map(|p| p.0)),
        i64s(py, pairs.iter().map(|p| p.1)),
        PyArray1::from_vec(py, pairs.iter().map(|p| p.2).collect()),
    ))
}

fn to_u32(v: &[i64], name: &str) -> PyResult<Vec<u32>> {
    v.iter()
        .map(|&x| {
            u32::try_from(x).map_err(|_| {
                PyValueError::new_err(format!("{name} holds {x}: row indices are >= 0"))
            })
        })
        .collect()
}

/// Cluster roots and kept rows from pairs; see `union_find::keepers` for the rule.
#[pyfunction]
#[pyo3(signature = (num_rows, i, j, scores=None))]
fn clusters<'py>(
    py: Python<'py>,
    num_rows: usize,
    i: PyReadonlyArray1<'py, i64>,
    j: PyReadonlyArray1<'py, i64>,
    scores: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<Pairs<'py>> {
    let (i, j) = (i.as_array().to_vec(), j.as_array().to_vec());
    if i.len() != j.len() {
        return Err(PyValueError::new_err(format!(
            "i has {} entries and j has {}: pass the two columns of the same pairs",
            i.len(),
            j.len()
        )));
    }
    let edges: Vec<(u32, u32)> = to_u32(&i, "i")?.into_iter().zip(to_u32(&j, "j")?).collect();
    let scores: Option<Vec<f64>> = scores.map(|s| s.as_array().to_vec());
    let (roots, keep) = py
        .detach(|| {
            parallel(|| {
                let roots = union_find::clusters(num_rows, &edges)?;
                let keep = union_find::keepers(&roots, scores.as_deref())?;
                Ok((roots, keep))
            })
        })
        .map_err(to_py_err)?;
    Ok((i64s(py, roots.into_iter()), i64s(py, keep.into_iter())))
}

/// All pairs `(i, j, cosine)` with `i < j` and `cosine >= threshold`, exact, by blocked products.
#[pyfunction]
#[pyo3(signature = (embeddings, threshold, block=2048))]
fn cosine_pairs<'py>(
    py: Python<'py>,
    embeddings: PyReadonlyArray2<'py, f32>,
    threshold: f32,
    block: usize,
) -> PyResult<Scored<'py, f32>> {
    let (n, d) = (embeddings.shape()[0], embeddings.shape()[1]);
    let data = embeddings.as_slice().map_err(|_| {
        PyValueError::new_err(
            "embeddings must be C-contiguous float32 (np.ascontiguousarray(x, np.float32))",
        )
    })?;
    let pairs = py
        .detach(|| parallel(|| cosine::cosine_pairs(data, n, d, threshold, block)))
        .map_err(to_py_err)?;
    Ok((
        i64s(py, pairs.iter().map(|p| p.0)),
        i64s(py, pairs.iter().map(|p| p.1)),
        PyArray1::from_vec(py, pairs.iter().map(|p| p.2).collect()),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    OWNER_PID.get_or_init(std::process::id);
    m.add_class::<PyNgramIndex>()?;
    m.add_function(wrap_pyfunction!(normalize_text, m)?)?;
    m.add_function(wrap_pyfunction!(word_ngrams, m)?)?;
    m.add_function(wrap_pyfunction!(ngram_hashes, m)?)?;
    m.add_function(wrap_pyfunction!(exact_duplicates, m)?)?;
    m.add_function(wrap_pyfunction!(minhash_signatures, m)?)?;
    m.add_function(wrap_pyfunction!(lsh_candidates, m)?)?;
    m.add_function(wrap_pyfunction!(near_duplicates, m)?)?;
    m.add_function(wrap_pyfunction!(clusters, m)?)?;
    m.add_function(wrap_pyfunction!(cosine_pairs, m)?)?;
    Ok(())
}
