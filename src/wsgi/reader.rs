//! `wsgi.input` for a body that arrived whole with the head (B1, B2): a file-like reader over
//! bytes already in memory. Bodies still on the wire use the Python `Body`, which reads the
//! socket lazily.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList};

/// Exactly `CONTENT_LENGTH` bytes, then `b''`. Reading the whole body at once returns the
/// bytes object it was made from, without a copy.
#[pyclass(module = "gunicorn_uwsgi._native")]
pub struct BytesInput {
    data: Py<PyBytes>,
    pos: usize,
    overflow: bool,
}

impl BytesInput {
    pub fn new(data: Bound<'_, PyBytes>) -> Self {
        Self {
            data: data.unbind(),
            pos: 0,
            overflow: false,
        }
    }

    /// The body, with bytes past it on the connection (never parsed, F5).
    pub fn with_overflow(data: Bound<'_, PyBytes>, overflow: bool) -> Self {
        Self {
            overflow,
            ..Self::new(data)
        }
    }

    fn rest<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        self.data.as_bytes(py).get(self.pos..).unwrap_or_default()
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let rest = self.rest(py);
        let n = n.min(rest.len());
        let out = if self.pos == 0 && n == rest.len() {
            self.data.bind(py).clone()
        } else {
            PyBytes::new(py, rest.get(..n).unwrap_or_default())
        };
        self.pos += n;
        out
    }

    fn line_len(&self, py: Python<'_>, limit: Option<usize>) -> usize {
        let rest = self.rest(py);
        let window = limit.map_or(rest, |l| rest.get(..l.min(rest.len())).unwrap_or(rest));
        window
            .iter()
            .position(|&b| b == b'\n')
            .map_or(window.len(), |i| i + 1)
    }
}

/// The input of a request without a body, shared: reading it never changes it. The second one
/// is for a request followed by bytes it did not announce (`overflow`).
static EMPTY: PyOnceLock<[Py<BytesInput>; 2]> = PyOnceLock::new();

/// `wsgi.input` for a request without a body.
pub fn empty<'py>(py: Python<'py>, overflow: bool) -> PyResult<Bound<'py, BytesInput>> {
    let pair = EMPTY.get_or_try_init(py, || -> PyResult<_> {
        Ok([
            Py::new(py, BytesInput::with_overflow(PyBytes::new(py, b""), false))?,
            Py::new(py, BytesInput::with_overflow(PyBytes::new(py, b""), true))?,
        ])
    })?;
    let [clean, over] = pair;
    Ok(if overflow { over } else { clean }.bind(py).clone())
}

fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl BytesInput {
    #[new]
    fn py_new(data: Bound<'_, PyBytes>) -> Self {
        Self::new(data)
    }

    /// Reads `size` bytes, or all that is left when `size` is None or negative.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let n = limit(size).unwrap_or(usize::MAX);
        self.take(py, n)
    }

    /// Reads up to and including the next `\n`, at most `size` bytes.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let n = self.line_len(py, limit(size));
        self.take(py, n)
    }

    /// Reads lines until the end, or until `hint` bytes have been read.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let out = PyList::empty(py);
        let mut total = 0usize;
        while !self.rest(py).is_empty() {
            let n = self.line_len(py, None);
            out.append(self.take(py, n))?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(out)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if self.rest(py).is_empty() {
            return None;
        }
        let n = self.line_len(py, None);
        Some(self.take(py, n))
    }

    /// Every body byte has been taken off the connection.
    #[getter]
    fn complete(&self) -> bool {
        true
    }

    /// Body bytes still on the connection: none, the whole body is here.
    #[getter]
    fn unread(&self) -> usize {
        0
    }

    /// Bytes followed the body in what was received (they are never parsed, F5).
    #[getter]
    fn overflow(&self) -> bool {
        self.overflow
    }
}
