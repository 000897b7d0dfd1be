//! Bindings for `s1kit_core::budget::tables`: a batch's flat tables and row states as numpy arrays.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use s1kit_core::budget::tables::{BatchTables, StateArrays, STATE_FIELDS};

use crate::budget::PyBudgetBatch;
use crate::to_py_err;

fn put_1d(d: &Bound<'_, PyDict>, name: &str, v: &[i32]) -> PyResult<()> {
    d.set_item(name, PyArray1::from_slice(d.py(), v))
}

/// `v` as a `(rows, cols)` array; the shape is explicit so that zero-width tables keep their rows.
fn put_2d(d: &Bound<'_, PyDict>, name: &str, v: &[i32], rows: usize, cols: usize) -> PyResult<()> {
    d.set_item(name, PyArray1::from_slice(d.py(), v).reshape([rows, cols])?)
}

/// The batch's specs as flat int32 tables (see `s1kit_core::budget::tables` for the layout).
#[pyfunction]
pub fn budget_tables<'py>(py: Python<'py>, batch: &PyBudgetBatch) -> PyResult<Bound<'py, PyDict>> {
    let t = BatchTables::build(&batch.inner);
    let d = PyDict::new(py);
    for (name, v) in [
        ("row_spec", &t.row_spec),
        ("vocab_size", &t.vocab_size),
        ("max_thinking_tokens", &t.max_thinking_tokens),
        ("min_thinking_tokens", &t.min_thinking_tokens),
        ("num_extensions", &t.num_extensions),
        ("grace_tokens", &t.grace_tokens),
        ("max_answer_tokens", &t.max_answer_tokens),
        ("initial_phase", &t.initial_phase),
        ("eos_to_answer", &t.eos_to_answer),
        ("state_base", &t.state_base),
        ("num_states", &t.num_states),
        ("ext_seq_base", &t.ext_seq_base),
        ("num_ext_seqs", &t.num_ext_seqs),
        ("answer_seq", &t.answer_seq),
        ("kinds", &t.kinds),
        ("answer_overlap", &t.answer_overlap),
        ("seq_len", &t.seq_len),
    ] {
        put_1d(&d, name, v)?;
    }
    let (s, k) = (t.num_specs(), t.alphabet_width);
    put_2d(&d, "alphabet", &t.alphabet, s, k)?;
    put_2d(&d, "next", &t.next, t.total_states(), k + 1)?;
    put_2d(&d, "seqs", &t.seqs, t.seq_len.len(), t.seq_width)?;
    put_2d(&d, "eos", &t.eos, s, t.eos_width)?;
    put_2d(&d, "newline", &t.newline, s, t.newline_width)?;
    Ok(d)
}

/// Every slot's state as int32 arrays, one per field (empty slots: phase 5, zeros).
#[pyfunction]
pub fn export_budget_state<'py>(
    py: Python<'py>,
    batch: &PyBudgetBatch,
) -> PyResult<Bound<'py, PyDict>> {
    let a = StateArrays::export(&batch.inner).map_err(to_py_err)?;
    let d = PyDict::new(py);
    for (name, v) in STATE_FIELDS.iter().zip(a.fields()) {
        put_1d(&d, name, v)?;
    }
    Ok(d)
}

/// Write states (as returned by `export_budget_state`) back into the batch; checks all first.
#[pyfunction]
pub fn import_budget_state(batch: &mut PyBudgetBatch, state: &Bound<'_, PyDict>) -> PyResult<()> {
    let mut a = StateArrays::default();
    for (name, dst) in STATE_FIELDS.iter().zip(a.fields_mut()) {
        let v = state.get_item(name)?.ok_or_else(|| {
            PyKeyError::new_err(format!(
                "state has no {name:?}: pass every field of export_budget_state"
            ))
        })?;
        let arr: PyReadonlyArray1<'_, i32> = v.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "state[{name:?}] must be a one-dimensional int32 numpy array (use np.asarray(x, dtype=np.int32))"
            ))
        })?;
        let s = arr.as_slice().map_err(|_| {
            PyValueError::new_err(format!(
                "state[{name:?}] must be C-contiguous (use np.ascontiguousarray)"
            ))
        })?;
        dst.extend_from_slice(s);
    }
    a.import(&mut batch.inner).map_err(to_py_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(budget_tables, m)?)?;
    m.add_function(wrap_pyfunction!(export_budget_state, m)?)?;
    m.add_function(wrap_pyfunction!(import_budget_state, m)?)?;
    Ok(())
}
