//! What the WSGI request cycle takes from gunicorn's settings, compiled once per worker and
//! taken by every path that serves a request: the Rust cycle ([`FastServer`]), the request
//! object's environ and scheme, and the public drop-ins (`UWSGIParser`, `wsgi.create`).
//!
//! [`FastServer`]: crate::wsgi::serve::FastServer

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::core::allow::AllowList;
use crate::core::vars::Limits;
use crate::wsgi::env::{self, SecureHeaders};

/// The compiled protocol settings of one worker: gunicorn's request limits, the allow list
/// (`uwsgi_allow_ips`, A1), who may set the secure-scheme headers (`forwarded_allow_ips`)
/// and those headers (E7), the constant environ prepared for copying (E8), gunicorn's
/// `SCRIPT_NAME` (E3), whether gunicorn itself serves TLS, and whether `wsgi.file_wrapper`
/// may use `sendfile(2)`.
///
/// `Settings(limits, allow, forwarded, base, script_name, secure_headers, is_ssl, sendfile)`.
#[pyclass(frozen, module = "gunicorn_uwsgi._native", name = "Settings")]
pub struct Settings {
    pub limits: Limits,
    pub allow: AllowList,
    pub forwarded: AllowList,
    /// The constant environ with a slot for every key an environ always has.
    pub base: Py<PyDict>,
    pub script_name: String,
    pub secure_headers: Option<SecureHeaders>,
    pub is_ssl: bool,
    pub sendfile: bool,
}

impl Settings {
    /// Whether the socket peer `client` may set the secure-scheme headers: an
    /// `(host, port, ...)` tuple in `forwarded_allow_ips`; a unix socket's peer always may.
    pub fn trusts(&self, client: &Bound<'_, PyAny>) -> PyResult<bool> {
        peer_allowed(&self.forwarded, client)
    }
}

/// Whether `list` allows the peer of a Python socket address: an `(host, port, ...)` tuple
/// for TCP; anything else (a unix socket's `''` or path) is always allowed (A3).
pub fn peer_allowed(list: &AllowList, peer: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(tuple) = peer.cast::<PyTuple>() else {
        return Ok(true);
    };
    let host = tuple.get_item(0)?;
    let host = host.cast::<PyString>()?.to_cow()?;
    Ok(list.allows_str(&host))
}

/// `(address, port)` as strings of a Python socket address, the `REMOTE_ADDR`/`REMOTE_PORT`
/// fallback (E4): empty for a unix socket's peer.
pub fn peer_strings<'py>(
    py: Python<'py>,
    addr: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    match addr.cast::<PyTuple>() {
        Ok(t) => Ok((
            t.get_item(0)?.str()?.into_any(),
            t.get_item(1)?.str()?.into_any(),
        )),
        Err(_) => {
            let empty = pyo3::intern!(py, "").clone().into_any();
            Ok((empty.clone(), empty))
        }
    }
}

#[pymethods]
impl Settings {
    #[new]
    #[pyo3(signature = (limits, allow, forwarded, base, script_name, secure_headers, is_ssl, sendfile))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        limits: Limits,
        allow: AllowList,
        forwarded: AllowList,
        base: &Bound<'_, PyDict>,
        script_name: String,
        secure_headers: Option<&Bound<'_, PyDict>>,
        is_ssl: bool,
        sendfile: bool,
    ) -> PyResult<Self> {
        Ok(Self {
            limits,
            allow,
            forwarded,
            base: env::prepare_base(base.py(), base)?.unbind(),
            script_name,
            secure_headers: SecureHeaders::compile(secure_headers)?,
            is_ssl,
            sendfile,
        })
    }

    #[getter]
    fn is_ssl(&self) -> bool {
        self.is_ssl
    }

    #[getter]
    fn sendfile(&self) -> bool {
        self.sendfile
    }

    #[getter]
    fn script_name(&self) -> &str {
        &self.script_name
    }
}
