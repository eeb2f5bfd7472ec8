//! The one error boundary: Rust errors become the Python exceptions of `gunicorn_uwsgi.errors`.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::core::allow::InvalidEntry;
use crate::core::errors::{ProtocolError, ResponseError};

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    ERRORS_MODULE
        .get_or_try_init(py, || py.import("gunicorn_uwsgi.errors").map(Bound::unbind))
        .map(|m| m.bind(py))
}

#[cold]
fn raise<'py>(py: Python<'py>, class: &str, args: impl IntoPyObject<'py>) -> PyErr {
    let made = errors_module(py)
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from))
        .and_then(|c| c.call1((args,)));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => PyRuntimeError::new_err(format!("gunicorn_uwsgi.errors.{class}: {e}")),
    }
}

/// A protocol error as the matching `gunicorn_uwsgi.errors` exception.
#[cold]
pub fn protocol_error(py: Python<'_>, err: &ProtocolError) -> PyErr {
    let class = match err {
        ProtocolError::InvalidPacket(_) => "InvalidUWSGIHeader",
        ProtocolError::ForeignProtocol(_) => "ForeignProtocol",
        ProtocolError::UnsupportedModifier(m) => return raise(py, "UnsupportedModifier", *m),
        ProtocolError::UriTooLong { .. } => "LimitRequestLine",
        ProtocolError::TooLarge(_) => "LimitRequestHeaders",
        ProtocolError::BodyTooLarge { .. } => "RequestBodyTooLarge",
    };
    raise(py, class, err.to_string())
}

/// A peer the allow list refuses (A4): 403.
#[cold]
pub fn forbidden(py: Python<'_>, host: String) -> PyErr {
    raise(py, "ForbiddenUWSGIRequest", host)
}

/// A peer that kept the worker waiting past the read timeout for `what` (F8).
#[cold]
pub fn peer_timeout<'py>(py: Python<'py>, seconds: f64, what: &str) -> PyResult<Bound<'py, PyAny>> {
    errors_module(py)?
        .getattr("PeerTimeout")?
        .call1((seconds, what))
}

/// An invalid response head: the application gets this from `start_response` (R1).
#[cold]
pub fn response_error(py: Python<'_>, err: &ResponseError) -> PyErr {
    let class = match err {
        ResponseError::HeaderName(_) => "InvalidResponseHeaderName",
        ResponseError::HeaderValue(_) => "InvalidResponseHeader",
        ResponseError::Status(_) | ResponseError::ContentLength(_) => "InvalidResponseStatus",
    };
    raise(py, class, err.to_string())
}

/// `PATH_INFO` does not start with the `SCRIPT_NAME` environment variable (E3): 500.
#[cold]
pub fn configuration_problem(py: Python<'_>, message: String) -> PyErr {
    raise(py, "ConfigurationProblem", message)
}

/// A bad allow-list entry: start-up stops with this message (A5).
#[cold]
pub fn invalid_entry(err: &InvalidEntry) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// An I/O error as Python's `OSError(errno, strerror)`, which picks the matching subclass
/// (`BrokenPipeError`, `ConnectionResetError`, `BlockingIOError`, …) so `errno` checks work.
#[cold]
pub fn os_error(err: &std::io::Error) -> PyErr {
    let errno = err.raw_os_error().unwrap_or(match err.kind() {
        std::io::ErrorKind::WouldBlock => 11,
        std::io::ErrorKind::BrokenPipe => 32,
        std::io::ErrorKind::ConnectionReset => 104,
        _ => 5,
    });
    pyo3::exceptions::PyOSError::new_err((errno, err.to_string()))
}
