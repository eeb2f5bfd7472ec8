//! The response writer handed to WSGI applications (R1–R7): `start_response`, `write`,
//! `wsgi.file_wrapper` over `sendfile(2)`, and the end-of-response checks.
//!
//! It writes straight to the connection's descriptor when it has one (a plain blocking socket,
//! or the gevent worker's non-blocking one with its cooperative waits), else through the Python
//! socket's `sendall` (TLS, or a socket with a Python-level timeout). Blocking sends release
//! the GIL.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;

use pyo3::exceptions::{PyAssertionError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString, PyTuple};

use crate::core::response_head::{self, ResponseHead};
use crate::exceptions::{os_error, response_error};
use crate::net;
use crate::wsgi::connection::Waits;

/// Bodies up to this size leave in the same write as the head (R5).
pub const SMALL_BODY: usize = 65536;

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

#[cold]
fn warn(py: Python<'_>, message: String) {
    let logger = LOGGER.get_or_try_init(py, || {
        py.import("logging")?
            .call_method1("getLogger", ("gunicorn.error",))
            .map(Bound::unbind)
    });
    if let Ok(logger) = logger {
        let _ = logger.bind(py).call_method1("warning", (message,));
    }
}

fn as_str(o: &Bound<'_, PyAny>) -> PyResult<String> {
    o.cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{o:?} is not a string")))?
        .to_cow()
        .map(|c| c.into_owned())
}

/// Validates a status and an iterable of `(name, value)` pairs into a serialised head (R1–R4).
pub fn build_head(
    py: Python<'_>,
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    is_head: bool,
) -> PyResult<ResponseHead> {
    let status = as_str(status)?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        pairs.push((as_str(&name)?, as_str(&value)?));
    }
    response_head::build_head(
        &status,
        pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        is_head,
    )
    .map_err(|e| response_error(py, &e))
}

/// Whether the request a [`Response`] answers is a `HEAD` request, taken from the `req` argument.
///
/// The py surface implements the extraction (`py/request.rs`): its request object answers
/// directly, any other object through its `method` attribute. The writer thus takes any
/// request without depending on the py surface.
pub struct IsHead(pub bool);

/// The descriptor `fileno` of the file object `file` (a `wsgi.file_wrapper`'s `filelike`), borrowed
/// while `file` is.
#[allow(unsafe_code)]
fn file_handle<'a>(_file: &'a Bound<'_, PyAny>, fileno: RawFd) -> Option<BorrowedFd<'a>> {
    // SAFETY: `fileno` is what `file.fileno()` just answered, and the caller holds `file`
    // (so does the response iterable) for the whole borrow, during which the file wrapper's
    // contract keeps the file open.
    unsafe { net::borrow(fileno) }
}

/// Writes one response on one connection.
#[pyclass(module = "gunicorn_uwsgi._native")]
pub struct Response {
    #[pyo3(get)]
    req: Py<PyAny>,
    #[pyo3(get)]
    sock: Py<PyAny>,
    /// The socket's descriptor when bytes can go to it directly, else -1.
    fd: RawFd,
    /// `fd` belongs to a Python socket the application can close: before a direct write,
    /// the socket is asked whether it still has that descriptor.
    check_fd: bool,
    is_head: bool,
    use_sendfile: bool,
    /// The status as the application gave it (set by the server for its own error answers).
    #[pyo3(get, set)]
    status: Option<Py<PyAny>>,
    #[pyo3(get)]
    status_code: Option<u16>,
    headers: Option<Py<PyAny>>,
    head: Option<Vec<u8>>,
    #[pyo3(get)]
    response_length: Option<u64>,
    no_body: bool,
    #[pyo3(get)]
    headers_sent: bool,
    #[pyo3(get, set)]
    sent: u64,
    warned_no_body: bool,
    /// Set when `fd` is non-blocking and a full socket buffer is waited for cooperatively
    /// (the gevent worker); else a send blocks up to the socket's `SO_SNDTIMEO`.
    waits: Option<Arc<Waits>>,
}

impl Response {
    /// A writer for `sock`; `fd` is its descriptor when direct writes are safe, else -1.
    pub fn with_fd(
        req: Py<PyAny>,
        sock: Py<PyAny>,
        fd: RawFd,
        is_head: bool,
        use_sendfile: bool,
    ) -> Self {
        Self {
            req,
            sock,
            fd,
            check_fd: false,
            is_head,
            use_sendfile,
            status: None,
            status_code: None,
            headers: None,
            head: None,
            response_length: None,
            no_body: false,
            headers_sent: false,
            sent: 0,
            warned_no_body: false,
            waits: None,
        }
    }

    /// Waits for a full socket buffer with `waits` (`fd` is non-blocking).
    pub fn cooperative(self, waits: Arc<Waits>) -> Self {
        Self {
            waits: Some(waits),
            ..self
        }
    }

    /// A writer for the Python socket `sock`: straight to its descriptor when that is safe.
    pub fn over_socket(
        py: Python<'_>,
        req: Py<PyAny>,
        sock: &Bound<'_, PyAny>,
        is_head: bool,
        use_sendfile: bool,
    ) -> PyResult<Self> {
        let fd = direct_fd(py, sock)?;
        Ok(Self {
            check_fd: fd >= 0,
            ..Self::with_fd(req, sock.clone().unbind(), fd, is_head, use_sendfile)
        })
    }

    /// What the access log takes from the response: the status and headers as the application
    /// gave them, the body bytes sent.
    pub fn logged<'py>(
        &self,
        py: Python<'py>,
    ) -> (Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>, u64) {
        (
            self.status.as_ref().map(|s| s.bind(py).clone()),
            self.headers.as_ref().map(|h| h.bind(py).clone()),
            self.sent,
        )
    }

    /// Whether the head has been written.
    pub fn headers_sent(&self) -> bool {
        self.headers_sent
    }

    /// The descriptor to write to directly, if any. A socket the application closed (or
    /// whose descriptor changed) fails as `sendall` would on it, with EBADF: the bytes never
    /// go to a descriptor number that may belong to something else by now.
    fn direct(&self, py: Python<'_>) -> PyResult<RawFd> {
        if self.check_fd {
            let now: RawFd = self
                .sock
                .bind(py)
                .call_method0(pyo3::intern!(py, "fileno"))?
                .extract()?;
            if now != self.fd {
                return Err(pyo3::exceptions::PyOSError::new_err((
                    9,
                    "Bad file descriptor: gunicorn.socket was closed by the application",
                )));
            }
        }
        Ok(self.fd)
    }

    /// [`direct`](Self::direct) as a handle, borrowed while `self` is.
    #[allow(unsafe_code)]
    fn direct_handle(&self, py: Python<'_>) -> PyResult<Option<BorrowedFd<'_>>> {
        let fd = self.direct(py)?;
        // SAFETY: `fd` is the descriptor of `self.sock`, which `self` keeps alive while the
        // handle is borrowed: a Python socket (whose `fileno()` `direct` has just checked
        // when the application can close it) or the fast path's `Connection`, which owns
        // the descriptor until the serve loop closes it after the response.
        Ok(unsafe { net::borrow(fd) })
    }

    fn send(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        match self.direct_handle(py)? {
            Some(fd) => {
                let mut done = net::send_ready(fd, data).map_err(|e| os_error(&e))?;
                while let Some(rest) = data.get(done..).filter(|r| !r.is_empty()) {
                    match &self.waits {
                        Some(waits) => {
                            waits.writable(py, self.fd)?;
                            done += net::send_ready(fd, rest).map_err(|e| os_error(&e))?;
                        }
                        None => {
                            py.detach(|| net::send_all(fd, rest))
                                .map_err(|e| os_error(&e))?;
                            break;
                        }
                    }
                }
                Ok(())
            }
            None => {
                self.sock
                    .bind(py)
                    .call_method1("sendall", (PyBytes::new(py, data),))?;
                Ok(())
            }
        }
    }

    /// Body bytes the response cannot carry were dropped (R4). For HEAD that is the server's
    /// job (PEP 3333: the application may send the body it would send for GET), so it is
    /// silent; a body on a 1xx, 204 or 304 is the application's mistake and is reported once.
    fn warn_no_body(&mut self, py: Python<'_>) {
        let status = self.status_code.unwrap_or(0);
        if self.is_head && !response_head::omits_body(status, false) {
            return;
        }
        if !self.warned_no_body {
            self.warned_no_body = true;
            warn(
                py,
                format!(
                    "WSGI app sent body bytes on a response without a body (status {status}); dropped."
                ),
            );
        }
    }

    /// Body bytes from the application (R3, R4, R5).
    pub fn write_bytes(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let Some(head) = self.head.as_ref() else {
            return Err(PyAssertionError::new_err("write() before start_response()"));
        };
        if data.is_empty() {
            return Ok(());
        }
        if self.no_body {
            self.warn_no_body(py);
            return Ok(());
        }
        let mut data = data;
        if let Some(limit) = self.response_length {
            let left = limit.saturating_sub(self.sent);
            if left == 0 {
                return Ok(());
            }
            if (data.len() as u64) > left {
                data = data.get(..left as usize).unwrap_or(data);
            }
        }
        if !self.headers_sent {
            self.headers_sent = true;
            if data.len() <= SMALL_BODY {
                let mut out = Vec::with_capacity(head.len() + data.len());
                out.extend_from_slice(head);
                out.extend_from_slice(data);
                self.send(py, &out)?;
            } else {
                let head = head.clone();
                self.send(py, &head)?;
                self.send(py, data)?;
            }
        } else {
            self.send(py, data)?;
        }
        self.sent += data.len() as u64;
        Ok(())
    }

    fn flush_head(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.headers_sent {
            return Ok(());
        }
        let Some(head) = self.head.clone() else {
            return Err(PyAssertionError::new_err(
                "the application returned without calling start_response()",
            ));
        };
        self.headers_sent = true;
        self.send(py, &head)
    }

    /// `sendfile(2)` for a file wrapper over a real file; `false` when it cannot be used.
    fn send_file(&mut self, py: Python<'_>, respiter: &Bound<'_, PyAny>) -> PyResult<bool> {
        if !self.use_sendfile || self.head.is_none() {
            return Ok(false);
        }
        let Ok(filelike) = respiter.getattr("filelike") else {
            return Ok(false);
        };
        let Ok(fileno) = filelike
            .call_method0("fileno")
            .and_then(|f| f.extract::<RawFd>())
        else {
            return Ok(false);
        };
        let Some(file) = file_handle(&filelike, fileno) else {
            return Ok(false);
        };
        let Ok(offset) = rustix::fs::seek(file, rustix::fs::SeekFrom::Current(0)) else {
            return Ok(false);
        };
        let Ok(stat) = rustix::fs::fstat(file) else {
            return Ok(false);
        };
        let mut size = (stat.st_size.max(0) as u64).saturating_sub(offset);
        self.flush_head(py)?;
        if self.no_body {
            if size > 0 {
                self.warn_no_body(py);
            }
            return Ok(true);
        }
        if let Some(limit) = self.response_length {
            size = size.min(limit.saturating_sub(self.sent));
        }
        if size == 0 {
            return Ok(true);
        }
        let sent = match (self.direct_handle(py)?, &self.waits) {
            (Some(out), None) => py
                .detach(|| net::send_file(out, file, offset, size))
                .map_err(|e| os_error(&e))?,
            (Some(out), Some(waits)) => {
                let mut sent = 0;
                loop {
                    sent += net::send_file_ready(out, file, offset + sent, size - sent)
                        .map_err(|e| os_error(&e))?;
                    if sent >= size {
                        break sent;
                    }
                    waits.writable(py, self.fd)?;
                }
            }
            // A wrapped socket: its own sendfile (which falls back to send for TLS).
            (None, _) => self
                .sock
                .bind(py)
                .call_method1("sendfile", (&filelike, offset, size))?
                .extract::<u64>()?,
        };
        self.sent += sent;
        Ok(true)
    }
}

#[pymethods]
impl Response {
    #[new]
    #[pyo3(signature = (req, sock, cfg=None, sendfile=true))]
    fn new(
        py: Python<'_>,
        req: Bound<'_, PyAny>,
        sock: Bound<'_, PyAny>,
        cfg: Option<Bound<'_, PyAny>>,
        sendfile: bool,
    ) -> PyResult<Self> {
        let _ = cfg;
        let IsHead(is_head) = req.extract()?;
        Self::over_socket(py, req.unbind(), &sock, is_head, sendfile)
    }

    /// PEP 3333 `start_response`, validating the status and headers at once (R1, R7).
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn start_response<'py>(
        mut slf: PyRefMut<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        match exc_info {
            Some(info) if info.is_truthy()? => {
                if slf.headers_sent {
                    return Err(PyErr::from_value(info.get_item(1)?));
                }
            }
            _ => {
                if slf.status.is_some() {
                    return Err(PyAssertionError::new_err("Response headers already set!"));
                }
            }
        }
        let head = build_head(py, status, headers, slf.is_head)?;
        slf.status = Some(status.clone().unbind());
        slf.status_code = Some(head.status);
        slf.headers = Some(headers.clone().unbind());
        slf.response_length = head.content_length;
        slf.no_body = head.no_body;
        slf.head = Some(head.bytes);
        let this = slf.into_pyobject(py)?;
        this.getattr("write")
    }

    /// Writes body bytes; the head goes out with the first non-empty chunk (R5).
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            return self.write_bytes(py, bytes.as_bytes());
        }
        if let Ok(array) = data.cast::<PyByteArray>() {
            return self.write_bytes(py, &array.to_vec());
        }
        if let Ok(view) = data.cast::<PyMemoryView>() {
            let bytes = view.call_method0("tobytes")?;
            return self.write_bytes(py, bytes.cast::<PyBytes>()?.as_bytes());
        }
        Err(PyTypeError::new_err(format!(
            "{data:?} is not a byte string"
        )))
    }

    fn send_headers(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.head.is_some() {
            self.flush_head(py)?;
        }
        Ok(())
    }

    /// `wsgi.file_wrapper`: `sendfile(2)` when the object has a real descriptor (R5).
    fn write_file(&mut self, py: Python<'_>, respiter: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.send_file(py, respiter)? {
            return Ok(());
        }
        for item in respiter.try_iter()? {
            self.write(py, &item?)?;
        }
        Ok(())
    }

    /// Ends the response: the head if nothing was written, the length check (R3).
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        self.flush_head(py)?;
        if let Some(limit) = self.response_length {
            if !self.no_body && self.sent < limit {
                warn(
                    py,
                    format!(
                        "WSGI app declared Content-Length {limit} but sent {} bytes; closing the connection.",
                        self.sent
                    ),
                );
            }
        }
        Ok(())
    }

    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.headers {
            Some(h) => Ok(h.bind(py).clone()),
            None => Ok(pyo3::types::PyList::empty(py).into_any()),
        }
    }

    #[getter]
    fn chunked(&self) -> bool {
        false
    }

    #[getter]
    fn must_close(&self) -> bool {
        true
    }

    fn should_close(&self) -> bool {
        true
    }

    fn force_close(&self) {}
}

/// The descriptor of `sock` when bytes may be written to it directly: a plain, blocking
/// `socket.socket` (no TLS wrapper, no Python-level timeout). Else -1.
pub fn direct_fd(py: Python<'_>, sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    static SOCKET_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let socket_type = SOCKET_TYPE.get_or_try_init(py, || {
        py.import("socket")?.getattr("socket").map(Bound::unbind)
    })?;
    if !sock.get_type().is(socket_type.bind(py)) {
        return Ok(-1);
    }
    if !sock.call_method0("gettimeout")?.is_none() {
        return Ok(-1);
    }
    sock.call_method0("fileno")?.extract()
}

/// Writes an application's result through `resp` (R7): a bare `bytes` as one chunk, a
/// `file_wrapper` instance with `sendfile`, anything else iterated; then ends the response.
/// The caller calls the result's `close()`.
#[pyfunction]
pub fn write_result(
    py: Python<'_>,
    resp: &Bound<'_, Response>,
    result: &Bound<'_, PyAny>,
    file_wrapper: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if let Ok(bytes) = result.cast::<PyBytes>() {
        resp.borrow_mut().write_bytes(py, bytes.as_bytes())?;
    } else if result.is_instance(file_wrapper)? {
        resp.borrow_mut().write_file(py, result)?;
    } else if let Ok(tuple) = result.cast::<PyTuple>() {
        for item in tuple.iter() {
            resp.borrow_mut().write(py, &item)?;
        }
    } else {
        for item in result.try_iter()? {
            let item = item?;
            resp.borrow_mut().write(py, &item)?;
        }
    }
    resp.borrow_mut().close(py)
}
