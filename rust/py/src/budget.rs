//! Bindings for `s1kit_core::budget`.

use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use s1kit_core::budget::{
    BudgetBatch, BudgetSpec, CompiledSpec, EditOptions, EditSummary, ForcedWrite, Logit, MaskOut,
    RowState,
};

use crate::to_py_err;

/// A validated, compiled budget spec (immutable; share one object between rows).
#[pyclass(name = "BudgetSpec", module = "s1kit._core", frozen)]
pub struct PyBudgetSpec {
    inner: Arc<CompiledSpec>,
}

#[pymethods]
impl PyBudgetSpec {
    #[new]
    #[pyo3(signature = (vocab_size, think_end, *, think_start=vec![], eos=vec![], answer_prefix=vec![],
        extensions=vec![], max_thinking_tokens=None, min_thinking_tokens=0, num_extensions=0,
        grace_tokens=0, newline_tokens=vec![], max_answer_tokens=None, answer_stop=vec![]))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        vocab_size: u32,
        think_end: Vec<Vec<u32>>,
        think_start: Vec<Vec<u32>>,
        eos: Vec<u32>,
        answer_prefix: Vec<u32>,
        extensions: Vec<Vec<u32>>,
        max_thinking_tokens: Option<u32>,
        min_thinking_tokens: u32,
        num_extensions: u32,
        grace_tokens: u32,
        newline_tokens: Vec<u32>,
        max_answer_tokens: Option<u32>,
        answer_stop: Vec<Vec<u32>>,
    ) -> PyResult<Self> {
        let spec = BudgetSpec {
            vocab_size,
            think_start,
            think_end,
            eos,
            answer_prefix,
            extensions,
            max_thinking_tokens,
            min_thinking_tokens,
            num_extensions,
            grace_tokens,
            newline_tokens,
            max_answer_tokens,
            answer_stop,
        };
        Ok(PyBudgetSpec {
            inner: Arc::new(spec.compile().map_err(to_py_err)?),
        })
    }

    #[getter]
    fn vocab_size(&self) -> u32 {
        self.inner.spec().vocab_size
    }
    #[getter]
    fn think_start(&self) -> Vec<Vec<u32>> {
        self.inner.spec().think_start.clone()
    }
    #[getter]
    fn think_end(&self) -> Vec<Vec<u32>> {
        self.inner.spec().think_end.clone()
    }
    #[getter]
    fn eos(&self) -> Vec<u32> {
        self.inner.spec().eos.clone()
    }
    #[getter]
    fn answer_prefix(&self) -> Vec<u32> {
        self.inner.spec().answer_prefix.clone()
    }
    #[getter]
    fn extensions(&self) -> Vec<Vec<u32>> {
        self.inner.spec().extensions.clone()
    }
    #[getter]
    fn max_thinking_tokens(&self) -> Option<u32> {
        self.inner.spec().max_thinking_tokens
    }
    #[getter]
    fn min_thinking_tokens(&self) -> u32 {
        self.inner.spec().min_thinking_tokens
    }
    #[getter]
    fn num_extensions(&self) -> u32 {
        self.inner.spec().num_extensions
    }
    #[getter]
    fn grace_tokens(&self) -> u32 {
        self.inner.spec().grace_tokens
    }
    #[getter]
    fn newline_tokens(&self) -> Vec<u32> {
        self.inner.spec().newline_tokens.clone()
    }
    #[getter]
    fn max_answer_tokens(&self) -> Option<u32> {
        self.inner.spec().max_answer_tokens
    }
    #[getter]
    fn answer_stop(&self) -> Vec<Vec<u32>> {
        self.inner.spec().answer_stop.clone()
    }
    #[getter]
    fn ban_width(&self) -> usize {
        self.inner.ban_width()
    }

    fn __repr__(&self) -> String {
        let s = self.inner.spec();
        format!(
            "BudgetSpec(vocab_size={}, max_thinking_tokens={:?}, min_thinking_tokens={}, num_extensions={}, think_end={:?})",
            s.vocab_size, s.max_thinking_tokens, s.min_thinking_tokens, s.num_extensions, s.think_end
        )
    }
}

/// Token ids from the caller: int32 or int64, one-dimensional, C-contiguous.
fn read_tokens(arr: &Bound<'_, PyAny>, name: &str, buf: &mut Vec<i64>) -> PyResult<()> {
    buf.clear();
    if let Ok(a) = arr.cast::<PyArray1<i64>>() {
        let ro = a.try_readonly().map_err(|e| borrow_err(name, e))?;
        buf.extend_from_slice(contiguous(&ro, name)?);
    } else if let Ok(a) = arr.cast::<PyArray1<i32>>() {
        let ro = a.try_readonly().map_err(|e| borrow_err(name, e))?;
        buf.extend(contiguous(&ro, name)?.iter().map(|&t| i64::from(t)));
    } else {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a one-dimensional numpy array of int32 or int64 (use np.asarray(x, dtype=np.int64))"
        )));
    }
    Ok(())
}

/// An array numpy will not lend for writing (read-only, or in use by another argument of this call).
fn borrow_err(name: &str, e: numpy::BorrowError) -> PyErr {
    PyValueError::new_err(format!(
        "{name} cannot be borrowed ({e}): pass a writeable array of its own (e.g. np.empty(n, np.int32)), \
         not a read-only array or a view sharing memory with another argument"
    ))
}

/// A slot, count or size argument: any Python int, checked here so that a negative or huge value is
/// a `ValueError` naming the argument (not an `OverflowError` that names nothing).
pub(crate) fn index_arg(v: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    let out_of_range = || {
        PyValueError::new_err(format!(
            "{name}={v} is out of range: it must be a non-negative integer below 2**64"
        ))
    };
    match v.extract::<i128>() {
        Ok(i) => usize::try_from(i).map_err(|_| out_of_range()),
        Err(e) if e.is_instance_of::<PyOverflowError>(v.py()) => Err(out_of_range()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be an int, got {}",
            v.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))),
    }
}

/// Token ids given as a Python sequence of ints (a prompt).
fn token_list(v: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u32>> {
    let raw: Vec<i128> = v.extract().map_err(|e: PyErr| {
        if e.is_instance_of::<PyOverflowError>(v.py()) {
            PyValueError::new_err(format!("{name} holds an int that is not a token id"))
        } else {
            PyTypeError::new_err(format!("{name} must be a sequence of ints"))
        }
    })?;
    raw.iter()
        .map(|&t| {
            u32::try_from(t).map_err(|_| {
                PyValueError::new_err(format!(
                    "{name} token {t} is not a token id (ids are 0 <= id < 2**32)"
                ))
            })
        })
        .collect()
}

fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be C-contiguous (use np.ascontiguousarray)"
        ))
    })
}

fn read_rows(rows: Option<&Bound<'_, PyAny>>, buf: &mut Vec<u32>) -> PyResult<bool> {
    let Some(rows) = rows else { return Ok(false) };
    if rows.is_none() {
        return Ok(false);
    }
    read_indices(rows, "rows", buf)?;
    Ok(true)
}

/// Non-negative indices (slots, logits rows) given as an int32 or int64 array.
fn read_indices(arr: &Bound<'_, PyAny>, name: &str, buf: &mut Vec<u32>) -> PyResult<()> {
    let mut tmp = Vec::new();
    read_tokens(arr, name, &mut tmp)?;
    buf.clear();
    for &r in &tmp {
        buf.push(
            u32::try_from(r).map_err(|_| {
                PyValueError::new_err(format!("{name} holds {r}: indices are >= 0"))
            })?,
        );
    }
    Ok(())
}

/// The row-major data of a writeable 2-D array; `what` names it in the error. (`as_slice_mut`
/// alone also lends Fortran-ordered arrays, whose cells are not where row-major code reads them.)
fn c_order_slice<'a, T: numpy::Element>(
    rw: &'a mut numpy::PyReadwriteArray2<'_, T>,
    what: &str,
) -> PyResult<&'a mut [T]> {
    let c_order = rw.is_c_contiguous();
    rw.as_slice_mut()
        .ok()
        .filter(|_| c_order)
        .ok_or_else(|| PyValueError::new_err(format!("{what} must be C-contiguous and writeable")))
}

/// Write `vals` into the caller's int32 or int64 output array of the same length.
fn write_out(out: &Bound<'_, PyAny>, name: &str, vals: &[i32]) -> PyResult<()> {
    let fill = |n: usize| -> PyResult<()> {
        if n != vals.len() {
            return Err(PyValueError::new_err(format!(
                "{name} has {n} entries, expected {}",
                vals.len()
            )));
        }
        Ok(())
    };
    if let Ok(a) = out.cast::<PyArray1<i32>>() {
        let mut rw = a.try_readwrite().map_err(|e| borrow_err(name, e))?;
        fill(rw.len())?;
        let s = rw.as_slice_mut().map_err(|_| {
            PyValueError::new_err(format!("{name} must be C-contiguous and writeable"))
        })?;
        s.copy_from_slice(vals);
    } else if let Ok(a) = out.cast::<PyArray1<i64>>() {
        let mut rw = a.try_readwrite().map_err(|e| borrow_err(name, e))?;
        fill(rw.len())?;
        let s = rw.as_slice_mut().map_err(|_| {
            PyValueError::new_err(format!("{name} must be C-contiguous and writeable"))
        })?;
        for (d, &v) in s.iter_mut().zip(vals) {
            *d = i64::from(v);
        }
    } else {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a one-dimensional numpy array of int32 or int64"
        )));
    }
    Ok(())
}

/// Slot-indexed budget-forcing state for a batch; one call per decode step.
#[pyclass(name = "BudgetBatch", module = "s1kit._core")]
pub struct PyBudgetBatch {
    pub(crate) inner: BudgetBatch,
    tokens: Vec<i64>,
    rows: Vec<u32>,
    logit_rows: Vec<u32>,
    out: Vec<i32>,
    redirect: Vec<i32>,
    flags: Vec<u8>,
}

#[pymethods]
impl PyBudgetBatch {
    #[new]
    #[pyo3(signature = (capacity, *, max_rollback=None), text_signature = "(capacity, *, max_rollback=32)")]
    fn new(capacity: &Bound<'_, PyAny>, max_rollback: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let capacity = index_arg(capacity, "capacity")?;
        let max_rollback = match max_rollback {
            Some(v) => index_arg(v, "max_rollback")?,
            None => 32,
        };
        let inner = BudgetBatch::try_new(capacity, max_rollback).map_err(to_py_err)?;
        // The per-call scratch buffers grow on first use (fallibly, like any Vec push).
        Ok(PyBudgetBatch {
            inner,
            tokens: Vec::new(),
            rows: Vec::new(),
            logit_rows: Vec::new(),
            out: Vec::new(),
            redirect: Vec::new(),
            flags: Vec::new(),
        })
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    #[getter]
    fn max_rollback(&self) -> usize {
        self.inner.max_rollback()
    }
    #[getter]
    fn ban_width(&self) -> usize {
        self.inner.ban_width()
    }

    fn insert(&mut self, slot: &Bound<'_, PyAny>, spec: &PyBudgetSpec) -> PyResult<()> {
        self.inner
            .insert(index_arg(slot, "slot")?, spec.inner.clone())
            .map_err(to_py_err)
    }
    fn free_slot(&self) -> Option<usize> {
        self.inner.free_slot()
    }
    fn remove(&mut self, slot: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner
            .remove(index_arg(slot, "slot")?)
            .map_err(to_py_err)
    }
    fn swap(&mut self, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner
            .swap(index_arg(a, "a")?, index_arg(b, "b")?)
            .map_err(to_py_err)
    }
    fn move_row(&mut self, src: &Bound<'_, PyAny>, dst: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner
            .move_row(index_arg(src, "src")?, index_arg(dst, "dst")?)
            .map_err(to_py_err)
    }
    fn reset(&mut self, slot: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner
            .reset(index_arg(slot, "slot")?)
            .map_err(to_py_err)
    }
    fn rollback(&mut self, slot: &Bound<'_, PyAny>, k: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner
            .rollback(index_arg(slot, "slot")?, index_arg(k, "k")?)
            .map_err(to_py_err)
    }
    fn process_prompt(
        &mut self,
        slot: &Bound<'_, PyAny>,
        prompt: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let slot = index_arg(slot, "slot")?;
        let ids = token_list(prompt, "prompt")?;
        self.inner.process_prompt(slot, &ids).map_err(to_py_err)
    }

    #[pyo3(signature = (sampled, out, rows=None))]
    fn step(
        &mut self,
        sampled: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        rows: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        read_tokens(sampled, "sampled", &mut self.tokens)?;
        let has_rows = read_rows(rows, &mut self.rows)?;
        self.out.clear();
        self.out.resize(self.tokens.len(), -1);
        let r = if has_rows {
            Some(self.rows.as_slice())
        } else {
            None
        };
        self.inner
            .step_rows(&self.tokens, r, &mut self.out)
            .map_err(to_py_err)?;
        write_out(out, "out", &self.out)
    }

    #[pyo3(signature = (force, redirect, ban, rows=None, *, stop_finished=false))]
    fn mask(
        &mut self,
        force: &Bound<'_, PyAny>,
        redirect: &Bound<'_, PyAny>,
        ban: &Bound<'_, PyArray2I32>,
        rows: Option<&Bound<'_, PyAny>>,
        stop_finished: bool,
    ) -> PyResult<(usize, usize)> {
        let has_rows = read_rows(rows, &mut self.rows)?;
        let n = if has_rows {
            self.rows.len()
        } else {
            self.inner.capacity()
        };
        let mut ban_rw = ban.try_readwrite().map_err(|e| borrow_err("ban", e))?;
        let shape = ban_rw.shape().to_vec();
        if shape[0] != n {
            return Err(PyValueError::new_err(format!(
                "ban must have {n} rows, got {}",
                shape[0]
            )));
        }
        let width = shape[1];
        self.out.clear();
        self.out.resize(n, -1);
        self.redirect.clear();
        self.redirect.resize(n, -1);
        let ban_slice = c_order_slice(&mut ban_rw, "ban")?;
        let r = if has_rows {
            Some(self.rows.as_slice())
        } else {
            None
        };
        let stopped = self
            .inner
            .mask_stopping(
                r,
                n,
                MaskOut {
                    force: &mut self.out,
                    redirect: &mut self.redirect,
                    ban: ban_slice,
                    width,
                },
                stop_finished,
            )
            .map_err(to_py_err)?;
        drop(ban_rw);
        write_out(force, "force", &self.out)?;
        write_out(redirect, "redirect", &self.redirect)?;
        Ok(stopped)
    }

    #[pyo3(signature = (logits, logit_rows, flags, rows=None, *, stop_finished=true,
        forced_logit=None, temperature=None, uniform=None))]
    #[allow(clippy::too_many_arguments)]
    fn mask_logits(
        &mut self,
        logits: &Bound<'_, PyAny>,
        logit_rows: &Bound<'_, PyAny>,
        flags: &Bound<'_, PyArray1<u8>>,
        rows: Option<&Bound<'_, PyAny>>,
        stop_finished: bool,
        forced_logit: Option<f64>,
        temperature: Option<PyReadonlyArray1<'_, f64>>,
        uniform: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<(usize, usize, usize, usize, usize)> {
        read_indices(logit_rows, "logit_rows", &mut self.logit_rows)?;
        let has_rows = read_rows(rows, &mut self.rows)?;
        let temperature = temperature
            .as_ref()
            .map(|t| contiguous(t, "temperature"))
            .transpose()?;
        let uniform = uniform
            .as_ref()
            .map(|u| contiguous(u, "uniform"))
            .transpose()?;
        let options = EditOptions {
            stop_finished,
            forced: forced_logit.map_or(ForcedWrite::Fill, ForcedWrite::Cell),
            temperature,
            uniform,
        };
        let mut flags_rw = flags.try_readwrite().map_err(|e| borrow_err("flags", e))?;
        let flags = flags_rw
            .as_slice_mut()
            .map_err(|_| PyValueError::new_err("flags must be C-contiguous and writeable"))?;
        let slots = has_rows.then_some(self.rows.as_slice());
        let s = if let Ok(a) = logits.cast::<numpy::PyArray2<f32>>() {
            edit_with(&self.inner, a, slots, &self.logit_rows, &options, flags)?
        } else if let Ok(a) = logits.cast::<numpy::PyArray2<f64>>() {
            edit_with(&self.inner, a, slots, &self.logit_rows, &options, flags)?
        } else {
            return Err(PyTypeError::new_err(
                "logits must be a two-dimensional numpy array of float32 or float64 (rows, vocab); \
                 other dtypes and device tensors go through s1kit.budget.adapters.masking.apply_mask",
            ));
        };
        Ok((
            s.forced,
            s.redirected,
            s.flagged,
            s.stopped_done,
            s.stopped_error,
        ))
    }

    #[pyo3(signature = (emitted, rows=None, redirected=None))]
    fn advance(
        &mut self,
        emitted: &Bound<'_, PyAny>,
        rows: Option<&Bound<'_, PyAny>>,
        redirected: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        read_tokens(emitted, "emitted", &mut self.tokens)?;
        let has_rows = read_rows(rows, &mut self.rows)?;
        let r = if has_rows {
            Some(self.rows.as_slice())
        } else {
            None
        };
        let flags = match redirected {
            Some(f) if !f.is_none() => {
                let mut tmp = Vec::new();
                read_tokens(f, "redirected", &mut tmp)?;
                self.flags.clear();
                self.flags.extend(tmp.iter().map(|&v| u8::from(v != 0)));
                Some(self.flags.as_slice())
            }
            _ => None,
        };
        self.inner
            .advance(&self.tokens, flags, r)
            .map_err(to_py_err)
    }

    /// Per-slot accounting as numpy arrays (empty slots: phase 5, counters 0).
    fn accounting<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let n = self.inner.capacity();
        let mut phase = Vec::with_capacity(n);
        let mut error = Vec::with_capacity(n);
        let mut thinking = Vec::with_capacity(n);
        let mut answer = Vec::with_capacity(n);
        let mut forced = Vec::with_capacity(n);
        let mut ext = Vec::with_capacity(n);
        let mut capped = Vec::with_capacity(n);
        self.inner.for_each_state(|_, s| {
            let s = s.copied().unwrap_or_else(RowState::empty);
            phase.push(s.phase as u8);
            error.push(s.error as u8);
            thinking.push(s.thinking_tokens);
            answer.push(s.answer_tokens);
            forced.push(s.forced_tokens);
            ext.push(s.extensions_used);
            capped.push(s.capped);
        });
        let d = PyDict::new(py);
        d.set_item("phase", PyArray1::from_vec(py, phase))?;
        d.set_item("error", PyArray1::from_vec(py, error))?;
        d.set_item("thinking_tokens", PyArray1::from_vec(py, thinking))?;
        d.set_item("answer_tokens", PyArray1::from_vec(py, answer))?;
        d.set_item("forced_tokens", PyArray1::from_vec(py, forced))?;
        d.set_item("extensions_used", PyArray1::from_vec(py, ext))?;
        d.set_item("capped", PyArray1::from_vec(py, capped))?;
        Ok(d)
    }

    /// One slot's full state as a dict, or None for an empty slot.
    fn row_state<'py>(
        &self,
        py: Python<'py>,
        slot: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let slot = index_arg(slot, "slot")?;
        if slot >= self.inner.capacity() {
            return Err(PyValueError::new_err(format!(
                "slot {slot} is outside the batch of capacity {}",
                self.inner.capacity()
            )));
        }
        let Some(s) = self.inner.state(slot) else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("phase", s.phase as u8)?;
        d.set_item("error", s.error as u8)?;
        d.set_item("thinking_tokens", s.thinking_tokens)?;
        d.set_item("answer_tokens", s.answer_tokens)?;
        d.set_item("forced_tokens", s.forced_tokens)?;
        d.set_item("extensions_used", s.extensions_used)?;
        d.set_item("capped", s.capped)?;
        d.set_item(
            "forcing",
            !matches!(s.forcing, s1kit_core::budget::Forcing::None),
        )?;
        Ok(Some(d))
    }
}

type PyArray2I32 = numpy::PyArray2<i32>;

/// [`BudgetBatch::mask_logits`] on a writeable, C-contiguous `(rows, vocab)` array.
fn edit_with<F: Logit + numpy::Element>(
    batch: &BudgetBatch,
    logits: &Bound<'_, numpy::PyArray2<F>>,
    slots: Option<&[u32]>,
    logit_rows: &[u32],
    options: &EditOptions<'_>,
    flags: &mut [u8],
) -> PyResult<EditSummary> {
    let mut rw = logits
        .try_readwrite()
        .map_err(|e| borrow_err("logits", e))?;
    let vocab = rw.shape()[1];
    let data = c_order_slice(
        &mut rw,
        "logits (a (rows, vocab) array; use np.ascontiguousarray)",
    )?;
    batch
        .mask_logits(slots, logit_rows, data, vocab, options, flags)
        .map_err(to_py_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBudgetSpec>()?;
    m.add_class::<PyBudgetBatch>()?;
    m.add("PHASE_PRE_THINK", 0u8)?;
    m.add("PHASE_THINKING", 1u8)?;
    m.add("PHASE_ANSWER", 2u8)?;
    m.add("PHASE_DONE", 3u8)?;
    m.add("PHASE_ERROR", 4u8)?;
    m.add("PHASE_EMPTY", 5u8)?;
    Ok(())
}
