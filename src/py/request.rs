//! The request object (G3): gunicorn's request attributes over a parsed uwsgi head, and
//! [`request`], which makes one from the bytes a connection's first receive brought.

use pyo3::prelude::*;

use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::core::framing::HEADER_SIZE;
use crate::core::kind::Control;
use crate::core::vars::{self, Progress};
use crate::exceptions::protocol_error;
use crate::py::bindings::{PyHead, PyLimits};
use crate::wsgi::env::{self, latin1, Context};
use crate::wsgi::reader::BytesInput;
use crate::wsgi::settings::{peer_strings, Settings};
use crate::wsgi::writer::IsHead;

/// One uwsgi request: `method`, `path`, `query`, `uri`, `version`, `headers`, `body`,
/// `remote_addr` as gunicorn's `Request` has them, plus `uwsgi_vars` and `head`.
///
/// `UWSGIRequest(head, body, peer_addr, req_number=1, scheme="http")`. Instances take any
/// further attribute a hook sets on them.
#[pyclass(module = "gunicorn_uwsgi._native", name = "UWSGIRequest", dict)]
pub struct Request {
    head: Py<PyHead>,
    /// `wsgi.input`: a `BytesInput` when the body arrived whole, else a `Body`.
    #[pyo3(get, set)]
    body: Py<PyAny>,
    /// The socket peer (nginx).
    #[pyo3(get, set)]
    peer_addr: Py<PyAny>,
    #[pyo3(get, set)]
    req_number: usize,
    /// `wsgi.url_scheme` (E7), set by the parser and again when the environ is built.
    #[pyo3(get, set)]
    scheme: Py<PyAny>,
    #[pyo3(get, set)]
    must_close: bool,
    headers: Option<Py<PyList>>,
    vars: Option<Py<PyDict>>,
}

impl Request {
    /// Whether the method is `HEAD` (the response then has no body, R4).
    pub fn is_head(&self) -> bool {
        self.head.get().is_head()
    }

    fn text<'py>(&self, py: Python<'py>, which: Control) -> PyResult<Bound<'py, PyString>> {
        match self.head.get().control_bytes(which) {
            Some(v) => latin1(py, v),
            None => Ok(pyo3::intern!(py, "").clone()),
        }
    }

    fn uri_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        let head = self.head.get();
        head.head.request_uri(&head.block)
    }

    /// Sets `scheme` by the E7 rules from the vars, for a request from socket peer `client`:
    /// right from parse time, as gunicorn's request has it for `pre_request`.
    fn resolve_scheme(
        &mut self,
        py: Python<'_>,
        settings: &Settings,
        client: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let trusted = || settings.trusts(client);
        let head = self.head.get();
        let scheme = env::url_scheme(
            &head.head,
            &head.block,
            env::request_scheme(&head.head, &head.block),
            settings.secure_headers.as_ref(),
            &trusted,
            settings.is_ssl,
        )?;
        self.scheme = scheme_object(py, scheme);
        Ok(())
    }
}

/// `"https"` or `"http"`, interned.
fn scheme_object(py: Python<'_>, scheme: &str) -> Py<PyAny> {
    match scheme {
        "https" => pyo3::intern!(py, "https"),
        _ => pyo3::intern!(py, "http"),
    }
    .clone()
    .into_any()
    .unbind()
}

/// `HTTP/x.y` as `(x, y)`; anything else is HTTP/1.1.
fn version(protocol: Option<&[u8]>) -> (u32, u32) {
    let parsed = protocol
        .and_then(|p| p.strip_prefix(b"HTTP/"))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| {
            let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if digits(major) && (digits(minor) || minor.is_empty()) {
                Some((major.parse().ok()?, minor.parse().unwrap_or(0)))
            } else {
                None
            }
        });
    parsed.unwrap_or((1, 1))
}

#[pymethods]
impl Request {
    /// The WSGI environ (E1–E8) for this request on connection `sock` from `client` (the
    /// socket peer) to `server` (the listening address); sets `scheme`.
    fn environ<'py>(
        &mut self,
        py: Python<'py>,
        settings: &Settings,
        sock: &Bound<'py, PyAny>,
        client: &Bound<'py, PyAny>,
        server: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let peer = || peer_strings(py, client);
        let trusted = || settings.trusts(client);
        let ctx = Context {
            base: settings.base.bind(py),
            input: self.body.bind(py),
            socket: sock,
            peer: &peer,
            script_name: &settings.script_name,
            secure_headers: settings.secure_headers.as_ref(),
            trusted: &trusted,
            is_ssl: settings.is_ssl,
            server,
        };
        let head = self.head.get();
        let (env, scheme) = env::build(py, &head.head, &head.block, &ctx)?;
        self.scheme = scheme_object(py, scheme);
        Ok(env)
    }

    /// Sets `scheme` (`wsgi.url_scheme`, E7) from the vars, for a request from socket peer
    /// `client`: the parser does this, so `pre_request` sees it before the environ is built.
    #[pyo3(name = "resolve_scheme")]
    fn py_resolve_scheme(
        &mut self,
        py: Python<'_>,
        settings: &Settings,
        client: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.resolve_scheme(py, settings, client)
    }

    #[new]
    #[pyo3(signature = (head, body, peer_addr, req_number=1, scheme=None))]
    fn new(
        py: Python<'_>,
        head: Py<PyHead>,
        body: Py<PyAny>,
        peer_addr: Py<PyAny>,
        req_number: usize,
        scheme: Option<Py<PyAny>>,
    ) -> Self {
        Self {
            head,
            body,
            peer_addr,
            req_number,
            scheme: scheme.unwrap_or_else(|| pyo3::intern!(py, "http").clone().into_any().unbind()),
            must_close: true,
            headers: None,
            vars: None,
        }
    }

    /// The parsed head (`_native.Head`).
    #[getter]
    fn head(&self, py: Python<'_>) -> Py<PyHead> {
        self.head.clone_ref(py)
    }

    #[getter]
    fn method<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let head = self.head.get();
        latin1(py, head.head.method(&head.block))
    }

    #[getter]
    fn modifier1(&self) -> u8 {
        self.head.get().head.header.modifier1
    }

    #[getter]
    fn modifier2(&self) -> u8 {
        self.head.get().head.header.modifier2
    }

    /// `PATH_INFO` as nginx sent it (never decoded again, E2).
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        self.text(py, Control::PathInfo)
    }

    #[getter]
    fn query<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        self.text(py, Control::QueryString)
    }

    /// `REQUEST_URI`, else `PATH_INFO?QUERY_STRING`.
    #[getter]
    fn uri<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        latin1(py, &self.uri_bytes())
    }

    /// The URI's path part, as bytes.
    #[getter]
    fn raw_path<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let uri = self.uri_bytes();
        let path = uri.split(|&b| b == b'?').next().unwrap_or_default();
        PyBytes::new(py, path)
    }

    /// `SERVER_PROTOCOL` as `(major, minor)`, `(1, 1)` when absent or not `HTTP/x.y`.
    #[getter]
    fn version(&self) -> (u32, u32) {
        version(self.head.get().control_bytes(Control::ServerProtocol))
    }

    /// The real client from `REMOTE_ADDR` when nginx sent it, else the socket peer.
    #[getter]
    fn remote_addr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let head = self.head.get();
        let Some(addr) = head.control_bytes(Control::RemoteAddr) else {
            return Ok(self.peer_addr.bind(py).clone());
        };
        let port = head
            .control_bytes(Control::RemotePort)
            .filter(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
            .and_then(|p| std::str::from_utf8(p).ok())
            .map_or(Ok(0u64.into_pyobject(py)?.into_any()), |p| {
                p.parse::<u64>().map_or_else(
                    // More digits than 64 bits: Python's int() takes them all.
                    |_| {
                        py.get_type::<pyo3::types::PyInt>()
                            .call1((p,))
                            .map(Bound::into_any)
                    },
                    |n| Ok(n.into_pyobject(py)?.into_any()),
                )
            })?;
        Ok(PyTuple::new(py, [latin1(py, addr)?.into_any(), port])?.into_any())
    }

    /// The request headers as gunicorn lists them: `(NAME, value)`, `HTTP_X_Y` as `X-Y`.
    #[getter]
    fn headers<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if let Some(h) = &self.headers {
            return Ok(h.bind(py).clone());
        }
        let list = self.head.get().headers(py)?;
        self.headers = Some(list.clone().unbind());
        Ok(list)
    }

    /// Every var as sent, repeated headers joined (V3).
    #[getter]
    fn uwsgi_vars<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(v) = &self.vars {
            return Ok(v.bind(py).clone());
        }
        let dict = self.head.get().vars(py)?;
        self.vars = Some(dict.clone().unbind());
        Ok(dict)
    }

    #[getter]
    fn fragment<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        pyo3::intern!(py, "").clone()
    }

    #[getter]
    fn trailers<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        PyList::empty(py)
    }

    #[getter]
    fn proxy_protocol_info(&self) -> Option<()> {
        None
    }

    #[getter]
    fn _expected_100_continue(&self) -> bool {
        false
    }

    /// Always: nginx never reuses a uwsgi connection (F5).
    fn should_close(&self) -> bool {
        true
    }

    fn force_close(&mut self) {
        self.must_close = true;
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let method = self.method(py)?;
        let uri = self.uri(py)?;
        Ok(format!("<UWSGIRequest {method} {uri}>"))
    }
}

/// The request in `data`, the bytes a connection's first receive brought: parsed, with its
/// body as a `BytesInput` when the body is all there, else with `body` None for the caller to
/// read lazily. Returns the number of bytes the head needs when more must be read first.
#[pyfunction]
#[pyo3(signature = (data, limits, peer, req_number=1))]
pub fn request<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    limits: &PyLimits,
    peer: Py<PyAny>,
    req_number: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let bytes = data.as_bytes();
    let head = match vars::parse_head(bytes, &limits.inner()) {
        Ok(Progress::Done(head)) => head,
        Ok(Progress::NeedMore(n)) => return Ok(n.into_pyobject(py)?.into_any()),
        Err(e) => return Err(protocol_error(py, &e)),
    };
    let size = head.header.head_size();
    let length = usize::try_from(head.content_length).unwrap_or(usize::MAX);
    let block = bytes.get(HEADER_SIZE..size).unwrap_or_default().to_vec();
    let rest = bytes.get(size..).unwrap_or_default();
    let body = if length == 0 {
        crate::wsgi::reader::empty(py, !rest.is_empty())?.into_any()
    } else if rest.len() >= length {
        let body = PyBytes::new(py, rest.get(..length).unwrap_or_default());
        Bound::new(py, BytesInput::with_overflow(body, rest.len() > length))?.into_any()
    } else {
        py.None().into_bound(py)
    };
    let head = Py::new(py, PyHead::new(head, block))?;
    let req = Request {
        head,
        body: body.unbind(),
        peer_addr: peer,
        req_number,
        scheme: pyo3::intern!(py, "http").clone().into_any().unbind(),
        must_close: true,
        headers: None,
        vars: None,
    };
    Ok(Bound::new(py, req)?.into_any())
}

/// gunicorn's request object for the hooks of a request the Rust cycle serves (G3): made from
/// its head and vars block, `body` the environ's `wsgi.input`, `scheme` set, as the Python
/// path's request has them when `pre_request` runs.
pub fn for_hooks<'py>(
    py: Python<'py>,
    head: &vars::Head,
    block: &[u8],
    body: &Bound<'py, PyAny>,
    peer: &Bound<'py, PyAny>,
    req_number: usize,
    settings: &Settings,
) -> PyResult<Bound<'py, PyAny>> {
    let mut req = Request {
        head: Py::new(py, PyHead::new(head.clone(), block.to_vec()))?,
        body: body.clone().unbind(),
        peer_addr: peer.clone().unbind(),
        req_number,
        scheme: pyo3::intern!(py, "http").clone().into_any().unbind(),
        must_close: true,
        headers: None,
        vars: None,
    };
    req.resolve_scheme(py, settings, peer)?;
    Ok(Bound::new(py, req)?.into_any())
}

/// The `req` argument of `Response(req, sock, …)`: this module's request object says whether
/// it is `HEAD` directly, any other object (gunicorn's own request) through `method`.
impl<'a, 'py> FromPyObject<'a, 'py> for IsHead {
    type Error = PyErr;

    fn extract(req: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(IsHead(match req.cast::<Request>() {
            Ok(r) => r.borrow().is_head(),
            Err(_) => req
                .getattr(pyo3::intern!(req.py(), "method"))
                .is_ok_and(|m| m.eq("HEAD").unwrap_or(false)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::version;

    #[test]
    fn g3_version() {
        assert_eq!(version(Some(b"HTTP/1.0")), (1, 0));
        assert_eq!(version(Some(b"HTTP/2")), (2, 0));
        assert_eq!(version(Some(b"HTTP/2.0")), (2, 0));
        assert_eq!(version(Some(b"HTTP/x.1")), (1, 1));
        assert_eq!(version(Some(b"SPDY/3")), (1, 1));
        assert_eq!(version(None), (1, 1));
    }
}
