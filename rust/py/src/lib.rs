//! `s1kit._core`: the Python binding of `s1kit-core`. Conversion glue only; decisions live in
//! `s1kit-core`. One file per core module; [`to_py_err`] is the one place errors are converted.

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;

mod budget;
mod dedup;

/// Convert a core error into the Python exception that names the problem and the fix.
pub(crate) fn to_py_err(e: s1kit_core::Error) -> PyErr {
    use s1kit_core::Error;
    match e {
        Error::InvalidSpec(_) => PyValueError::new_err(e.to_string()),
        Error::InvalidArgument(_) => PyValueError::new_err(e.to_string()),
        Error::EmptySlot(_) => PyIndexError::new_err(e.to_string()),
        Error::RollbackTooDeep { .. } => PyValueError::new_err(e.to_string()),
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    budget::register(m)?;
    dedup::register(m)?;
    Ok(())
}
