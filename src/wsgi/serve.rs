//! The Rust request cycle: accept → allow check → receive → parse → environ → application →
//! response → close. The sync worker and each ThreadWorker thread serve as many pending
//! connections as a batch allows in one call (`serve`); the gevent worker accepts
//! (`accept_green`) and serves each connection in its own greenlet (`serve_green`), waiting
//! for the peer cooperatively. Both reach one `respond`.
//!
//! It serves the requests that need nothing else from Python: the whole head and body arrived in
//! the first receive, and the worker runs no hooks or access log of its own (the worker decides
//! that). Any other connection — a refused peer, a protocol error, a head in several segments, a
//! body still on its way — is handed back to the Python path with the bytes already read, so
//! every rule is implemented once.

use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::core::framing::HEADER_SIZE;
use crate::core::kind::Control;
use crate::core::response_head;
use crate::core::vars::{self, Progress};
use crate::net::{self, Accepted, Peer};
use crate::wsgi::access::{AccessLog, Entry};
use crate::wsgi::connection::{Connection, Waits};
use crate::wsgi::env::{self, Context};
use crate::wsgi::reader::BytesInput;
use crate::wsgi::settings::Settings;
use crate::wsgi::writer::{write_result, Response};

/// How a batch ended.
pub mod outcome {
    /// No more connections were pending.
    pub const IDLE: u8 = 0;
    /// The batch size was reached, or the worker is stopping.
    pub const FULL: u8 = 1;
    /// The peer went away before sending a request (F6, X3).
    pub const CLOSED: u8 = 2;
    /// A connection goes to the Python path: `take_handoff()`.
    pub const HANDOFF: u8 = 3;
    /// The application or the connection failed mid-request: `take_error()`.
    pub const FAILED: u8 = 4;
    /// The peer stalled before sending a request (F8): `take_peer()`.
    pub const STALLED: u8 = 5;
}

const RECV_SIZE: usize = 65536;

/// Bodies up to this size are read before the application runs when their bytes are already
/// there (nginx buffers request bodies by default); larger ones are read lazily.
const EAGER_BODY: u64 = 1 << 20;

/// How long the fast path waits for the next segment of a packet before handing it over.
const FOLLOW_UP_MS: i64 = 2;
/// How long a batch waits for the next connection before handing the loop back to gunicorn
/// (a signal ends the wait at once).
const ACCEPT_WAIT_MS: i64 = 50;

/// How long the fast path spends at most collecting the rest of a packet after its first bytes:
/// a peer still trickling them after that goes to the Python path, whose read budget counts the
/// time already waited (F8).
const FOLLOW_UP_BUDGET: Duration = Duration::from_millis(50);

/// How often a batch tells the worker it is alive between connections (`worker.notify()`, itself
/// rate-limited): slow peers and slow requests served one after the other in one batch must not
/// look like a stuck worker to the arbiter (F8, G2).
const BEAT_EVERY: Duration = Duration::from_millis(250);

/// `(fd, peer, bytes already read)` for the Python path.
type Handoff<'py> = (RawFd, Bound<'py, PyAny>, Bound<'py, PyBytes>);
/// `(exception, peer, "METHOD URI")` of a failed request.
type Failure<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, String, bool);

pub fn peer_tuple<'py>(py: Python<'py>, peer: Peer) -> PyResult<Bound<'py, PyAny>> {
    match peer {
        Peer::Ip(addr) => (addr.ip().to_string(), addr.port())
            .into_pyobject(py)
            .map(Bound::into_any),
        Peer::Unix => Ok(pyo3::intern!(py, "").clone().into_any()),
    }
}

/// Makes gunicorn's request object (`req`) for the hooks of a request the cycle serves, from
/// its head, vars block, `wsgi.input`, peer address, number and the settings. The class lives
/// in the py surface, above the interfaces, which registers this at module init.
pub type HookRequest = for<'py> fn(
    Python<'py>,
    &vars::Head,
    &[u8],
    &Bound<'py, PyAny>,
    &Bound<'py, PyAny>,
    usize,
    &Settings,
) -> PyResult<Bound<'py, PyAny>>;

static HOOK_REQUEST: std::sync::OnceLock<HookRequest> = std::sync::OnceLock::new();

/// Registers the [`HookRequest`] maker (once, at module init).
pub fn register_hook_request(make: HookRequest) {
    let _ = HOOK_REQUEST.set(make);
}

/// gunicorn's request object for the hooks of a request (the first on its connection), made
/// by the registered [`HookRequest`] maker.
pub fn hook_request<'py>(
    py: Python<'py>,
    head: &vars::Head,
    block: &[u8],
    input: &Bound<'py, PyAny>,
    peer: Peer,
    settings: &Settings,
) -> PyResult<Bound<'py, PyAny>> {
    let make = HOOK_REQUEST
        .get()
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no request class registered"))?;
    make(py, head, block, input, &peer_tuple(py, peer)?, 1, settings)
}

/// The worker's own `pre_request`/`post_request` hooks (None for gunicorn's defaults).
struct Hooks {
    pre: Option<Py<PyAny>>,
    post: Option<Py<PyAny>>,
}

/// What a listener is, for the requests accepted from it.
struct Listener<'a, 'py> {
    /// `None` for a negative number.
    fd: Option<BorrowedFd<'a>>,
    family: i32,
    /// Its `getsockname()`: the `SERVER_NAME`/`SERVER_PORT` fallback (E5).
    server: &'a Bound<'py, PyAny>,
}

/// The per-worker fast path.
#[pyclass(module = "gunicorn_uwsgi._native")]
pub struct FastServer {
    app: Py<PyAny>,
    /// The worker's compiled protocol settings, shared with its Python path.
    settings: Py<Settings>,
    socket_class: Py<PyAny>,
    file_wrapper: Py<PyAny>,
    /// `log.debug` when debug logging is on: gunicorn's default `pre_request` hook logs
    /// `METHOD PATH` there.
    debug: Option<Py<PyAny>>,
    buf: Vec<u8>,
    /// Milliseconds a batch waits for the next connection on its listener before it hands
    /// the loop back (`ACCEPT_WAIT_MS`). A worker with several listeners sets 0: its own wait
    /// covers them all, so a connection on one is not kept waiting behind a wait on another.
    #[pyo3(get, set)]
    accept_wait_ms: i64,
    /// Requests served by the last batch.
    #[pyo3(get)]
    served: usize,
    /// Seconds the last connection kept the fast path waiting for its bytes: the Python path's
    /// read budget counts them as spent when the connection is handed over (F8).
    #[pyo3(get)]
    waited: f64,
    handoff: Option<(OwnedFd, Peer, Vec<u8>)>,
    error: Option<(PyErr, Peer, String, bool)>,
    peer: Option<Peer>,
    /// The cooperative waits of a gevent worker (`cooperate`).
    waits: Option<Arc<Waits>>,
    /// gunicorn's access log, when the worker has one (`log_access`).
    access: Option<Py<AccessLog>>,
    /// Request hooks of the worker's own (`call_hooks`).
    hooks: Option<Hooks>,
}

/// What the gevent worker's first receives on a connection came to.
enum Received {
    Complete(vars::Head),
    /// The peer closed without sending a byte (F6, X3).
    Closed,
    /// For the Python path, after this many seconds of waiting for the peer (F8).
    Handoff(f64),
}

/// What one connection came to.
enum Step {
    Served,
    End(u8),
}

impl FastServer {
    /// Receives the first bytes: what is ready, else blocking up to `SO_RCVTIMEO` without the GIL
    /// (the time blocked goes into `waited`).
    fn receive(&mut self, py: Python<'_>, fd: &OwnedFd) -> std::io::Result<usize> {
        self.buf.clear();
        let borrowed = fd.as_fd();
        if let Some(n) = net::recv_ready(borrowed, &mut self.buf, RECV_SIZE)? {
            return Ok(n);
        }
        let buf = &mut self.buf;
        let started = Instant::now();
        let received = py.detach(|| net::recv_blocking(borrowed, buf, RECV_SIZE));
        self.waited = started.elapsed().as_secs_f64();
        received
    }

    /// Reads on, without blocking, until the buffer holds exactly a valid head and its whole
    /// body. `None` hands the connection to the Python path: an invalid or refused packet, bytes
    /// after the body, a body over [`EAGER_BODY`], or bytes that are not there yet or still
    /// trickling in after [`FOLLOW_UP_BUDGET`] — the Python path then reads the body lazily, as
    /// the application asks for it (B2), within what is left of the read budget (F8).
    fn complete_request(&mut self, py: Python<'_>, fd: &OwnedFd) -> Option<vars::Head> {
        let mut started: Option<Instant> = None;
        loop {
            let need = match vars::parse_head(&self.buf, &self.settings.get().limits) {
                // The first request without REQUEST_METHOD goes to the path that logs it (V6).
                Ok(Progress::Done(head)) if logs_first(&head) => return None,
                Ok(Progress::Done(head)) => {
                    let total = head.header.head_size() as u64 + head.content_length;
                    let have = self.buf.len() as u64;
                    if have == total {
                        return Some(head);
                    }
                    if have > total || total > EAGER_BODY {
                        return None;
                    }
                    (total - have) as usize
                }
                Ok(Progress::NeedMore(n)) => n.saturating_sub(self.buf.len()),
                Err(_) => return None,
            };
            let since = *started.get_or_insert_with(Instant::now);
            let spent = since.elapsed();
            if spent >= FOLLOW_UP_BUDGET {
                self.waited += spent.as_secs_f64();
                return None;
            }
            match net::recv_ready(fd.as_fd(), &mut self.buf, need.min(1 << 20)) {
                Ok(Some(n)) if n > 0 => continue,
                // The rest of a packet nginx is still writing is a moment away; a peer that
                // streams slowly goes to the Python path, which reads its body lazily.
                Ok(None) if py.detach(|| net::wait_readable(fd.as_fd(), FOLLOW_UP_MS)) => continue,
                _ => {
                    self.waited += since.elapsed().as_secs_f64();
                    return None;
                }
            }
        }
    }

    /// One connection, from accept to close.
    fn step(
        &mut self,
        py: Python<'_>,
        listener: &Listener<'_, '_>,
        worker: &Bound<'_, PyAny>,
    ) -> PyResult<Step> {
        let Some(lfd) = listener.fd else {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "invalid listener descriptor",
            ));
        };
        self.waited = 0.0;
        let accept = || net::accept(lfd).map_err(|e| crate::exceptions::os_error(&e));
        let (fd, peer) = match accept()? {
            Accepted::Conn(fd, peer) => (fd, peer),
            // Between two of nginx's connections: wait for the next one here, without the GIL,
            // rather than going round gunicorn's loop for each. A connection another worker
            // process or thread took first is waited past in the same wait; the wait ends
            // after ACCEPT_WAIT_MS, or at once for a signal, so the loop still comes back.
            Accepted::Idle if self.accept_wait_ms <= 0 => return Ok(Step::End(outcome::IDLE)),
            Accepted::Idle => match py.detach(|| accept_within(lfd, self.accept_wait_ms)) {
                Ok(Some((fd, peer))) => (fd, peer),
                Ok(None) => return Ok(Step::End(outcome::IDLE)),
                Err(e) => return Err(crate::exceptions::os_error(&e)),
            },
        };
        if peer
            .ip()
            .is_some_and(|ip| !self.settings.get().allow.allows(ip))
        {
            self.handoff = Some((fd, peer, Vec::new()));
            return Ok(Step::End(outcome::HANDOFF));
        }
        match self.receive(py, &fd) {
            Ok(0) => return Ok(Step::End(outcome::CLOSED)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.peer = Some(peer);
                return Ok(Step::End(outcome::STALLED));
            }
            Err(_) => return Ok(Step::End(outcome::CLOSED)),
        }
        let Some(head) = self.complete_request(py, &fd) else {
            let data = std::mem::replace(&mut self.buf, Vec::with_capacity(RECV_SIZE));
            self.handoff = Some((fd, peer, data));
            return Ok(Step::End(outcome::HANDOFF));
        };
        let conn = Bound::new(
            py,
            Connection::new(fd, peer, listener.family, self.socket_class.clone_ref(py)),
        )?;
        let data = std::mem::take(&mut self.buf);
        let result = self.respond(py, listener.server, &conn, &data, &head, worker, None);
        self.buf = data;
        match result? {
            None => Ok(Step::Served),
            Some((e, counted)) => {
                let block = self
                    .buf
                    .get(HEADER_SIZE..head.header.head_size())
                    .unwrap_or_default();
                self.error = Some((e, peer, describe(&head, block), counted));
                Ok(Step::End(outcome::FAILED))
            }
        }
    }

    /// [`serve`](Self::serve)'s loop: up to `limit` connections while `worker.alive`, Python
    /// signal handlers run between them, the heartbeat every [`BEAT_EVERY`], the access log
    /// flushed when its lines have waited long enough.
    fn batch(
        &mut self,
        py: Python<'_>,
        listener: &Listener<'_, '_>,
        worker: &Bound<'_, PyAny>,
        limit: usize,
    ) -> PyResult<u8> {
        let mut beat = Instant::now();
        while self.served < limit {
            match self.step(py, listener, worker)? {
                Step::Served => self.served += 1,
                Step::End(code) => return Ok(code),
            }
            py.check_signals()?;
            if !worker.getattr(pyo3::intern!(py, "alive"))?.is_truthy()? {
                break;
            }
            if let Some(log) = self.access.as_ref().filter(|log| log.get().due()) {
                log.get().write_pending_reporting(py);
            }
            if beat.elapsed() >= BEAT_EVERY {
                worker.call_method0(pyo3::intern!(py, "notify"))?;
                beat = Instant::now();
            }
        }
        Ok(outcome::FULL)
    }

    /// Builds the environ, runs the application, writes its response (E, R, X2) for the
    /// request `head` whose bytes, body included, are `data`; closes the connection. Returns
    /// the failure of a request the application or the connection failed (a 500 sent when
    /// nothing else was), with whether it counts as a request (its application was called);
    /// the worker's own exit raised in the application is raised again.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        py: Python<'_>,
        server: &Bound<'_, PyAny>,
        conn: &Bound<'_, Connection>,
        data: &[u8],
        head: &vars::Head,
        worker: &Bound<'_, PyAny>,
        waits: Option<&Arc<Waits>>,
    ) -> PyResult<Option<(PyErr, bool)>> {
        let head_size = head.header.head_size();
        let length = head.content_length as usize;
        let block = data.get(HEADER_SIZE..head_size).unwrap_or_default();
        let body = data.get(head_size..head_size + length).unwrap_or_default();
        let peer = conn.get().peer();
        let peer_strings = || {
            Ok(match peer {
                Peer::Ip(a) => (
                    PyString::new(py, &a.ip().to_string()).into_any(),
                    PyString::new(py, &a.port().to_string()).into_any(),
                ),
                Peer::Unix => (
                    pyo3::intern!(py, "").clone().into_any(),
                    pyo3::intern!(py, "").clone().into_any(),
                ),
            })
        };
        let settings = self.settings.get();
        let trusted = || Ok(peer.ip().is_none_or(|ip| settings.forwarded.allows(ip)));
        let writer = Response::with_fd(
            py.None(),
            conn.clone().into_any().unbind(),
            conn.get().raw_fd(),
            head.is_head(block),
            settings.sendfile,
        );
        let writer = match waits {
            Some(waits) => writer.cooperative(Arc::clone(waits)),
            None => writer,
        };
        let resp = Bound::new(py, writer)?;
        let exchange = Exchange {
            head,
            block,
            body,
            socket: conn.as_any(),
            peer: &peer_strings,
            trusted: &trusted,
            server,
            peer_addr: peer,
            worker,
        };
        let mut environ = None;
        let result = self.exchange(py, &exchange, &resp, &mut environ);
        let failed = match result {
            Ok(()) => None,
            Err(e) => {
                let exiting = leaving(py, &e, worker);
                if !matches!(exiting, Ok(true)) && !resp.borrow().headers_sent() {
                    let answer = answer_500();
                    let sent = conn.get().with_fd(|fd| net::send_all(fd, &answer));
                    if let (Some(Ok(())), Some(log), Some(environ)) =
                        (sent, &self.access, environ.as_ref())
                    {
                        let log = log.get();
                        // The server's own 500, logged as the Python path logs it.
                        let status = format!("500 {}", response_head::reason(500));
                        let entry = Entry {
                            environ,
                            head,
                            block,
                            status: Some(PyString::new(py, &status).into_any()),
                            headers: None,
                            sent: answer.len() as u64,
                            elapsed: Duration::ZERO,
                        };
                        self.log_line(py, log, &entry);
                    }
                }
                // A request counts towards max_requests once its application was called.
                let counted = environ.is_some();
                match exiting {
                    Ok(false) => Some((e, counted)),
                    Ok(true) => {
                        conn.get().close(py)?;
                        return Err(e);
                    }
                    Err(other) => {
                        conn.get().close(py)?;
                        return Err(other);
                    }
                }
            }
        };
        conn.get().close(py)?;
        Ok(failed)
    }

    /// The gevent worker's first receives on a non-blocking connection: what is there, else
    /// one cooperative wait for the first bytes within the read timeout (F8), then what else
    /// is there at once. `Handoff` when the bytes are not exactly one whole request the Rust
    /// cycle serves: the Python path reads on from them.
    fn receive_green(
        &self,
        py: Python<'_>,
        conn: &Connection,
        waits: &Waits,
        buf: &mut Vec<u8>,
    ) -> PyResult<Received> {
        let limits = &self.settings.get().limits;
        let started = Instant::now();
        loop {
            let got = conn
                .with_fd(|fd| net::recv_ready(fd, buf, RECV_SIZE))
                .unwrap_or(Ok(Some(0)));
            match got {
                Ok(Some(0)) if buf.is_empty() => return Ok(Received::Closed),
                Ok(Some(n)) if n > 0 => match vars::parse_head(buf, limits) {
                    Ok(Progress::Done(head)) if !logs_first(&head) => {
                        let total = head.header.head_size() as u64 + head.content_length;
                        let have = buf.len() as u64;
                        if have == total {
                            return Ok(Received::Complete(head));
                        }
                        if have > total || total > EAGER_BODY {
                            break;
                        }
                    }
                    Ok(Progress::NeedMore(_)) => {}
                    _ => break,
                },
                Ok(None) if buf.is_empty() => {
                    let left = waits.timeout - started.elapsed().as_secs_f64();
                    if left <= 0.0 {
                        break;
                    }
                    match waits.readable(py, conn.raw_fd(), left) {
                        Ok(()) => {}
                        // The time is up: the Python path reports the stall (F8).
                        Err(e) if e.is_instance_of::<pyo3::exceptions::PyOSError>(py) => break,
                        Err(e) => return Err(e),
                    }
                }
                // The rest of the packet is not there yet, the peer closed mid-packet, or the
                // receive failed: the Python path reads on, or meets the same end.
                _ => break,
            }
        }
        Ok(Received::Handoff(started.elapsed().as_secs_f64()))
    }

    /// The request cycle every path shares once a request's head and body are in memory:
    /// the environ, the application with `resp` as its response writer, the iterable's close
    /// (E, R7, X2). The caller answers 500 when it fails before the head is sent.
    fn exchange<'py>(
        &self,
        py: Python<'py>,
        x: &Exchange<'_, 'py>,
        resp: &Bound<'py, Response>,
        environ_out: &mut Option<Bound<'py, PyDict>>,
    ) -> PyResult<()> {
        let settings = self.settings.get();
        let input = Bound::new(py, BytesInput::new(PyBytes::new(py, x.body)))?.into_any();
        let Some(hooks) = &self.hooks else {
            return self.run_app(py, x, resp, &input, environ_out);
        };
        // The request's number on its connection, as gunicorn counts it: one per connection.
        let req = hook_request(py, x.head, x.block, &input, x.peer_addr, settings)?;
        let pre = match &hooks.pre {
            Some(pre) => pre.bind(py).call1((x.worker, &req)).map(drop),
            None => Ok(()),
        };
        // Without pre_request's consent there is no response yet (post_request gets None).
        let started = pre.is_ok();
        let ran = pre.and_then(|()| self.run_app(py, x, resp, &input, environ_out));
        // post_request runs whatever happened; its own failure is logged, as gunicorn does.
        if let Some(post) = &hooks.post {
            let environ = match environ_out.as_ref() {
                Some(e) => e.clone(),
                None => PyDict::new(py),
            };
            let resp = if started {
                resp.clone().into_any()
            } else {
                py.None().into_bound(py)
            };
            if let Err(e) = post.bind(py).call1((x.worker, &req, environ, resp)) {
                if !e.is_instance_of::<pyo3::exceptions::PyException>(py) {
                    return Err(e);
                }
                let kwargs = PyDict::new(py);
                kwargs.set_item("exc_info", e.into_value(py))?;
                x.worker.getattr(pyo3::intern!(py, "log"))?.call_method(
                    pyo3::intern!(py, "exception"),
                    ("Exception in post_request hook",),
                    Some(&kwargs),
                )?;
            }
        }
        ran
    }

    /// The environ, the application, its response, the access line and the iterable's close.
    fn run_app<'py>(
        &self,
        py: Python<'py>,
        x: &Exchange<'_, 'py>,
        resp: &Bound<'py, Response>,
        input: &Bound<'py, PyAny>,
        environ_out: &mut Option<Bound<'py, PyDict>>,
    ) -> PyResult<()> {
        let settings = self.settings.get();
        if let (Some(debug), None) = (
            &self.debug,
            self.hooks.as_ref().and_then(|h| h.pre.as_ref()),
        ) {
            // gunicorn's default pre_request hook.
            let path = x
                .head
                .control_value(x.block, Control::PathInfo)
                .unwrap_or_default();
            debug.bind(py).call1((
                "%s %s",
                env::latin1(py, x.head.method(x.block))?,
                env::latin1(py, path)?,
            ))?;
        }
        let started = Instant::now();
        let ctx = Context {
            base: settings.base.bind(py),
            input,
            socket: x.socket,
            peer: x.peer,
            script_name: &settings.script_name,
            secure_headers: settings.secure_headers.as_ref(),
            trusted: x.trusted,
            is_ssl: false,
            server: Some(x.server),
        };
        let (environ, _) = env::build(py, x.head, x.block, &ctx)?;
        *environ_out = Some(environ.clone());
        let out = self
            .app
            .bind(py)
            .call1((environ, resp.getattr(pyo3::intern!(py, "start_response"))?))?;
        let written = write_result(py, resp, &out, self.file_wrapper.bind(py));
        // The line of a request whose application returned, before the iterable's close, as
        // gunicorn's workers log it.
        if let (Some(log), Some(environ)) = (&self.access, environ_out.as_ref()) {
            let log = log.get();
            let (status, headers, sent) = resp.borrow().logged(py);
            let entry = Entry {
                environ,
                head: x.head,
                block: x.block,
                status,
                headers,
                sent,
                elapsed: started.elapsed(),
            };
            self.log_line(py, log, &entry);
        }
        // The iterable's close() is always called (R7).
        let closed =
            if out.is_exact_instance_of::<PyList>() || out.is_exact_instance_of::<PyBytes>() {
                Ok(())
            } else {
                match out.getattr_opt(pyo3::intern!(py, "close")) {
                    Ok(Some(close)) => close.call0().map(drop),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            };
        written.and(closed)
    }

    /// Adds a line to the access log; a line that cannot be made is reported on the error
    /// log, as gunicorn reports it, and the request goes on.
    fn log_line(&self, py: Python<'_>, log: &AccessLog, entry: &Entry<'_, '_>) {
        if let Err(e) = log.record(py, entry) {
            e.print(py);
        }
    }
}

/// `(address, port)` strings of a Python socket address: the `REMOTE_ADDR`/`REMOTE_PORT`
/// fallback (E4); a unix socket's peer has neither.
type PeerStrings<'a, 'py> = &'a dyn Fn() -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

/// One request in memory and what the environ takes from its connection.
struct Exchange<'a, 'py> {
    head: &'a vars::Head,
    block: &'a [u8],
    body: &'a [u8],
    /// `gunicorn.socket`.
    socket: &'a Bound<'py, PyAny>,
    peer: PeerStrings<'a, 'py>,
    /// Whether the peer may set the secure-scheme headers (`forwarded_allow_ips`).
    trusted: &'a dyn Fn() -> PyResult<bool>,
    /// The listening address (E5).
    server: &'a Bound<'py, PyAny>,
    /// The peer, for the hooks' `req.peer_addr`.
    peer_addr: Peer,
    worker: &'a Bound<'py, PyAny>,
}

/// Whether `err` is the worker's own exit raised in the application: `SystemExit` or
/// `KeyboardInterrupt` from gunicorn's signal handlers (TERM, QUIT, INT, the arbiter's timeout
/// abort), which clear `worker.alive` first. An application that raises them itself while the
/// worker is alive is an application error like any other (X2).
fn leaving(py: Python<'_>, err: &PyErr, worker: &Bound<'_, PyAny>) -> PyResult<bool> {
    let exit = err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
        || err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py);
    Ok(exit && !worker.getattr(pyo3::intern!(py, "alive"))?.is_truthy()?)
}

/// The answer to a request whose application failed before the response head was sent (X2),
/// for every interface.
#[cold]
pub fn answer_500() -> Vec<u8> {
    response_head::error_response(
        500,
        response_head::reason(500),
        "the application raised an exception",
    )
}

/// Whether a valid head still goes to the Python path: the first request without
/// `REQUEST_METHOD`, whose warning the Python path logs (V6).
fn logs_first(head: &vars::Head) -> bool {
    !head.has(Control::RequestMethod) && env::missing_method_unlogged()
}

fn describe(head: &vars::Head, block: &[u8]) -> String {
    let method = head.method(block);
    let uri = head
        .control_value(block, Control::RequestUri)
        .or_else(|| head.control_value(block, Control::PathInfo))
        .unwrap_or_default();
    format!(
        "{} {}",
        String::from_utf8_lossy(method),
        String::from_utf8_lossy(uri)
    )
}

/// Waits up to `millis` for a connection on the non-blocking `listener` and accepts it; `None`
/// when the time is up or a signal arrived first.
fn accept_within(
    listener: BorrowedFd<'_>,
    millis: i64,
) -> std::io::Result<Option<(OwnedFd, Peer)>> {
    let started = Instant::now();
    loop {
        let left = millis - started.elapsed().as_millis() as i64;
        if left <= 0 || !net::wait_readable(listener, left) {
            return Ok(None);
        }
        if let Accepted::Conn(fd, peer) = net::accept(listener)? {
            return Ok(Some((fd, peer)));
        }
    }
}

#[pymethods]
impl FastServer {
    #[new]
    #[pyo3(signature = (app, settings, socket_class, file_wrapper, debug=None))]
    fn new(
        app: Py<PyAny>,
        settings: Py<Settings>,
        socket_class: Py<PyAny>,
        file_wrapper: Py<PyAny>,
        debug: Option<Py<PyAny>>,
    ) -> Self {
        Self {
            app,
            settings,
            socket_class,
            file_wrapper,
            debug,
            buf: Vec::with_capacity(RECV_SIZE),
            accept_wait_ms: ACCEPT_WAIT_MS,
            served: 0,
            waited: 0.0,
            handoff: None,
            error: None,
            peer: None,
            waits: None,
            access: None,
            hooks: None,
        }
    }

    /// Serves up to `limit` connections pending on the non-blocking `listener` (address
    /// `family`, `server` its `getsockname()`), while `worker.alive`. Python signal handlers run
    /// between connections. `served` tells how many requests were served; the return value is
    /// an `outcome` code saying why the batch ended.
    fn serve(
        &mut self,
        py: Python<'_>,
        listener: RawFd,
        family: i32,
        server: &Bound<'_, PyAny>,
        worker: &Bound<'_, PyAny>,
        limit: usize,
    ) -> PyResult<u8> {
        // SAFETY: `listener` is the descriptor of one of the worker's listening sockets, which
        // the worker holds, open, until this call returns; `server` lives as long.
        #[allow(unsafe_code)]
        let fd = unsafe { net::borrow(listener) };
        let listener = Listener { fd, family, server };
        self.served = 0;
        let code = self.batch(py, &listener, worker, limit);
        // The batch's access lines go out before the worker does anything else.
        if let Some(log) = &self.access {
            log.get().write_pending_reporting(py);
        }
        code
    }

    /// Writes gunicorn's access log (G4): each request's line goes to `log`, the worker's one
    /// `AccessLog`, shared by its threads.
    fn log_access(&mut self, log: Py<AccessLog>) {
        self.access = Some(log);
    }

    /// Calls the worker's own request hooks around each request, as gunicorn's workers do:
    /// `pre_request(worker, req)` before the environ is built and `post_request(worker, req,
    /// environ, resp)` after the response, whatever happened (G3). None leaves gunicorn's
    /// default (the debug line of `pre_request`, nothing for `post_request`).
    #[pyo3(signature = (pre_request=None, post_request=None))]
    fn call_hooks(&mut self, pre_request: Option<Py<PyAny>>, post_request: Option<Py<PyAny>>) {
        self.hooks = (pre_request.is_some() || post_request.is_some()).then_some(Hooks {
            pre: pre_request,
            post: post_request,
        });
    }

    /// Writes the buffered access lines.
    fn flush_access(&self, py: Python<'_>) -> PyResult<()> {
        match &self.access {
            Some(log) => log.get().write_pending(py),
            None => Ok(()),
        }
    }

    /// Makes this the cycle of a worker whose connections wait cooperatively (the gevent
    /// worker): `wait_read(fd, timeout)` and `wait_write(fd, timeout)` wait for a non-blocking
    /// descriptor and yield to the other greenlets meanwhile; `timeout` is the read timeout.
    fn cooperate(&mut self, wait_read: Py<PyAny>, wait_write: Py<PyAny>, timeout: f64) {
        self.waits = Some(Arc::new(Waits::new(wait_read, wait_write, timeout)));
    }

    /// Accepts one connection pending on the non-blocking `listener` (address `family`) as a
    /// non-blocking `Connection`, with its peer address; `None` when none is pending.
    fn accept_green<'py>(
        &self,
        py: Python<'py>,
        listener: RawFd,
        family: i32,
    ) -> PyResult<Option<(Bound<'py, Connection>, Bound<'py, PyAny>)>> {
        // SAFETY: `listener` is the descriptor of one of the worker's listening sockets, which
        // its server holds, open, for the whole call.
        #[allow(unsafe_code)]
        let Some(lfd) = (unsafe { net::borrow(listener) }) else {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "invalid listener descriptor",
            ));
        };
        match net::accept_nonblocking(lfd).map_err(|e| crate::exceptions::os_error(&e))? {
            Accepted::Conn(fd, peer) => {
                let conn = Connection::new(fd, peer, family, self.socket_class.clone_ref(py));
                Ok(Some((Bound::new(py, conn)?, peer_tuple(py, peer)?)))
            }
            Accepted::Idle => Ok(None),
        }
    }

    /// One connection of the gevent worker, in the greenlet that owns it: the allow check,
    /// the receive (waiting cooperatively), then the same cycle as `serve`'s when the bytes
    /// are exactly a valid head and its whole body, the response written to the non-blocking
    /// descriptor with cooperative waits; `server` is the listening address. The connection is
    /// closed unless it is handed over.
    ///
    /// Returns `(SERVE_FULL, None)` when served, `(SERVE_CLOSED, None)` when the peer sent
    /// nothing, `(SERVE_FAILED, (exception, "METHOD URI", counts))` when the application or the
    /// connection failed (a 500 sent when nothing else was), and `(SERVE_HANDOFF, (fd, bytes
    /// read, seconds waited))` when the connection needs the Python path: a refused peer, a
    /// protocol error, a partial packet, bytes after the body, the first request without
    /// `REQUEST_METHOD`. The worker's own exit raised in the application is raised again.
    fn serve_green<'py>(
        &self,
        py: Python<'py>,
        conn: &Bound<'py, Connection>,
        server: &Bound<'py, PyAny>,
        worker: &Bound<'py, PyAny>,
    ) -> PyResult<(u8, Option<Bound<'py, PyAny>>)> {
        let Some(waits) = self.waits.as_ref() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "serve_green() needs cooperate() first",
            ));
        };
        let c = conn.get();
        let allowed = c
            .peer()
            .ip()
            .is_none_or(|ip| self.settings.get().allow.allows(ip));
        let mut buf = Vec::new();
        let received = if allowed {
            self.receive_green(py, c, waits, &mut buf)?
        } else {
            Received::Handoff(0.0)
        };
        match received {
            Received::Closed => {
                c.close(py)?;
                Ok((outcome::CLOSED, None))
            }
            Received::Handoff(waited) => {
                let Some(fd) = c.take_fd() else {
                    return Ok((outcome::CLOSED, None));
                };
                let handed = (fd.into_raw_fd(), PyBytes::new(py, &buf), waited);
                Ok((outcome::HANDOFF, Some(handed.into_pyobject(py)?.into_any())))
            }
            Received::Complete(head) => {
                let served = self.respond(py, server, conn, &buf, &head, worker, Some(waits));
                if let Some(log) = self.access.as_ref().filter(|log| log.get().due()) {
                    log.get().write_pending_reporting(py);
                }
                match served? {
                    None => Ok((outcome::FULL, None)),
                    Some((e, counted)) => {
                        let block = buf
                            .get(HEADER_SIZE..head.header.head_size())
                            .unwrap_or_default();
                        let failure = (e.into_value(py), describe(&head, block), counted);
                        Ok((outcome::FAILED, Some(failure.into_pyobject(py)?.into_any())))
                    }
                }
            }
        }
    }

    /// The connection handed to the Python path: `(fd, peer, bytes already read)`.
    fn take_handoff<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Handoff<'py>>> {
        match self.handoff.take() {
            Some((fd, peer, data)) => Ok(Some((
                fd.into_raw_fd(),
                peer_tuple(py, peer)?,
                PyBytes::new(py, &data),
            ))),
            None => Ok(None),
        }
    }

    /// The failure of the last request: `(exception, peer, "METHOD URI", counts)`, `counts`
    /// saying whether it counts towards `max_requests` (its application was called).
    fn take_error<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Failure<'py>>> {
        match self.error.take() {
            Some((err, peer, what, counted)) => Ok(Some((
                err.into_value(py).into_bound(py).into_any(),
                peer_tuple(py, peer)?,
                what,
                counted,
            ))),
            None => Ok(None),
        }
    }

    /// The peer of the last stalled connection.
    fn take_peer<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.peer.take().map(|p| peer_tuple(py, p)).transpose()
    }
}
