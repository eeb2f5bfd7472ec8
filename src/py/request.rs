//! The request object (G3): gunicorn's request attributes over a parsed uwsgi head, and
//! [`request`], which makes one from the bytes a connection's first receive brought.

use pyo3::prelude::*;
use std::sync::Arc;

use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::core::framing::HEADER_SIZE;
use crate::core::kind::Control;
use crate::core::vars::{self, Progress};
use crate::exceptions::{forbidden, protocol_error};
use crate::py::bindings::{PyAllowList, PyHead, PyLimits};
use crate::wsgi::env::{self, latin1, Context};
use crate::wsgi::reader::BytesInput;
use crate::wsgi::settings::{peer_strings, Settings};
use crate::wsgi::writer::{IsHead, Response};

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

/// The Python side the parser calls into: `settings_for`, `read_request`, `_IterSource`.
struct Helpers {
    settings_for: Py<PyAny>,
    read_request: Py<PyAny>,
    iter_source: Py<PyAny>,
}

static HELPERS: PyOnceLock<Helpers> = PyOnceLock::new();

/// The protocol settings of one `cfg` (`settings.ProtocolSettings`) with the native parts the
/// parser and `create` use, looked up once.
struct Compiled {
    cfg: Py<PyAny>,
    settings: Py<PyAny>,
    limits: Py<PyLimits>,
    allow: Py<PyAllowList>,
    native: Py<Settings>,
}

impl Compiled {
    fn of(py: Python<'_>, cfg: &Bound<'_, PyAny>, settings: Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            cfg: cfg.clone().unbind(),
            limits: settings
                .getattr(pyo3::intern!(py, "limits"))?
                .cast_into::<PyLimits>()?
                .unbind(),
            allow: settings
                .getattr(pyo3::intern!(py, "allow"))?
                .cast_into::<PyAllowList>()?
                .unbind(),
            native: settings
                .getattr(pyo3::intern!(py, "native"))?
                .cast_into::<Settings>()?
                .unbind(),
            settings: settings.unbind(),
        })
    }
}

/// The settings last compiled: a worker has one `cfg`.
static LAST: std::sync::Mutex<Option<Arc<Compiled>>> = std::sync::Mutex::new(None);

/// `settings.settings_for(cfg)` with its native parts, remembered for the last `cfg` (or
/// settings object, when the caller passes its own) seen.
fn compiled(
    py: Python<'_>,
    cfg: &Bound<'_, PyAny>,
    settings: Option<&Bound<'_, PyAny>>,
) -> PyResult<Arc<Compiled>> {
    if let Ok(last) = LAST.try_lock() {
        if let Some(c) = last.as_ref() {
            let hit = match settings {
                Some(s) => c.settings.is(s),
                None => c.cfg.is(cfg),
            };
            if hit {
                return Ok(Arc::clone(c));
            }
        }
    }
    let settings = match settings {
        Some(s) => s.clone(),
        None => helpers(py)?.settings_for.bind(py).call1((cfg,))?,
    };
    let made = Arc::new(Compiled::of(py, cfg, settings)?);
    if let Ok(mut last) = LAST.try_lock() {
        *last = Some(Arc::clone(&made));
    }
    Ok(made)
}

fn helpers(py: Python<'_>) -> PyResult<&Helpers> {
    HELPERS.get_or_try_init(py, || {
        let settings = py.import("gunicorn_uwsgi.settings")?;
        let parser = py.import("gunicorn_uwsgi.parser")?;
        Ok(Helpers {
            settings_for: settings.getattr("settings_for")?.unbind(),
            read_request: parser.getattr("read_request")?.unbind(),
            iter_source: parser.getattr("_IterSource")?.unbind(),
        })
    })
}

/// `(response, environ)` for a request, like `gunicorn.http.wsgi.create`: the response writer
/// for `sock` and the environ (E1–E8). `settings` defaults to the ones compiled for `cfg`.
#[pyfunction]
#[pyo3(signature = (req, sock, client, server, cfg, settings=None))]
pub fn create<'py>(
    py: Python<'py>,
    req: &Bound<'py, Request>,
    sock: &Bound<'py, PyAny>,
    client: &Bound<'py, PyAny>,
    server: Option<&Bound<'py, PyAny>>,
    cfg: &Bound<'py, PyAny>,
    settings: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let compiled = compiled(py, cfg, settings.as_ref().filter(|s| !s.is_none()))?;
    let sendfile = compiled.native.get().sendfile;
    let environ = req
        .borrow_mut()
        .environ(py, compiled.native.get(), sock, client, server)?;
    let response = Response::over_socket(
        py,
        req.clone().into_any().unbind(),
        sock,
        req.borrow().is_head(),
        sendfile,
    )?;
    PyTuple::new(
        py,
        [Bound::new(py, response)?.into_any(), environ.into_any()],
    )
}

/// gunicorn's parser interface for uwsgi: `UWSGIParser(cfg, source, source_addr)`.
///
/// `source` is a socket or an iterable of byte strings. Iterating yields the connection's one
/// request (F5) and then stops. The allow list is checked first (A4).
#[pyclass(module = "gunicorn_uwsgi._native", name = "UWSGIParser")]
pub struct Parser {
    #[pyo3(get)]
    cfg: Py<PyAny>,
    #[pyo3(get)]
    source: Py<PyAny>,
    #[pyo3(get)]
    source_addr: Py<PyAny>,
    /// The protocol settings compiled for `cfg`.
    compiled: Arc<Compiled>,
    /// The request read, once iterated.
    #[pyo3(get)]
    mesg: Option<Py<PyAny>>,
    #[pyo3(get)]
    req_count: usize,
    /// `source` is an iterable of byte strings, not a socket.
    iterable: bool,
    /// `source` is a list or a tuple.
    sequence: bool,
    done: bool,
}

impl Parser {
    /// The request from an iterable source: its first string in one native call when it holds
    /// the whole head and body, else through `read_request` over the rest.
    fn read_chunks<'py>(
        &self,
        py: Python<'py>,
        settings: &Bound<'py, PyAny>,
        limits: &PyLimits,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let source = self.source.bind(py);
        // A list or tuple is read by index; the iterator is made only for the slow path.
        let mut iter = None;
        let first = if self.sequence {
            if source.len()? == 0 {
                return Ok(None);
            }
            source.get_item(0)?
        } else {
            let it = source.try_iter()?;
            let first = match it.clone().next() {
                None => return Ok(None),
                Some(d) => d?,
            };
            iter = Some(it);
            first
        };
        let data = first.cast_into::<PyBytes>()?;
        if data.as_bytes().is_empty() {
            return Ok(None);
        }
        let req = request(py, &data, limits, self.source_addr.clone_ref(py), 1)?;
        if let Ok(r) = req.cast::<Request>() {
            if !r.borrow().body.is_none(py) {
                r.borrow_mut().resolve_scheme(
                    py,
                    self.compiled.native.get(),
                    self.source_addr.bind(py),
                )?;
                return Ok(Some(req));
            }
        }
        let rest = match iter {
            Some(it) => it,
            None => {
                let it = source.try_iter()?;
                it.clone().next().transpose()?;
                it
            }
        };
        let h = helpers(py)?;
        let source = h.iter_source.bind(py).call1((rest,))?;
        let req = h.read_request.bind(py).call1((
            source,
            self.source_addr.bind(py),
            settings,
            1,
            data,
        ))?;
        Ok(Some(req).filter(|r| !r.is_none()))
    }
}

#[pymethods]
impl Parser {
    #[new]
    fn new(
        py: Python<'_>,
        cfg: Bound<'_, PyAny>,
        source: Bound<'_, PyAny>,
        source_addr: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let compiled = compiled(py, &cfg, None)?;
        // A list or tuple of strings is the usual iterable source; anything else is a socket
        // when it has `recv`.
        let sequence = source.is_instance_of::<PyList>() || source.is_instance_of::<PyTuple>();
        let iterable = sequence || !source.hasattr(pyo3::intern!(py, "recv"))?;
        if iterable && !sequence {
            // Not iterable at all: say so now, as `iter()` would.
            source.try_iter()?;
        }
        Ok(Self {
            cfg: cfg.unbind(),
            source: source.unbind(),
            source_addr: source_addr.unbind(),
            compiled,
            mesg: None,
            req_count: 0,
            iterable,
            sequence,
            done: false,
        })
    }

    /// The request class the parser yields, as gunicorn's parsers have it.
    #[classattr]
    fn mesg_class(py: Python<'_>) -> Py<pyo3::types::PyType> {
        py.get_type::<Request>().unbind()
    }

    /// The protocol settings compiled for `cfg` (`settings.ProtocolSettings`).
    #[getter]
    fn settings(&self, py: Python<'_>) -> Py<PyAny> {
        self.compiled.settings.clone_ref(py)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let compiled = Arc::clone(&self.compiled);
        let settings = compiled.settings.bind(py);
        let peer = self.source_addr.bind(py);
        if !compiled.allow.get().allows(peer)? {
            let host = peer.get_item(0)?.str()?.to_string();
            return Err(forbidden(py, host));
        }
        let req = if self.iterable {
            self.read_chunks(py, settings, compiled.limits.get())?
        } else {
            Some(helpers(py)?.read_request.bind(py).call1((
                self.source.bind(py),
                peer,
                &settings,
            ))?)
            .filter(|r| !r.is_none())
        };
        if let Some(req) = &req {
            self.mesg = Some(req.clone().unbind());
            self.req_count = 1;
        }
        Ok(req)
    }
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
