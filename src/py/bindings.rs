//! The Python classes and functions of `gunicorn_uwsgi._native`: argument extraction and object
//! building only; the logic lives in the pure modules.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::core::allow;
use crate::core::framing::{slice, HEADER_SIZE};
use crate::core::kind::Control;
use crate::core::vars::{self, Progress};
use crate::exceptions::{invalid_entry, protocol_error};
use crate::wsgi::env;
use crate::wsgi::settings::peer_allowed;

/// gunicorn's request limits (`limit_request_line`, `limit_request_fields`,
/// `limit_request_field_size`); 0 means unlimited.
#[pyclass(frozen, module = "gunicorn_uwsgi._native", name = "Limits")]
pub struct PyLimits(vars::Limits);

impl PyLimits {
    pub fn inner(&self) -> vars::Limits {
        self.0
    }
}

#[pymethods]
impl PyLimits {
    #[new]
    // `vars::Limits::GUNICORN`, written out so that Python sees the numbers in the signature.
    #[pyo3(signature = (request_line=4094, fields=100, field_size=8190))]
    fn new(request_line: usize, fields: usize, field_size: usize) -> Self {
        Self(vars::Limits {
            request_line,
            fields,
            field_size,
        })
    }

    #[getter]
    fn request_line(&self) -> usize {
        self.0.request_line
    }

    #[getter]
    fn fields(&self) -> usize {
        self.0.fields
    }

    #[getter]
    fn field_size(&self) -> usize {
        self.0.field_size
    }
}

/// A validated uwsgi request head: the header and the vars block.
#[pyclass(frozen, module = "gunicorn_uwsgi._native", name = "Head")]
pub struct PyHead {
    pub(crate) head: vars::Head,
    pub(crate) block: Vec<u8>,
}

impl PyHead {
    /// A validated head over its vars block.
    pub(crate) fn new(head: vars::Head, block: Vec<u8>) -> Self {
        Self { head, block }
    }

    /// A control var's bytes, if it was sent.
    pub(crate) fn control_bytes(&self, which: Control) -> Option<&[u8]> {
        self.head.control_value(&self.block, which)
    }
}

#[pymethods]
impl PyHead {
    #[getter]
    fn modifier1(&self) -> u8 {
        self.head.header.modifier1
    }

    #[getter]
    fn modifier2(&self) -> u8 {
        self.head.header.modifier2
    }

    /// Bytes of header and vars: the body starts here in the stream.
    #[getter]
    fn head_size(&self) -> usize {
        self.head.header.head_size()
    }

    #[getter]
    fn content_length(&self) -> u64 {
        self.head.content_length
    }

    #[getter]
    fn method<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        env::latin1(py, self.head.method(&self.block))
    }

    /// Whether nginx sent no `REQUEST_METHOD` (V6): the request is served as `GET`.
    #[getter]
    fn method_missing(&self) -> bool {
        !self.head.has(Control::RequestMethod)
    }

    #[getter]
    pub(crate) fn is_head(&self) -> bool {
        self.head.is_head(&self.block)
    }

    /// A control var (`PATH_INFO`, `QUERY_STRING`, …) or any other var, or `None`.
    #[pyo3(signature = (name, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let key = name.as_bytes();
        let found = self
            .head
            .vars
            .iter()
            .rev()
            .find(|v| !v.shadowed && slice(&self.block, v.raw.key) == key);
        match found {
            Some(v) => Ok(Some(
                env::var_value(py, &self.block, &self.head.vars, v)?.into_any(),
            )),
            None => Ok(default),
        }
    }

    /// All vars as a dict of str (latin-1), repeated headers joined (V3).
    pub(crate) fn vars<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for var in self.head.vars.iter().filter(|v| !v.shadowed) {
            out.set_item(
                env::key_string(py, slice(&self.block, var.raw.key))?,
                env::var_value(py, &self.block, &self.head.vars, var)?,
            )?;
        }
        Ok(out)
    }

    /// The request headers as gunicorn lists them: `(NAME, value)` pairs, `HTTP_X_Y` as `X-Y`.
    pub(crate) fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (name, value) in self.head.headers(&self.block) {
            out.append((env::latin1(py, &name)?, env::latin1(py, value)?))?;
        }
        Ok(out)
    }
}

/// True once per process, the first time it is called: the caller logs that nginx sent no
/// `REQUEST_METHOD` (V6).
#[pyfunction]
pub fn claim_missing_method_warning() -> bool {
    env::claim_missing_method_warning()
}

/// A `Limits` argument, as the core value: how the interfaces' classes (`FastServer`) take one
/// without naming the Python class.
impl<'a, 'py> FromPyObject<'a, 'py> for vars::Limits {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(ob.cast::<PyLimits>()?.get().inner())
    }
}

/// Parses the bytes received so far on a connection (sans-I/O).
///
/// Returns the number of bytes the head needs in total when more must be read, else the `Head`.
/// Raises the `gunicorn_uwsgi.errors` exception for a refused packet.
#[pyfunction]
pub fn parse<'py>(py: Python<'py>, data: &[u8], limits: &PyLimits) -> PyResult<Bound<'py, PyAny>> {
    match vars::parse_head(data, &limits.0) {
        Ok(Progress::NeedMore(n)) => Ok(n.into_pyobject(py)?.into_any()),
        Ok(Progress::Done(head)) => {
            let end = head.header.head_size();
            let block = data.get(HEADER_SIZE..end).unwrap_or_default().to_vec();
            Ok(Bound::new(py, PyHead { head, block })?.into_any())
        }
        Err(e) => Err(protocol_error(py, &e)),
    }
}

/// A compiled allow list (A1–A3).
#[pyclass(frozen, module = "gunicorn_uwsgi._native", name = "AllowList")]
pub struct PyAllowList(allow::AllowList);

impl PyAllowList {
    pub fn inner(&self) -> &allow::AllowList {
        &self.0
    }
}

#[pymethods]
impl PyAllowList {
    #[new]
    fn new(entries: Vec<String>) -> PyResult<Self> {
        allow::AllowList::new(&entries)
            .map(Self)
            .map_err(|e| invalid_entry(&e))
    }

    #[getter]
    fn allows_any(&self) -> bool {
        self.0.allows_any()
    }

    /// Whether a peer may send requests: an `(host, port, ...)` tuple for TCP; anything else
    /// (a unix socket's `''` or path) is always allowed (A3).
    pub(crate) fn allows(&self, peer: &Bound<'_, PyAny>) -> PyResult<bool> {
        peer_allowed(&self.0, peer)
    }
}

/// Validates and serialises a response head (R1–R4).
///
/// Returns `(head_bytes, status_code, content_length_or_None, no_body)`.
#[pyfunction]
pub fn response_head<'py>(
    py: Python<'py>,
    status: &Bound<'py, PyAny>,
    headers: &Bound<'py, PyAny>,
    is_head: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let head = crate::wsgi::writer::build_head(py, status, headers, is_head)?;
    (
        PyBytes::new(py, &head.bytes),
        head.status,
        head.content_length,
        head.no_body,
    )
        .into_pyobject(py)
}

/// The short plain-text response for a protocol error with this status (X1).
#[pyfunction]
pub fn error_response<'py>(py: Python<'py>, status: u16, message: &str) -> Bound<'py, PyBytes> {
    PyBytes::new(
        py,
        &crate::core::response_head::error_response(
            status,
            crate::core::response_head::reason(status),
            message,
        ),
    )
}

/// The reason phrase the server's own answers use for this status (X1, X2): the exceptions'
/// `reason` attributes take theirs from here.
#[pyfunction]
pub fn reason(status: u16) -> &'static str {
    crate::core::response_head::reason(status)
}

/// An `AllowList` argument, as the core value (a copy, taken once per worker): how the
/// interfaces' classes (`FastServer`) take one without naming the Python class.
impl<'a, 'py> FromPyObject<'a, 'py> for allow::AllowList {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(ob.cast::<PyAllowList>()?.get().inner().clone())
    }
}
