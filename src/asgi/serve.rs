//! The ASGI request cycle on the worker's event loop: accept → allow check → receive → parse
//! → scope → application coroutine → response → close, one [`Cycle`] per connection.
//!
//! The loop only tells a cycle when its descriptor is ready (`add_reader`/`add_writer`); the
//! system calls, the parsing and the response framing are Rust. The application's coroutine is
//! stepped here, as `asyncio.Task` would step it: a `receive()` or `send()` that can complete
//! at once returns an awaitable that is already done ([`Ready`]), so a request whose bytes are
//! all there and whose response fits the socket buffer never touches the loop — no Task, no
//! Future, no callback. Only a real wait (bytes not there yet, a full socket buffer, the
//! application's own `await`s) creates a loop future, and the cycle resumes the coroutine from
//! that future's done callback. While it runs, the cycle is the loop's current task (`asyncio.
//! current_task()`), with the methods `anyio` and `asyncio.timeout` use (`cancel`,
//! `cancelling`, `uncancel`), and the coroutine runs in a context of its own.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::asgi::env::{self as scope, Origin};
use crate::core::errors::ProtocolError;
use crate::core::framing::HEADER_SIZE;
use crate::core::kind::Control;
use crate::core::response_head::{self, ResponseHead};
use crate::core::vars::{self, Head, Progress};
use crate::net::{self, Accepted, Peer};
use crate::wsgi::access::AccessLog;
use crate::wsgi::env;
use crate::wsgi::serve::peer_tuple;
use crate::wsgi::settings::Settings;

mod websocket;

/// Bytes read at most in one receive: the head, or one `http.request` event's body.
const RECV_SIZE: usize = 65536;
/// Connections accepted at most per wake-up of a listener.
const ACCEPT_BATCH: usize = 64;
/// Bytes after the body read and dropped at most when closing (F5).
const DRAIN_LIMIT: usize = 1 << 20;

/// An awaitable that is already done: awaiting it gives its value at once, without a trip
/// through the event loop.
#[pyclass(
    frozen,
    freelist = 64,
    module = "gunicorn_uwsgi._native",
    name = "ASGIReady"
)]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.value {
            Some(v) => Err(PyStopIteration::new_err((v.clone_ref(py),))),
            None => Ok(None),
        }
    }

    fn send(&self, py: Python<'_>, value: Py<PyAny>) -> PyResult<Option<Py<PyAny>>> {
        drop(value);
        self.__next__(py)
    }
}

fn ready<'py>(py: Python<'py>, value: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    Ok(Bound::new(
        py,
        Ready {
            value: value.map(Bound::unbind),
        },
    )?
    .into_any())
}

/// A listener of the worker.
struct Listening {
    fd: RawFd,
    /// Its `getsockname()`: the `server` fallback (E5, S2).
    server: Py<PyAny>,
}

/// What the server changes as connections come and go.
#[derive(Default)]
struct Running {
    /// The cycles in flight, by slot.
    cycles: Vec<Option<Py<Cycle>>>,
    free: Vec<usize>,
    count: usize,
    /// Whether the listeners are watched (accepting).
    watching: bool,
    /// Whether accepting has stopped for good (graceful stop).
    closed: bool,
}

/// The event loop's methods the cycles call, looked up once.
struct Loop {
    object: Py<PyAny>,
    add_reader: Py<PyAny>,
    remove_reader: Py<PyAny>,
    add_writer: Py<PyAny>,
    remove_writer: Py<PyAny>,
    create_future: Py<PyAny>,
    call_soon: Py<PyAny>,
    call_later: Py<PyAny>,
    enter_task: Py<PyAny>,
    leave_task: Py<PyAny>,
    copy_context: Py<PyAny>,
    /// `contextvars.Context.run`.
    context_run: Py<PyAny>,
    cancelled_error: Py<PyAny>,
}

/// One worker's ASGI server: its listeners, its application and the cycles in flight.
///
/// `ASGIServer(app, settings, loop, worker, root_path, state, timeout, grace, limit)`.
#[pyclass(unsendable, module = "gunicorn_uwsgi._native", name = "ASGIServer")]
pub struct AsgiServer {
    app: Py<PyAny>,
    settings: Py<Settings>,
    lp: Loop,
    worker: Py<PyAny>,
    base: Py<PyDict>,
    root_path: String,
    state: Option<Py<PyDict>>,
    /// The read timeout (F8) and the time a response may wait for the peer to read it.
    timeout: f64,
    /// `asgi_disconnect_grace_period`: how long an application may run on after its client
    /// left before it is cancelled.
    grace: f64,
    /// `worker_connections`: connections in flight at most; accepting pauses at the bound.
    limit: usize,
    /// One connection per wake-up when several worker processes share the listeners.
    max_accept: usize,
    listeners: RefCell<Vec<Listening>>,
    running: RefCell<Running>,
    /// The receive buffer the cycles read into, one per worker.
    scratch: RefCell<Vec<u8>>,
    /// The websocket scope's constant keys.
    base_ws: Py<PyDict>,
    /// gunicorn's `websocket_max_message_size` (0: no limit).
    ws_max: usize,
    /// Seconds between keep-alive pings of an idle websocket (0: none).
    ws_ping: f64,
    /// gunicorn's access log and statsd, written by the cycle (`log_access`).
    access: Option<Py<AccessLog>>,
    /// gunicorn's own `log.access`, for logging set-ups the cycle does not write itself.
    python_access: Option<Py<PyAny>>,
    /// The worker's own request hooks (`call_hooks`).
    pre_request: Option<Py<PyAny>>,
    post_request: Option<Py<PyAny>>,
    /// `types.SimpleNamespace` and `datetime.timedelta`, for what the hooks and gunicorn's
    /// `log.access` are given.
    namespace: Py<PyAny>,
    timedelta: Py<PyAny>,
    /// Requests whose application was called.
    requests: std::cell::Cell<u64>,
    /// Requests the worker may still serve (`max_requests`), and how many it was told of.
    budget: std::cell::Cell<u64>,
    reported: std::cell::Cell<u64>,
}

impl AsgiServer {
    /// Whether each request is logged or hooked (its details are kept for that).
    fn logs(&self) -> bool {
        self.access.is_some()
            || self.python_access.is_some()
            || self.pre_request.is_some()
            || self.post_request.is_some()
    }

    fn watch(&self, py: Python<'_>, slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        {
            let mut running = self.running.borrow_mut();
            if running.watching == on || (on && running.closed) {
                return Ok(());
            }
            running.watching = on;
        }
        let accept = slf.getattr(pyo3::intern!(py, "_accept"))?;
        for (i, l) in self.listeners.borrow().iter().enumerate() {
            if on {
                self.lp.add_reader.call1(py, (l.fd, &accept, i))?;
            } else {
                self.lp.remove_reader.call1(py, (l.fd,))?;
            }
        }
        Ok(())
    }

    fn log<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.worker.bind(py).getattr(pyo3::intern!(py, "log"))
    }

    /// A cycle ended: its slot is free again, accepting resumes when it had paused.
    fn release(&self, py: Python<'_>, slf: &Bound<'_, Self>, slot: usize) -> PyResult<()> {
        let resume = {
            let mut running = self.running.borrow_mut();
            if let Some(entry) = running.cycles.get_mut(slot) {
                if entry.take().is_some() {
                    running.free.push(slot);
                    running.count -= 1;
                }
            }
            running.count < self.limit && !running.watching && !running.closed
        };
        if resume {
            self.watch(py, slf, true)?;
        }
        Ok(())
    }
}

#[pymethods]
impl AsgiServer {
    #[new]
    #[pyo3(signature = (app, settings, event_loop, worker, root_path, state, timeout, grace, limit, max_accept))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        settings: Py<Settings>,
        event_loop: &Bound<'_, PyAny>,
        worker: Py<PyAny>,
        root_path: String,
        state: Option<Py<PyDict>>,
        timeout: f64,
        grace: f64,
        limit: usize,
        max_accept: usize,
    ) -> PyResult<Self> {
        let tasks = py.import("asyncio.tasks")?;
        let method = |name: &str| event_loop.getattr(name).map(Bound::unbind);
        let lp = Loop {
            object: event_loop.clone().unbind(),
            add_reader: method("add_reader")?,
            remove_reader: method("remove_reader")?,
            add_writer: method("add_writer")?,
            remove_writer: method("remove_writer")?,
            create_future: method("create_future")?,
            call_soon: method("call_soon")?,
            call_later: method("call_later")?,
            enter_task: tasks.getattr("_enter_task")?.unbind(),
            leave_task: tasks.getattr("_leave_task")?.unbind(),
            copy_context: py.import("contextvars")?.getattr("copy_context")?.unbind(),
            context_run: py
                .import("contextvars")?
                .getattr("Context")?
                .getattr("run")?
                .unbind(),
            cancelled_error: py.import("asyncio")?.getattr("CancelledError")?.unbind(),
        };
        Ok(Self {
            app,
            settings,
            lp,
            worker,
            base: scope::base_scope(py)?.unbind(),
            root_path,
            state,
            timeout,
            grace,
            limit: limit.max(1),
            max_accept: max_accept.clamp(1, ACCEPT_BATCH),
            listeners: RefCell::new(Vec::new()),
            running: RefCell::new(Running::default()),
            scratch: RefCell::new(Vec::with_capacity(RECV_SIZE)),
            base_ws: scope::base_websocket_scope(py)?.unbind(),
            ws_max: 16 << 20,
            ws_ping: 20.0,
            access: None,
            python_access: None,
            pre_request: None,
            post_request: None,
            namespace: py.import("types")?.getattr("SimpleNamespace")?.unbind(),
            timedelta: py.import("datetime")?.getattr("timedelta")?.unbind(),
            requests: std::cell::Cell::new(0),
            budget: std::cell::Cell::new(u64::MAX),
            reported: std::cell::Cell::new(0),
        })
    }

    /// Serves the non-blocking listening socket `fd` (`server` its `getsockname()`); the
    /// loop watches it from `start()` on.
    fn listen(&self, fd: RawFd, server: Py<PyAny>) {
        self.listeners.borrow_mut().push(Listening { fd, server });
    }

    /// Starts accepting on every listener.
    fn start(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.borrow().watch(slf.py(), slf, true)
    }

    /// Stops accepting for good (graceful stop): the cycles in flight go on.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.borrow();
        this.watch(slf.py(), slf, false)?;
        this.running.borrow_mut().closed = true;
        Ok(())
    }

    /// Connections in flight.
    #[getter]
    fn active(&self) -> usize {
        self.running.borrow().count
    }

    /// Cancels every cycle still running (the end of a graceful stop).
    fn cancel_all(&self, py: Python<'_>) -> PyResult<()> {
        let cycles: Vec<Py<Cycle>> = self
            .running
            .borrow()
            .cycles
            .iter()
            .flatten()
            .map(|c| c.clone_ref(py))
            .collect();
        for cycle in cycles {
            Cycle::cancel(cycle.bind(py), None)?;
        }
        Ok(())
    }

    /// The loop's callback for a listener with pending connections: accepts what is
    /// pending, up to the batch and the `worker_connections` bound.
    fn _accept(slf: &Bound<'_, Self>, index: usize) -> PyResult<()> {
        let batch = slf.borrow().max_accept;
        for _ in 0..batch {
            if !Self::accept_one(slf, index)? {
                break;
            }
        }
        Ok(())
    }

    /// Writes gunicorn's access log and statsd metrics (G4): `log` is the worker's
    /// `AccessLog`; `python` gunicorn's own `log.access`, for a logging set-up the cycle does
    /// not write itself (one of them, or neither).
    #[pyo3(signature = (log=None, python=None))]
    fn log_access(&mut self, log: Option<Py<AccessLog>>, python: Option<Py<PyAny>>) {
        self.access = log;
        self.python_access = python;
    }

    /// The worker's own request hooks, called with gunicorn's request object (G3):
    /// `pre_request(worker, req)` before the application, `post_request(worker, req, environ,
    /// resp)` after it, whatever happened.
    #[pyo3(signature = (pre_request=None, post_request=None))]
    fn call_hooks(&mut self, pre_request: Option<Py<PyAny>>, post_request: Option<Py<PyAny>>) {
        self.pre_request = pre_request;
        self.post_request = post_request;
    }

    /// Websocket settings (W3, W5): the largest message (0: no limit) and the seconds between
    /// keep-alive pings of an idle connection (0: none).
    fn websocket(&mut self, max_message_size: usize, ping_interval: f64) {
        self.ws_max = max_message_size;
        self.ws_ping = ping_interval;
    }

    /// Writes the buffered access lines.
    fn flush_access(&self, py: Python<'_>) -> PyResult<()> {
        match &self.access {
            Some(log) => log.get().write_pending(py),
            None => Ok(()),
        }
    }

    /// Requests whose application was called.
    #[getter]
    fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Calls `worker.count_request(n)` only once the requests served reach `budget` (what
    /// is left of `max_requests`): the worker's count need not cost a call per request.
    fn count_up_to(&self, budget: u64) {
        self.budget.set(budget);
    }

    /// Requests served that the worker was not told of yet; they count as told from now.
    fn take_uncounted(&self) -> u64 {
        let counted = self.requests.get();
        let since = counted - self.reported.get();
        self.reported.set(counted);
        since
    }
}

impl AsgiServer {
    /// Accepts and starts one connection; `false` when none was pending or the bound is met.
    fn accept_one(slf: &Bound<'_, Self>, index: usize) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.borrow();
        if this.running.borrow().count >= this.limit {
            this.watch(py, slf, false)?;
            return Ok(false);
        }
        let (fd, server) = match this.listeners.borrow().get(index) {
            Some(l) => (l.fd, l.server.clone_ref(py)),
            None => return Ok(false),
        };
        // SAFETY: as in `_accept`.
        #[allow(unsafe_code)]
        let Some(lfd) = (unsafe { net::borrow(fd) }) else {
            return Ok(false);
        };
        let (conn, peer) = match net::accept_nonblocking(lfd) {
            Ok(Accepted::Conn(conn, peer)) => (conn, peer),
            Ok(Accepted::Idle) => return Ok(false),
            Err(e) => {
                this.log(py)?
                    .call_method1("debug", ("accept failed: %s", e.to_string()))?;
                return Ok(false);
            }
        };
        let slot = {
            let mut running = this.running.borrow_mut();
            running.count += 1;
            match running.free.pop() {
                Some(s) => s,
                None => {
                    running.cycles.push(None);
                    running.cycles.len() - 1
                }
            }
        };
        let cycle = Bound::new(
            py,
            Cycle {
                server: slf.clone().unbind(),
                slot,
                listener: server,
                peer,
                st: RefCell::new(State::new(conn)),
                coro: RefCell::new(None),
                ctx: RefCell::new(None),
            },
        )?;
        if let Some(entry) = this.running.borrow_mut().cycles.get_mut(slot) {
            *entry = Some(cycle.clone().unbind());
        }
        let allowed = peer
            .ip()
            .is_none_or(|ip| this.settings.get().allow.allows(ip));
        drop(this);
        if allowed {
            Cycle::read_head(&cycle)?;
        } else {
            let who = peer.ip().map(|ip| ip.to_string()).unwrap_or_default();
            let exc = crate::exceptions::forbidden(py, who);
            Cycle::refuse(&cycle, exc, 403)?;
        }
        Ok(true)
    }
}

/// Where a connection is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Reading the head.
    Head,
    /// The application runs.
    App,
    /// The connection is closed; the application may still run (background work).
    Closed,
}

/// One connection's state.
struct State {
    fd: Option<OwnedFd>,
    raw: RawFd,
    phase: Phase,
    buf: Vec<u8>,
    head: Option<Head>,
    /// Where the request's unread body bytes start in `buf`.
    body_at: usize,
    /// Body bytes not yet received from the peer.
    body_left: u64,
    /// Whether an `http.request` event was given.
    body_given: bool,
    /// The peer left (or the response is complete): `receive()` says `http.disconnect`.
    disconnected: bool,
    /// The peer left before the response was complete.
    client_gone: bool,
    reading: bool,
    writing: bool,
    /// The future a `receive()` waits on.
    recv_waiter: Option<Py<PyAny>>,
    /// The future a `send()` waits on while the socket buffer is full.
    send_waiter: Option<Py<PyAny>>,
    /// The read timeout's (or the response's) timer.
    timer: Option<Py<PyAny>>,
    /// The grace timer after the client left.
    grace_timer: Option<Py<PyAny>>,
    resp: Resp,
    out: Vec<u8>,
    /// A file being sent (`http.response.pathsend`): its descriptor, offset and end.
    file: Option<(std::fs::File, u64, u64)>,
    /// The task protocol: the future the coroutine waits on, a cancel to deliver, how many
    /// cancels are pending.
    fut_waiter: Option<Py<PyAny>>,
    must_cancel: Option<Option<Py<PyAny>>>,
    cancel_requests: u32,
    done: bool,
    /// When the application was called, for the access log.
    started: Option<std::time::Instant>,
    /// The response headers as the application gave them, kept for the access log.
    resp_headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// gunicorn's request object, for the hooks and gunicorn's own access log.
    req: Option<Py<PyAny>>,
    /// A websocket's own state (W).
    ws: Option<Box<websocket::Ws>>,
}

/// The response's progress.
#[derive(Default)]
struct Resp {
    /// `http.response.start` was received; its head waits in `head` until the first body.
    started: bool,
    head: Option<ResponseHead>,
    /// The head went out.
    head_sent: bool,
    /// The last body part was given.
    complete: bool,
    no_body: bool,
    /// Body bytes still allowed by the application's `Content-Length`.
    length_left: Option<u64>,
    status: u16,
    sent: u64,
}

impl State {
    fn new(fd: OwnedFd) -> Self {
        Self {
            raw: fd.as_raw_fd(),
            fd: Some(fd),
            phase: Phase::Head,
            buf: Vec::new(),
            head: None,
            body_at: 0,
            body_left: 0,
            body_given: false,
            disconnected: false,
            client_gone: false,
            reading: false,
            writing: false,
            recv_waiter: None,
            send_waiter: None,
            timer: None,
            grace_timer: None,
            resp: Resp::default(),
            out: Vec::new(),
            file: None,
            fut_waiter: None,
            must_cancel: None,
            cancel_requests: 0,
            done: false,
            started: None,
            resp_headers: Vec::new(),
            req: None,
            ws: None,
        }
    }

    fn is_head(&self) -> bool {
        let Some(head) = &self.head else {
            return false;
        };
        head.is_head(
            self.buf
                .get(HEADER_SIZE..head.header.head_size())
                .unwrap_or_default(),
        )
    }
}

/// What a write came to.
enum Flushed {
    All,
    Blocked,
    Failed,
}

/// One connection of the ASGI worker, and the task its application's coroutine runs as.
#[pyclass(
    unsendable,
    weakref,
    module = "gunicorn_uwsgi._native",
    name = "ASGICycle"
)]
pub struct Cycle {
    server: Py<AsgiServer>,
    slot: usize,
    listener: Py<PyAny>,
    peer: Peer,
    st: RefCell<State>,
    coro: RefCell<Option<Py<PyAny>>>,
    ctx: RefCell<Option<Py<PyAny>>>,
}

impl Cycle {
    fn lp<'a>(&self, server: &'a AsgiServer) -> &'a Loop {
        &server.lp
    }

    fn peer_object<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        peer_tuple(py, self.peer)
    }

    /// Watches the descriptor for reading (`on`) or stops.
    fn set_reading(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        Self::watch(slf, false, on)
    }

    /// Watches the descriptor for writing (`on`) or stops.
    fn set_writing(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        Self::watch(slf, true, on)
    }

    /// The loop's watch of the descriptor for reading or `write`: on, or off.
    fn watch(slf: &Bound<'_, Self>, write: bool, on: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let (raw, was) = {
            let mut st = this.st.borrow_mut();
            if st.fd.is_none() {
                return Ok(());
            }
            let flag = if write {
                &mut st.writing
            } else {
                &mut st.reading
            };
            let was = std::mem::replace(flag, on);
            (st.raw, was)
        };
        if was == on {
            return Ok(());
        }
        let server = this.server.borrow(py);
        let lp = this.lp(&server);
        match (write, on) {
            (false, true) => {
                let cb = slf.getattr(pyo3::intern!(py, "_readable"))?;
                lp.add_reader.call1(py, (raw, cb))?
            }
            (true, true) => {
                let cb = slf.getattr(pyo3::intern!(py, "_writable"))?;
                lp.add_writer.call1(py, (raw, cb))?
            }
            (false, false) => lp.remove_reader.call1(py, (raw,))?,
            (true, false) => lp.remove_writer.call1(py, (raw,))?,
        };
        Ok(())
    }

    /// Arms the timer that drops a peer which keeps the cycle waiting (F8).
    fn arm_timer(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        if this.st.borrow().timer.is_some() {
            return Ok(());
        }
        let server = this.server.borrow(py);
        let cb = slf.getattr(pyo3::intern!(py, "_timed_out"))?;
        let timer = this
            .lp(&server)
            .call_later
            .call1(py, (server.timeout, cb))?;
        this.st.borrow_mut().timer = Some(timer);
        Ok(())
    }

    fn disarm_timer(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let timer = slf.borrow().st.borrow_mut().timer.take();
        if let Some(timer) = timer {
            timer.call_method0(py, pyo3::intern!(py, "cancel"))?;
        }
        Ok(())
    }

    /// Closes the connection: the loop stops watching it, the timers stop, unread input is
    /// drained (F5) so the close does not turn into a reset that cuts the response.
    fn close_conn(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        Self::set_reading(slf, false)?;
        Self::set_writing(slf, false)?;
        Self::disarm_timer(slf)?;
        let this = slf.borrow();
        let mut st = this.st.borrow_mut();
        st.phase = Phase::Closed;
        st.disconnected = true;
        st.file = None;
        st.out = Vec::new();
        if let Some(fd) = st.fd.take() {
            if st.body_left > 0 {
                net::shutdown_write(fd.as_fd());
                let mut scratch = Vec::new();
                let mut drained = 0usize;
                while drained < DRAIN_LIMIT {
                    scratch.clear();
                    match net::recv_ready(fd.as_fd(), &mut scratch, RECV_SIZE) {
                        Ok(Some(n)) if n > 0 => drained += n,
                        _ => break,
                    }
                }
            }
            drop(fd);
        }
        // Waiters learn the connection is gone.
        let waiters = [st.recv_waiter.take(), st.send_waiter.take()];
        let ws_code = st
            .ws
            .as_mut()
            .filter(|w| !w.denial)
            .map(|w| *w.close_code.get_or_insert(1006));
        drop(st);
        for waiter in waiters.into_iter().flatten() {
            let waiter = waiter.bind(py);
            if !waiter
                .call_method0(pyo3::intern!(py, "done"))?
                .is_truthy()?
            {
                let msg = match ws_code {
                    Some(code) => websocket::disconnect_message(py, code)?,
                    None => disconnect_message(py)?,
                };
                waiter.call_method1(pyo3::intern!(py, "set_result"), (msg,))?;
            }
        }
        Ok(())
    }

    /// Refuses the request: the error's short answer (X1), one warning (through the worker,
    /// which also counts it), close.
    fn refuse(slf: &Bound<'_, Self>, exc: PyErr, status: u16) -> PyResult<()> {
        Self::refuse_with(slf, exc, status, &[])
    }

    /// [`refuse`](Self::refuse) with headers of its own in the answer.
    fn refuse_with(
        slf: &Bound<'_, Self>,
        exc: PyErr,
        status: u16,
        headers: &[(&str, &str)],
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let message = exc.value(py).str()?.to_cow()?.into_owned();
        let answer = response_head::error_response_with(
            status,
            response_head::reason(status),
            &message,
            headers,
        );
        {
            let st = this.st.borrow();
            if let Some(fd) = &st.fd {
                let _ = net::send_ready(fd.as_fd(), &answer);
            }
        }
        let worker = this.server.borrow(py).worker.clone_ref(py);
        let addr = this.peer_object(py)?;
        drop(this);
        worker.call_method1(
            py,
            pyo3::intern!(py, "uwsgi_refused"),
            (addr, exc.into_value(py)),
        )?;
        Self::close_conn(slf)?;
        Self::finish_slot(slf)
    }

    /// The connection's slot goes back to the server.
    fn finish_slot(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        {
            let mut st = this.st.borrow_mut();
            if st.done {
                return Ok(());
            }
            st.done = true;
        }
        let server = this.server.bind(py).clone();
        let slot = this.slot;
        drop(this);
        let s = server.borrow();
        s.release(py, &server, slot)
    }

    /// Reads on until the head is complete, then starts the application; waits through the
    /// loop when the bytes are not there yet.
    fn read_head(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        loop {
            let this = slf.borrow();
            let got = {
                let mut st = this.st.borrow_mut();
                let st = &mut *st;
                let server = this.server.borrow(py);
                let mut scratch = server.scratch.borrow_mut();
                scratch.clear();
                // Into the worker's one receive buffer, then only what came into the
                // connection's own: a connection that waits holds its bytes, not 64 KiB.
                let got = match &st.fd {
                    Some(fd) => net::recv_ready(fd.as_fd(), &mut scratch, RECV_SIZE),
                    None => return Ok(()),
                };
                st.buf.extend_from_slice(&scratch);
                got
            };
            match got {
                Ok(None) => {
                    drop(this);
                    Self::set_reading(slf, true)?;
                    return Self::arm_timer(slf);
                }
                Ok(Some(0)) | Err(_) => {
                    let empty = this.st.borrow().buf.is_empty();
                    let log = this.server.borrow(py).log(py)?;
                    if empty {
                        log.call_method1("debug", ("uwsgi peer closed before sending a request",))?;
                    } else {
                        log.call_method1(
                            "debug",
                            (
                                "uwsgi peer %s went away: %s",
                                peer_label(self_peer(&this)),
                                "the connection closed before the request head was complete",
                            ),
                        )?;
                    }
                    drop(this);
                    Self::close_conn(slf)?;
                    return Self::finish_slot(slf);
                }
                Ok(Some(_)) => {}
            }
            let parsed = {
                let server = this.server.borrow(py);
                let settings = server.settings.get();
                let st = this.st.borrow();
                vars::parse_head(&st.buf, &settings.limits)
            };
            match parsed {
                Ok(Progress::NeedMore(_)) => continue,
                Ok(Progress::Done(head)) => {
                    drop(this);
                    Self::set_reading(slf, false)?;
                    Self::disarm_timer(slf)?;
                    return Self::start_app(slf, head);
                }
                Err(e) => {
                    drop(this);
                    Self::set_reading(slf, false)?;
                    return Self::protocol_error(slf, &e);
                }
            }
        }
    }

    fn protocol_error(slf: &Bound<'_, Self>, e: &ProtocolError) -> PyResult<()> {
        let exc = crate::exceptions::protocol_error(slf.py(), e);
        Self::refuse(slf, exc, e.status())
    }

    /// Builds the scope and starts the application's coroutine.
    fn start_app(slf: &Bound<'_, Self>, head: Head) -> PyResult<()> {
        let py = slf.py();
        let upgrade = {
            let this = slf.borrow();
            let st = this.st.borrow();
            let block = st
                .buf
                .get(HEADER_SIZE..head.header.head_size())
                .unwrap_or_default();
            scope::wants_websocket(&head, block)
        };
        if upgrade {
            let checked = websocket::check(&head, &slf.borrow().st.borrow().buf);
            match checked {
                Ok((key, offer)) => {
                    slf.borrow().st.borrow_mut().ws =
                        Some(Box::new(websocket::Ws::new(key, offer)));
                }
                Err(e) => {
                    // A bad handshake (W1): 400, like any refused packet, naming the version
                    // served when the client's is another (RFC 6455 §4.4).
                    let exc = crate::exceptions::protocol_error(
                        py,
                        &ProtocolError::invalid(e.to_string()),
                    );
                    return Self::refuse_with(slf, exc, e.status(), e.response_headers());
                }
            }
        }
        let this = slf.borrow();
        let server_ref = this.server.borrow(py);
        let settings = server_ref.settings.get();
        let scope = {
            let mut st = this.st.borrow_mut();
            let st = &mut *st;
            let head_size = head.header.head_size();
            let have = st.buf.len().saturating_sub(head_size) as u64;
            let length = head.content_length;
            if have > length {
                // Bytes after the body are never parsed (F5).
                st.buf.truncate(head_size + length as usize);
            }
            st.body_at = head_size;
            st.body_left = length.saturating_sub(have);
            st.phase = Phase::App;
            let block = st.buf.get(HEADER_SIZE..head_size).unwrap_or_default();
            let state = server_ref.state.as_ref().map(|s| s.bind(py).clone());
            let origin = Origin {
                peer: this.peer,
                server: this.listener.bind(py),
                root_path: &server_ref.root_path,
                state: state.as_ref(),
                websocket: upgrade,
            };
            let base = if upgrade {
                server_ref.base_ws.bind(py)
            } else {
                server_ref.base.bind(py)
            };
            let scope = scope::build(py, base, &head, block, settings, &origin);
            let missing = !head.has(Control::RequestMethod);
            st.head = Some(head);
            (scope, missing)
        };
        let (scope, missing) = scope;
        if missing && env::claim_missing_method_warning() {
            let addr = this.peer_object(py)?;
            server_ref.worker.call_method1(
                py,
                pyo3::intern!(py, "warn_missing_method"),
                (addr,),
            )?;
        }
        let scope = match scope {
            Ok(s) => s,
            Err(e) => {
                drop(server_ref);
                drop(this);
                return Self::app_failed(slf, Some(e));
            }
        };
        let hooked = server_ref.python_access.is_some()
            || server_ref.pre_request.is_some()
            || server_ref.post_request.is_some();
        if hooked {
            let st = this.st.borrow();
            let head = st.head.as_ref();
            let block = head
                .and_then(|h| st.buf.get(HEADER_SIZE..h.header.head_size()))
                .unwrap_or_default();
            let input = Bound::new(
                py,
                crate::wsgi::reader::BytesInput::new(PyBytes::new(py, b"")),
            )?
            .into_any();
            let req = match head {
                Some(h) => Some(crate::wsgi::serve::hook_request(
                    py, h, block, &input, this.peer, settings,
                )?),
                None => None,
            };
            drop(st);
            this.st.borrow_mut().req = req.map(Bound::unbind);
        }
        this.st.borrow_mut().started = Some(std::time::Instant::now());
        if let Some(pre) = server_ref.pre_request.as_ref().map(|p| p.clone_ref(py)) {
            let req = this.st.borrow().req.as_ref().map(|r| r.clone_ref(py));
            let worker = server_ref.worker.clone_ref(py);
            drop(server_ref);
            drop(this);
            if let Err(e) = pre.call1(py, (worker, req)) {
                Self::app_failed(slf, Some(e))?;
                Self::log_request(slf, false)?;
                Self::close_conn(slf)?;
                return Self::finish_slot(slf);
            }
            return Self::run_app(slf, scope);
        }
        drop(server_ref);
        drop(this);
        Self::run_app(slf, scope)
    }

    /// Calls the application and takes its coroutine's first step.
    fn run_app(slf: &Bound<'_, Self>, scope: Bound<'_, PyDict>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let server_ref = this.server.borrow(py);
        let receive = slf.getattr(pyo3::intern!(py, "receive"))?;
        let send = slf.getattr(pyo3::intern!(py, "send"))?;
        let app = server_ref.app.clone_ref(py);
        let ctx = server_ref.lp.copy_context.call0(py)?;
        let run = server_ref.lp.context_run.clone_ref(py);
        drop(server_ref);
        let coro = app.call1(py, (scope, receive, send));
        let coro = match coro {
            Ok(c) => c,
            Err(e) => {
                drop(this);
                return Self::app_failed(slf, Some(e));
            }
        };
        *this.coro.borrow_mut() = Some(coro);
        *this.ctx.borrow_mut() = Some(ctx.clone_ref(py));
        drop(this);
        {
            let this = slf.borrow();
            let server = this.server.borrow(py);
            server.requests.set(server.requests.get() + 1);
        }
        // The cycle itself is the step callable (`__call__`).
        run.call1(py, (ctx, slf))?;
        Ok(())
    }

    /// One step of the coroutine (`throw` an exception into it, else resume it), as
    /// `asyncio.Task` steps one, with this cycle as the current task.
    fn step(slf: &Bound<'_, Self>, throw: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let Some(coro) = this.coro.borrow().as_ref().map(|c| c.clone_ref(py)) else {
            return Ok(());
        };
        let server = this.server.borrow(py);
        let lp_obj = server.lp.object.clone_ref(py);
        let enter = server.lp.enter_task.clone_ref(py);
        let leave = server.lp.leave_task.clone_ref(py);
        let cancelled = server.lp.cancelled_error.clone_ref(py);
        drop(server);
        let throw = match throw {
            Some(e) => Some(e),
            None => match this.st.borrow_mut().must_cancel.take() {
                Some(msg) => Some(cancelled.bind(py).call1((msg,))?),
                None => None,
            },
        };
        drop(this);
        enter.call1(py, (&lp_obj, slf))?;
        let result = match &throw {
            Some(e) => coro.call_method1(py, pyo3::intern!(py, "throw"), (e,)),
            None => coro.call_method1(py, pyo3::intern!(py, "send"), (py.None(),)),
        };
        leave.call1(py, (&lp_obj, slf))?;
        match result {
            Ok(yielded) => Self::suspended(slf, yielded.into_bound(py)),
            Err(e) if e.is_instance_of::<PyStopIteration>(py) => Self::app_done(slf, None),
            Err(e) if e.is_instance(py, cancelled.bind(py)) => Self::app_done(slf, None),
            Err(e) => Self::app_done(slf, Some(e)),
        }
    }

    /// The coroutine yielded: a loop future it waits on (woken through `_wakeup`), or a bare
    /// `yield` (resumed at the loop's next turn).
    fn suspended(slf: &Bound<'_, Self>, yielded: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let ctx = this.ctx.borrow().as_ref().map(|c| c.clone_ref(py));
        let kwargs = PyDict::new(py);
        if let Some(ctx) = &ctx {
            kwargs.set_item(pyo3::intern!(py, "context"), ctx)?;
        }
        let server = this.server.borrow(py);
        if yielded.is_none() {
            server.lp.call_soon.bind(py).call((slf,), Some(&kwargs))?;
            return Ok(());
        }
        let blocking = pyo3::intern!(py, "_asyncio_future_blocking");
        let is_future = yielded
            .getattr_opt(blocking)?
            .map(|b| b.is_truthy())
            .transpose()?
            .unwrap_or(false);
        if !is_future {
            // A bad yield: the coroutine gets the error, as asyncio's Task gives it.
            let err = PyRuntimeError::new_err(format!(
                "Task got bad yield: {}",
                yielded.repr()?.to_cow()?
            ));
            let step = slf.getattr(pyo3::intern!(py, "_throw"))?;
            server
                .lp
                .call_soon
                .bind(py)
                .call((step, err.into_value(py)), Some(&kwargs))?;
            return Ok(());
        }
        yielded.setattr(blocking, false)?;
        let wakeup = slf.getattr(pyo3::intern!(py, "_wakeup"))?;
        yielded.call_method(
            pyo3::intern!(py, "add_done_callback"),
            (wakeup,),
            Some(&kwargs),
        )?;
        let cancel = this.st.borrow_mut().must_cancel.take();
        this.st.borrow_mut().fut_waiter = Some(yielded.clone().unbind());
        if let Some(msg) = cancel {
            let cancelled = yielded
                .call_method1(
                    pyo3::intern!(py, "cancel"),
                    (msg.as_ref().map(|m| m.bind(py)),),
                )?
                .is_truthy()?;
            if !cancelled {
                this.st.borrow_mut().must_cancel = Some(msg);
            }
        }
        // A request that waits: the loop now watches for its client leaving, once the body
        // is in (S6, asgi_disconnect_grace_period).
        let watch = {
            let st = this.st.borrow();
            st.phase == Phase::App
                && st.body_left == 0
                && !st.reading
                && st.recv_waiter.is_none()
                && st.ws.is_none()
        };
        drop(server);
        drop(this);
        if watch {
            Self::set_reading(slf, true)?;
        }
        Ok(())
    }

    /// The application's coroutine ended (`err` what it raised): a 500 when nothing was sent
    /// (S4, X2), the log line, the connection closed, the slot freed.
    fn app_done(slf: &Bound<'_, Self>, err: Option<PyErr>) -> PyResult<()> {
        let py = slf.py();
        {
            let this = slf.borrow();
            *this.coro.borrow_mut() = None;
            let timer = this.st.borrow_mut().grace_timer.take();
            if let Some(t) = timer {
                t.call_method0(py, pyo3::intern!(py, "cancel"))?;
            }
        }
        let websocket = {
            let this = slf.borrow();
            let st = this.st.borrow();
            st.ws.as_ref().map(|w| w.accepted)
        };
        let complete = slf.borrow().st.borrow().resp.complete;
        match websocket {
            // An accepted websocket has no HTTP response to complete; one never answered
            // is refused (W2); an exception is logged either way (X2).
            Some(true) => {
                if let Some(e) = err {
                    Self::app_failed(slf, Some(e))?;
                }
                Self::ws_done(slf)?;
            }
            Some(false) if !complete && err.is_none() => Self::ws_done(slf)?,
            _ if !complete || err.is_some() => Self::app_failed(slf, err)?,
            _ => {}
        }
        // A websocket's close handshake ends its connection itself.
        if !slf.borrow().ws_closing() {
            Self::close_conn(slf)?;
        }
        Self::log_request(slf, true)?;
        let worker = {
            let this = slf.borrow();
            let server = this.server.borrow(py);
            server.worker.clone_ref(py)
        };
        // max_requests: the worker hears of the requests when they reach its budget (G2).
        let due = {
            let this = slf.borrow();
            let server = this.server.borrow(py);
            let counted = server.requests.get();
            (counted >= server.budget.get()).then(|| {
                let since = counted - server.reported.get();
                server.reported.set(counted);
                since
            })
        };
        if let Some(n) = due.filter(|&n| n > 0) {
            worker.call_method1(py, pyo3::intern!(py, "count_request"), (n,))?;
        }
        Self::finish_slot(slf)
    }

    /// An application that failed or returned without a whole response: logged (X2), a 500
    /// when nothing went out yet, else the connection just closes.
    fn app_failed(slf: &Bound<'_, Self>, err: Option<PyErr>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let (what, head_sent, complete, closed, client_gone) = {
            let st = this.st.borrow();
            (
                describe(&st),
                st.resp.head_sent,
                st.resp.complete,
                st.fd.is_none(),
                st.client_gone,
            )
        };
        let worker = this.server.borrow(py).worker.clone_ref(py);
        let addr = this.peer_object(py)?;
        drop(this);
        match err {
            Some(e) => {
                worker.call_method1(
                    py,
                    pyo3::intern!(py, "request_failed"),
                    (e.into_value(py), addr, &what),
                )?;
            }
            // The client left first: nothing to answer, nothing to report above debug (X3).
            None if !complete && client_gone => {
                worker
                    .bind(py)
                    .getattr(pyo3::intern!(py, "log"))?
                    .call_method1(
                        "debug",
                        ("ASGI application ended after its client left: %s", &what),
                    )?;
            }
            None if !complete => {
                let message = if head_sent {
                    "ASGI application returned before its response was complete: %s"
                } else {
                    "ASGI application returned without a response: %s"
                };
                worker
                    .bind(py)
                    .getattr(pyo3::intern!(py, "log"))?
                    .call_method1("error", (message, &what))?;
            }
            None => {}
        }
        if !head_sent && !closed {
            let answer = crate::wsgi::serve::answer_500();
            let this = slf.borrow();
            let mut st = this.st.borrow_mut();
            let sent = match &st.fd {
                Some(fd) => net::send_ready(fd.as_fd(), &answer).is_ok(),
                None => false,
            };
            st.resp.head_sent = true;
            st.resp.complete = true;
            if sent {
                // The server's own 500, logged as the application's would be.
                st.resp.started = true;
                st.resp.status = 500;
                st.resp.sent = answer.len() as u64;
                st.resp_headers.clear();
            }
        }
        Ok(())
    }

    /// Writes what is pending (`out`, then the file being sent).
    fn flush(slf: &Bound<'_, Self>) -> Flushed {
        let this = slf.borrow();
        let mut st = this.st.borrow_mut();
        let st = &mut *st;
        let Some(fd) = &st.fd else {
            return Flushed::Failed;
        };
        let fd = fd.as_fd();
        while !st.out.is_empty() {
            match net::send_ready(fd, &st.out) {
                Ok(0) => return Flushed::Blocked,
                Ok(n) => {
                    st.out.drain(..n.min(st.out.len()));
                }
                Err(_) => return Flushed::Failed,
            }
        }
        if let Some((file, offset, end)) = &mut st.file {
            while *offset < *end {
                match net::send_file_ready(fd, file.as_fd(), *offset, *end - *offset) {
                    Ok(0) => return Flushed::Blocked,
                    Ok(n) => *offset += n,
                    Err(_) => return Flushed::Failed,
                }
            }
            st.file = None;
        }
        Flushed::All
    }

    /// After a write: a complete response closes the connection; bytes the socket did not
    /// take wait for it through the loop (back-pressure).
    fn after_flush<'py>(slf: &Bound<'py, Self>, flushed: Flushed) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        match flushed {
            Flushed::All => {
                let complete = slf.borrow().st.borrow().resp.complete;
                if complete {
                    Self::response_complete(slf)?;
                }
                ready(py, None)
            }
            Flushed::Failed => {
                // The peer went away mid-response (X3): the application goes on, unaware.
                let this = slf.borrow();
                let log = this.server.borrow(py).log(py)?;
                log.call_method1(
                    "debug",
                    (
                        "uwsgi peer %s went away while the response was sent",
                        peer_label(self_peer(&this)),
                    ),
                )?;
                drop(this);
                slf.borrow().st.borrow_mut().client_gone = true;
                Self::close_conn(slf)?;
                ready(py, None)
            }
            Flushed::Blocked => {
                let fut = {
                    let this = slf.borrow();
                    let server = this.server.borrow(py);
                    server.lp.create_future.call0(py)?
                };
                slf.borrow().st.borrow_mut().send_waiter = Some(fut.clone_ref(py));
                Self::set_writing(slf, true)?;
                Self::arm_timer(slf)?;
                Ok(fut.into_bound(py))
            }
        }
    }

    /// The whole response went out: the connection closes (F5); the application may run on.
    fn response_complete(slf: &Bound<'_, Self>) -> PyResult<()> {
        let short = {
            let this = slf.borrow();
            let st = this.st.borrow();
            st.resp.length_left.filter(|&n| n > 0 && !st.resp.no_body)
        };
        if let Some(missing) = short {
            let py = slf.py();
            let this = slf.borrow();
            let log = this.server.borrow(py).log(py)?;
            let what = describe(&this.st.borrow());
            log.call_method1(
                "warning",
                (
                    "%s: the response ended %d bytes short of its Content-Length; closing",
                    what,
                    missing,
                ),
            )?;
        }
        Self::close_conn(slf)
    }

    /// `http.response.start` (S4, R1): checked and kept until the first body part.
    fn start_response(slf: &Bound<'_, Self>, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = slf.py();
        let status: u16 = match message.get_item(pyo3::intern!(py, "status"))? {
            Some(s) => s.extract().map_err(|_| {
                crate::exceptions::response_error(
                    py,
                    &crate::core::errors::ResponseError::Status(
                        s.repr().map(|r| r.to_string()).unwrap_or_default(),
                    ),
                )
            })?,
            None => {
                return Err(PyValueError::new_err(
                    "http.response.start without a status",
                ))
            }
        };
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if let Some(headers) = message.get_item(pyo3::intern!(py, "headers"))? {
            for item in headers.try_iter()? {
                let item = item?;
                let name = item.get_item(0)?;
                let value = item.get_item(1)?;
                let as_bytes = |o: &Bound<'_, PyAny>| -> PyResult<Vec<u8>> {
                    match o.cast::<PyBytes>() {
                        Ok(b) => Ok(b.as_bytes().to_vec()),
                        Err(_) => o.extract::<Vec<u8>>().map_err(|_| {
                            PyValueError::new_err("ASGI response header names and values are bytes")
                        }),
                    }
                };
                pairs.push((as_bytes(&name)?, as_bytes(&value)?));
            }
        }
        let this = slf.borrow();
        let mut st = this.st.borrow_mut();
        if st.resp.started {
            return Err(PyRuntimeError::new_err("http.response.start sent twice"));
        }
        let is_head = st.is_head();
        let head = response_head::build_head_bytes(
            status,
            pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
            is_head,
        )
        .map_err(|e| crate::exceptions::response_error(py, &e))?;
        if this.server.borrow(py).logs() {
            st.resp_headers = pairs;
        }
        st.resp.started = true;
        st.resp.status = head.status;
        st.resp.no_body = head.no_body;
        st.resp.length_left = head.content_length;
        st.resp.head = Some(head);
        Ok(())
    }

    /// Moves the kept head and `body` (within the declared length) to `out`.
    fn queue_body(st: &mut State, body: &[u8]) {
        if let Some(head) = st.resp.head.take() {
            st.out.extend_from_slice(&head.bytes);
            st.resp.head_sent = true;
        }
        if st.resp.no_body {
            return;
        }
        let allowed = match st.resp.length_left {
            Some(left) => {
                let n = (body.len() as u64).min(left);
                st.resp.length_left = Some(left - n);
                n as usize
            }
            None => body.len(),
        };
        st.out
            .extend_from_slice(body.get(..allowed).unwrap_or_default());
        st.resp.sent += allowed as u64;
    }

    /// Takes a body chunk for an `http.request` event: what is buffered, else what the socket
    /// has ready; `None` when the cycle must wait; `Some(None)` when the peer left.
    fn take_body(st: &mut State) -> Option<Option<(Vec<u8>, bool)>> {
        if st.body_at < st.buf.len() {
            let chunk = st.buf.split_off(st.body_at);
            st.buf.shrink_to_fit();
            st.body_given = true;
            return Some(Some((chunk, st.body_left > 0)));
        }
        if !st.body_given && st.body_left == 0 {
            st.body_given = true;
            return Some(Some((Vec::new(), false)));
        }
        if st.body_left == 0 {
            return None;
        }
        let fd = st.fd.as_ref()?;
        let mut chunk = Vec::new();
        let want = usize::try_from(st.body_left)
            .unwrap_or(RECV_SIZE)
            .min(RECV_SIZE);
        match net::recv_ready(fd.as_fd(), &mut chunk, want) {
            Ok(None) => None,
            Ok(Some(0)) | Err(_) => Some(None),
            Ok(Some(n)) => {
                st.body_left -= n as u64;
                st.body_given = true;
                Some(Some((chunk, st.body_left > 0)))
            }
        }
    }
}

fn self_peer(cycle: &Cycle) -> Peer {
    cycle.peer
}

fn peer_label(peer: Peer) -> String {
    match peer {
        Peer::Ip(a) if a.is_ipv6() => format!("[{}]:{}", a.ip(), a.port()),
        Peer::Ip(a) => a.to_string(),
        Peer::Unix => "unix socket".to_owned(),
    }
}

/// `METHOD URI` of a request, for its log lines.
fn describe(st: &State) -> String {
    match &st.head {
        Some(head) => {
            let block = st
                .buf
                .get(HEADER_SIZE..head.header.head_size())
                .unwrap_or_default();
            format!(
                "{} {}",
                String::from_utf8_lossy(head.method(block)),
                String::from_utf8_lossy(&head.request_uri(block))
            )
        }
        None => "(no request read)".to_owned(),
    }
}

/// What gunicorn's access log reads of a request (`%(h)s`, `%(r)s`, `{var}e`, …): each var
/// as a latin-1 string, `RAW_URI`, and the socket peer when nginx sent no `REMOTE_ADDR`.
fn log_environ<'py>(
    py: Python<'py>,
    head: &Head,
    block: &[u8],
    peer: Peer,
) -> PyResult<Bound<'py, PyDict>> {
    let environ = PyDict::new(py);
    for var in head.vars.iter().filter(|v| !v.shadowed) {
        let key = crate::core::framing::slice(block, var.raw.key);
        environ.set_item(
            env::key_string(py, key)?,
            env::var_value(py, block, &head.vars, var)?,
        )?;
    }
    let set_default = |key: &str, value: Bound<'py, PyAny>| -> PyResult<()> {
        if !environ.contains(key)? {
            environ.set_item(key, value)?;
        }
        Ok(())
    };
    set_default(
        "REQUEST_METHOD",
        crate::pystr::latin1(py, head.method(block))?.into_any(),
    )?;
    environ.set_item(
        "RAW_URI",
        crate::pystr::latin1(py, &head.request_uri(block))?,
    )?;
    set_default("SERVER_PROTOCOL", PyString::new(py, "HTTP/1.1").into_any())?;
    set_default("PATH_INFO", PyString::new(py, "").into_any())?;
    set_default("QUERY_STRING", PyString::new(py, "").into_any())?;
    let remote = match peer {
        Peer::Ip(a) => a.ip().to_string(),
        Peer::Unix => String::new(),
    };
    set_default("REMOTE_ADDR", PyString::new(py, &remote).into_any())?;
    Ok(environ)
}

fn disconnect_message(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let msg = PyDict::new(py);
    msg.set_item(
        pyo3::intern!(py, "type"),
        pyo3::intern!(py, "http.disconnect"),
    )?;
    Ok(msg)
}

fn request_message<'py>(py: Python<'py>, body: &[u8], more: bool) -> PyResult<Bound<'py, PyDict>> {
    let msg = PyDict::new(py);
    msg.set_item(pyo3::intern!(py, "type"), pyo3::intern!(py, "http.request"))?;
    msg.set_item(pyo3::intern!(py, "body"), PyBytes::new(py, body))?;
    msg.set_item(pyo3::intern!(py, "more_body"), more)?;
    Ok(msg)
}

#[pymethods]
impl Cycle {
    /// The application's `receive()` (S3): the body as it arrives, then `http.disconnect`
    /// once the client leaves or the response is complete.
    fn receive<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let websocket = {
            let this = slf.borrow();
            let st = this.st.borrow();
            st.ws.as_ref().is_some_and(|w| !w.denial)
        };
        if websocket {
            return Self::ws_receive(slf);
        }
        let this = slf.borrow();
        let taken = {
            let mut st = this.st.borrow_mut();
            if st.disconnected || st.resp.complete {
                drop(st);
                return ready(py, Some(disconnect_message(py)?.into_any()));
            }
            if let Some(w) = &st.recv_waiter {
                return Ok(w.bind(py).clone());
            }
            Self::take_body(&mut st)
        };
        match taken {
            Some(Some((chunk, more))) => {
                ready(py, Some(request_message(py, &chunk, more)?.into_any()))
            }
            Some(None) => {
                let mut st = this.st.borrow_mut();
                st.disconnected = true;
                st.client_gone = !st.resp.complete;
                drop(st);
                ready(py, Some(disconnect_message(py)?.into_any()))
            }
            None => {
                let body_wait = this.st.borrow().body_left > 0;
                let fut = this.server.borrow(py).lp.create_future.call0(py)?;
                this.st.borrow_mut().recv_waiter = Some(fut.clone_ref(py));
                drop(this);
                Self::set_reading(slf, true)?;
                if body_wait {
                    Self::arm_timer(slf)?;
                }
                Ok(fut.into_bound(py))
            }
        }
    }

    /// The application's `send(message)` (S4).
    fn send<'py>(
        slf: &Bound<'py, Self>,
        message: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let kind = match message.get_item(pyo3::intern!(py, "type"))? {
            Some(t) => t.cast_into::<PyString>()?,
            None => return Err(PyValueError::new_err("ASGI message without a type")),
        };
        let kind = kind.to_cow()?;
        let kind = match kind.as_ref() {
            "websocket.accept" | "websocket.send" | "websocket.close" => {
                return Self::ws_send(slf, &kind, message)
            }
            // The denial response (W2): an HTTP response instead of the accept.
            "websocket.http.response.start" => {
                let this = slf.borrow();
                let mut st = this.st.borrow_mut();
                match st.ws.as_mut() {
                    Some(w) if !w.accepted => w.denial = true,
                    _ => {
                        return Err(PyRuntimeError::new_err(
                            "websocket.http.response.start without a handshake to deny",
                        ))
                    }
                }
                std::borrow::Cow::Borrowed("http.response.start")
            }
            "websocket.http.response.body" => std::borrow::Cow::Borrowed("http.response.body"),
            _ => kind,
        };
        match kind.as_ref() {
            "http.response.start" => {
                Self::start_response(slf, message)?;
                ready(py, None)
            }
            "http.response.body" => {
                let body = match message.get_item(pyo3::intern!(py, "body"))? {
                    Some(b) => b,
                    None => PyBytes::new(py, b"").into_any(),
                };
                let more = match message.get_item(pyo3::intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                {
                    let this = slf.borrow();
                    let mut st = this.st.borrow_mut();
                    if !st.resp.started {
                        return Err(PyRuntimeError::new_err(
                            "http.response.body sent before http.response.start",
                        ));
                    }
                    if st.resp.complete {
                        return Err(PyRuntimeError::new_err(
                            "http.response.body sent after the response was complete",
                        ));
                    }
                    if st.fd.is_none() {
                        // The client left (X3): what the application sends goes nowhere.
                        st.resp.complete = !more;
                        drop(st);
                        return ready(py, None);
                    }
                    let bytes = body.cast::<PyBytes>().map_err(|_| {
                        PyValueError::new_err("http.response.body's body must be bytes")
                    })?;
                    Self::queue_body(&mut st, bytes.as_bytes());
                    st.resp.complete = !more;
                }
                let flushed = Self::flush(slf);
                Self::after_flush(slf, flushed)
            }
            "http.response.pathsend" => {
                let path: std::path::PathBuf = match message.get_item(pyo3::intern!(py, "path"))? {
                    Some(p) => p.extract()?,
                    None => {
                        return Err(PyValueError::new_err(
                            "http.response.pathsend without a path",
                        ))
                    }
                };
                let file = std::fs::File::open(&path)?;
                let size = file.metadata()?.len();
                {
                    let this = slf.borrow();
                    let mut st = this.st.borrow_mut();
                    if !st.resp.started {
                        return Err(PyRuntimeError::new_err(
                            "http.response.pathsend sent before http.response.start",
                        ));
                    }
                    if st.resp.complete {
                        return Err(PyRuntimeError::new_err(
                            "http.response.pathsend sent after the response was complete",
                        ));
                    }
                    Self::queue_body(&mut st, b"");
                    st.resp.complete = true;
                    if !st.resp.no_body {
                        let end = match st.resp.length_left {
                            Some(left) => size.min(left),
                            None => size,
                        };
                        if let Some(left) = st.resp.length_left.as_mut() {
                            *left -= end;
                        }
                        st.resp.sent += end;
                        st.file = Some((file, 0, end));
                    }
                    if st.fd.is_none() {
                        st.file = None;
                        drop(st);
                        return ready(py, None);
                    }
                }
                let flushed = Self::flush(slf);
                Self::after_flush(slf, flushed)
            }
            other => Err(PyValueError::new_err(format!(
                "unexpected ASGI message type {other:?} for an HTTP request"
            ))),
        }
    }

    /// The loop's callback: the descriptor has bytes (or EOF).
    fn _readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.borrow().ws_reads() {
            return Self::ws_readable(slf);
        }
        let phase = slf.borrow().st.borrow().phase;
        match phase {
            Phase::Head => Self::read_head(slf),
            Phase::Closed => Self::set_reading(slf, false),
            Phase::App => {
                let this = slf.borrow();
                let (waiter, taken) = {
                    let mut st = this.st.borrow_mut();
                    let taken: Option<Option<(Vec<u8>, bool)>> = if st.body_left > 0 {
                        Self::take_body(&mut st)
                    } else {
                        // The body is in: anything readable is the end of the connection, or
                        // bytes after the body, which are dropped (F5).
                        let mut scratch = Vec::new();
                        let gone = match &st.fd {
                            Some(fd) => matches!(
                                net::recv_ready(fd.as_fd(), &mut scratch, RECV_SIZE),
                                Ok(Some(0)) | Err(_)
                            ),
                            None => true,
                        };
                        gone.then_some(None)
                    };
                    (st.recv_waiter.as_ref().map(|w| w.clone_ref(py)), taken)
                };
                drop(this);
                match taken {
                    None => Ok(()),
                    Some(Some((chunk, more))) => {
                        slf.borrow().st.borrow_mut().recv_waiter = None;
                        Self::set_reading(slf, false)?;
                        Self::disarm_timer(slf)?;
                        if let Some(w) = waiter {
                            w.call_method1(
                                py,
                                pyo3::intern!(py, "set_result"),
                                (request_message(py, &chunk, more)?,),
                            )?;
                        }
                        Ok(())
                    }
                    Some(None) => Self::client_left(slf),
                }
            }
        }
    }

    /// The loop's callback: the descriptor takes bytes again.
    fn _writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        match Self::flush(slf) {
            Flushed::Blocked => Ok(()),
            flushed => {
                Self::set_writing(slf, false)?;
                Self::disarm_timer(slf)?;
                let waiter = slf.borrow().st.borrow_mut().send_waiter.take();
                let _ = Self::after_flush(slf, flushed)?;
                if let Some(w) = waiter {
                    let w = w.bind(py);
                    if !w.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
                        w.call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The read timeout (F8), or a response the peer stopped reading: the peer is dropped.
    fn _timed_out(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (phase, writing) = {
            let this = slf.borrow();
            let mut st = this.st.borrow_mut();
            st.timer = None;
            (st.phase, st.writing)
        };
        let this = slf.borrow();
        let server = this.server.borrow(py);
        let worker = server.worker.clone_ref(py);
        let timeout = server.timeout;
        drop(server);
        let addr = this.peer_object(py)?;
        drop(this);
        slf.borrow().st.borrow_mut().client_gone = true;
        if writing {
            let log = worker.bind(py).getattr(pyo3::intern!(py, "log"))?;
            log.call_method1(
                "warning",
                (
                    "uwsgi peer %s stopped reading the response: dropped",
                    peer_label(slf.borrow().peer),
                ),
            )?;
        } else {
            let what = if phase == Phase::Head {
                "request bytes"
            } else {
                "request body bytes"
            };
            let exc = crate::exceptions::peer_timeout(py, timeout, what)?;
            worker.call_method1(py, pyo3::intern!(py, "connection_error"), (addr, exc))?;
        }
        Self::close_conn(slf)?;
        if phase == Phase::Head {
            Self::finish_slot(slf)?;
        }
        Ok(())
    }

    /// The websocket keep-alive timer (W5).
    fn _ws_ping(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::ws_ping(slf)
    }

    /// The peer did not answer the server's close frame in time.
    fn _ws_close_wait(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::ws_end(slf, 1006)
    }

    /// The grace period after the client left is over: the application is cancelled.
    fn _grace_over(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.borrow().st.borrow_mut().grace_timer = None;
        Self::cancel(slf, None).map(drop)
    }

    /// One step of the coroutine: the callable the loop (and `Context.run`) calls.
    fn __call__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::step(slf, None)
    }

    fn _throw(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        Self::step(slf, Some(exc))
    }

    /// The done callback of the future the coroutine waited on.
    fn _wakeup(slf: &Bound<'_, Self>, fut: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        slf.borrow().st.borrow_mut().fut_waiter = None;
        match fut.call_method0(pyo3::intern!(py, "result")) {
            Ok(_) => Self::step(slf, None),
            Err(e) => Self::step(slf, Some(e.into_value(py).into_bound(py).into_any())),
        }
    }

    // -- what asyncio and anyio ask of the current task -----------------------------------

    /// Requests the coroutine's cancellation, as `Task.cancel` does.
    #[pyo3(signature = (msg=None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.borrow();
        if this.coro.borrow().is_none() {
            return Ok(false);
        }
        let waiter = {
            let mut st = this.st.borrow_mut();
            st.cancel_requests += 1;
            st.fut_waiter.as_ref().map(|f| f.clone_ref(py))
        };
        if let Some(w) = waiter {
            let args = (msg.as_ref().map(|m| m.bind(py)),);
            if w.call_method1(py, pyo3::intern!(py, "cancel"), args)?
                .is_truthy(py)?
            {
                return Ok(true);
            }
        }
        this.st.borrow_mut().must_cancel = Some(msg);
        Ok(true)
    }

    fn cancelling(&self) -> u32 {
        self.st.borrow().cancel_requests
    }

    fn uncancel(&self) -> u32 {
        let mut st = self.st.borrow_mut();
        st.cancel_requests = st.cancel_requests.saturating_sub(1);
        st.cancel_requests
    }

    fn done(&self) -> bool {
        self.coro.borrow().is_none()
    }

    fn cancelled(&self) -> bool {
        false
    }

    fn get_coro(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.coro.borrow().as_ref().map(|c| c.clone_ref(py))
    }

    fn get_name(&self) -> String {
        format!("uwsgi-request-{}", self.slot)
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.server.borrow(py).lp.object.clone_ref(py)
    }

    fn get_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.ctx.borrow().as_ref().map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _must_cancel(&self) -> bool {
        self.st.borrow().must_cancel.is_some()
    }

    #[getter]
    fn _fut_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st
            .borrow()
            .fut_waiter
            .as_ref()
            .map(|f| f.clone_ref(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "<gunicorn_uwsgi ASGI request {}>",
            describe(&self.st.borrow())
        )
    }
}

impl Cycle {
    /// The request's access line and statsd metrics (G4) and the `post_request` hook (G3),
    /// once its application ended (`ran`) or `pre_request` refused it.
    fn log_request(slf: &Bound<'_, Self>, ran: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let server = this.server.borrow(py);
        let logged = server.access.is_some() || server.python_access.is_some();
        if !logged && server.post_request.is_none() {
            return Ok(());
        }
        let st = this.st.borrow();
        let Some(head) = st.head.as_ref() else {
            return Ok(());
        };
        let block = st
            .buf
            .get(HEADER_SIZE..head.header.head_size())
            .unwrap_or_default();
        let environ = log_environ(py, head, block, this.peer)?;
        let status = st.resp.started.then(|| {
            let code = st.resp.status;
            PyString::new(py, &format!("{code} {}", response_head::phrase(code))).into_any()
        });
        let headers = pyo3::types::PyList::empty(py);
        for (name, value) in &st.resp_headers {
            headers.append((
                crate::pystr::latin1(py, name)?,
                crate::pystr::latin1(py, value)?,
            ))?;
        }
        let elapsed = st.started.map(|t| t.elapsed()).unwrap_or_default();
        let sent = st.resp.sent;
        let req = st.req.as_ref().map(|r| r.clone_ref(py));
        if let Some(log) = &server.access {
            let entry = crate::wsgi::access::Entry {
                environ: &environ,
                head,
                block,
                status: status.clone(),
                headers: Some(headers.clone().into_any()),
                sent,
                elapsed,
            };
            if let Err(e) = log.get().record(py, &entry) {
                e.print(py);
            }
            if log.get().due() {
                log.get().write_pending_reporting(py);
            }
        }
        let resp = || -> PyResult<Bound<'_, PyAny>> {
            let kwargs = PyDict::new(py);
            kwargs.set_item("status", status.clone())?;
            kwargs.set_item("headers", headers.clone())?;
            kwargs.set_item("sent", sent)?;
            kwargs.set_item("status_code", st.resp.started.then_some(st.resp.status))?;
            server.namespace.bind(py).call((), Some(&kwargs))
        };
        if let Some(access) = &server.python_access {
            let delta = server
                .timedelta
                .bind(py)
                .call1((0, elapsed.as_secs_f64()))?;
            if let Err(e) = access.call1(py, (resp()?, &req, &environ, delta)) {
                e.print(py);
            }
        }
        if let Some(post) = &server.post_request {
            let resp = if ran {
                resp()?
            } else {
                py.None().into_bound(py)
            };
            if let Err(e) = post.call1(py, (&server.worker, &req, &environ, resp)) {
                let kwargs = PyDict::new(py);
                kwargs.set_item("exc_info", e.into_value(py))?;
                server.log(py)?.call_method(
                    "exception",
                    ("Exception in post_request hook",),
                    Some(&kwargs),
                )?;
            }
        }
        Ok(())
    }

    /// The client left while the application runs: `receive()` says so, and the application
    /// is cancelled after the grace period unless it ends first.
    fn client_left(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let waiter = slf.borrow().st.borrow_mut().recv_waiter.take();
        let complete = slf.borrow().st.borrow().resp.complete;
        slf.borrow().st.borrow_mut().client_gone = !complete;
        Self::close_conn(slf)?;
        if let Some(w) = waiter {
            let w = w.bind(py);
            if !w.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
                w.call_method1(pyo3::intern!(py, "set_result"), (disconnect_message(py)?,))?;
            }
        }
        let running = slf.borrow().coro.borrow().is_some();
        if running && !complete {
            let this = slf.borrow();
            let server = this.server.borrow(py);
            let cb = slf.getattr(pyo3::intern!(py, "_grace_over"))?;
            let timer = server.lp.call_later.call1(py, (server.grace, cb))?;
            drop(server);
            this.st.borrow_mut().grace_timer = Some(timer);
        }
        Ok(())
    }
}
