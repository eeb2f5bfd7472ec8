//! `gunicorn.socket` on the fast path: the connection's descriptor, with a real `socket.socket`
//! made only if the application asks for one.
//!
//! Creating a Python socket object costs a system call and several Python-level calls per
//! request; almost no application touches `gunicorn.socket`. `fileno()` answers directly; any
//! other attribute builds the `socket.socket` over the same descriptor and forwards to it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::net::Peer;

const SOCK_STREAM: i32 = 1;

/// The connection of one request.
#[pyclass(frozen, module = "gunicorn_uwsgi._native")]
pub struct Connection {
    /// The descriptor, until the connection is closed.
    fd: Mutex<Option<OwnedFd>>,
    raw: RawFd,
    family: i32,
    peer: Peer,
    socket_class: Py<PyAny>,
    socket: PyOnceLock<Py<PyAny>>,
}

impl Connection {
    pub fn new(fd: OwnedFd, peer: Peer, family: i32, socket_class: Py<PyAny>) -> Self {
        let raw = fd.as_raw_fd();
        Self {
            fd: Mutex::new(Some(fd)),
            raw,
            family,
            peer,
            socket_class,
            socket: PyOnceLock::new(),
        }
    }

    /// Calls `f` with the descriptor, borrowed from this connection, unless it is closed.
    pub fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
        let fd = self.fd.lock().ok()?;
        fd.as_ref().map(|fd| f(fd.as_fd()))
    }

    /// The peer it was accepted from.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Takes the descriptor out, for a Python socket of the worker's own: the connection is
    /// closed as far as it is concerned (`None` if it already was).
    pub fn take_fd(&self) -> Option<OwnedFd> {
        self.fd.lock().ok()?.take()
    }

    /// The descriptor number, valid until [`close`](Self::close).
    pub fn raw_fd(&self) -> RawFd {
        self.raw
    }

    /// The `socket.socket` over this connection, made on first use over a duplicate of the
    /// descriptor: an application that closes it closes its duplicate, and the descriptor the
    /// response is written to stays this connection's until [`close`](Self::close) (never a
    /// number the application's next `open` could reuse).
    fn socket<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyAny>> {
        self.socket
            .get_or_try_init(py, || {
                let dup = self
                    .fd
                    .lock()
                    .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("connection lock"))?
                    .as_ref()
                    .ok_or_else(|| pyo3::exceptions::PyOSError::new_err((9, "connection closed")))?
                    .try_clone()?;
                let sock = self.socket_class.bind(py).call1((
                    self.family,
                    SOCK_STREAM,
                    0,
                    dup.as_raw_fd(),
                ))?;
                // The socket object owns the duplicate now.
                let _ = dup.into_raw_fd();
                Ok::<_, PyErr>(sock.unbind())
            })
            .map(|s| s.bind(py))
    }

    /// Closes the connection: the Python socket if one was made, and the descriptor.
    pub fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(sock) = self.socket.get(py) {
            sock.bind(py).call_method0("close")?;
        }
        if let Ok(mut fd) = self.fd.lock() {
            drop(fd.take());
        }
        Ok(())
    }
}

#[pymethods]
impl Connection {
    fn fileno(&self) -> RawFd {
        self.raw
    }

    fn __getattr__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.socket(py)?.getattr(name)
    }

    fn __repr__(&self) -> String {
        format!("<gunicorn_uwsgi connection fd={}>", self.raw)
    }
}

/// The gevent worker's cooperative waits on a non-blocking connection: gevent's
/// `wait_read(fd, timeout)` and `wait_write(fd, timeout)`, which yield to the other greenlets
/// until the descriptor is ready and raise `socket.timeout` when `timeout` seconds pass first
/// (the read timeout bounds each wait for the peer, F8).
pub struct Waits {
    read: Py<PyAny>,
    write: Py<PyAny>,
    pub timeout: f64,
}

impl Waits {
    pub fn new(read: Py<PyAny>, write: Py<PyAny>, timeout: f64) -> Self {
        Self {
            read,
            write,
            timeout,
        }
    }

    /// Waits until `fd` has bytes (or EOF) for at most `timeout` seconds.
    pub fn readable(&self, py: Python<'_>, fd: RawFd, timeout: f64) -> PyResult<()> {
        self.read.bind(py).call1((fd, timeout)).map(drop)
    }

    /// Waits until `fd` takes more bytes, for at most the read timeout.
    pub fn writable(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        self.write.bind(py).call1((fd, self.timeout)).map(drop)
    }
}
