//! gunicorn's access log and statsd request metrics written by the Rust cycle (G4): the same
//! line gunicorn's `Logger` writes for the same request (`access_log_format` with the atoms of `core::access`, read
//! from the environ as the application left it, the request headers, the response), to the
//! same destination: the descriptor of the logging handler's stream, looked up at each flush,
//! so a `USR1` reopen (gunicorn's `reopen_files`) takes effect at the next one.
//!
//! Lines are buffered per worker (per thread in the ThreadWorker) and written whole, under the
//! handler's lock, at the end of each batch of connections, when [`FLUSH_SIZE`] bytes or
//! [`FLUSH_AFTER`] of waiting have piled up, and when the worker stops: a line is never split
//! or interleaved with another, and never waits longer than a fraction of a second.
//!
//! With gunicorn's `Statsd` logger, each request's metrics (the names, types, prefix and tags
//! its `access` sends, learned from one sample request) are batched, one per line, into
//! datagrams sent at the same times.

use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::core::access::{self, Atom, Piece};
use crate::core::vars;
use crate::net;

/// Buffered lines are written once they reach this size.
const FLUSH_SIZE: usize = 32 * 1024;
/// A buffered line waits at most about this long.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// Writes to a pipe up to this size are atomic (`PIPE_BUF`): lines are written in runs of
/// whole lines no larger, so several processes logging to one pipe never mix their lines.
const ATOMIC_WRITE: usize = 4096;

/// gunicorn's `t` format, `time.strftime`'s.
const TIME_FORMAT: &str = "[%d/%b/%Y:%H:%M:%S %z]";

/// One request's part of a line.
pub struct Entry<'a, 'py> {
    pub environ: &'a Bound<'py, PyDict>,
    pub head: &'a vars::Head,
    pub block: &'a [u8],
    /// The status as the application gave it (`resp.status`).
    pub status: Option<Bound<'py, PyAny>>,
    /// The response headers as the application gave them.
    pub headers: Option<Bound<'py, PyAny>>,
    pub sent: u64,
    pub elapsed: Duration,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// statsd metrics, one per line, for the next datagram.
    metrics: Vec<u8>,
    /// When the oldest buffered line was added.
    since: Option<Instant>,
    /// `t` for the current second: `(unix seconds, text)`.
    clock: Option<(u64, Vec<u8>)>,
}

/// A worker's request log, shared by the cycles of all its threads: gunicorn's access lines,
/// in the order their requests finished, and the statsd metrics of gunicorn's `Statsd` logger.
#[pyclass(frozen, module = "gunicorn_uwsgi._native")]
pub struct AccessLog {
    lines: Option<Lines>,
    metrics: Option<Metrics>,
    strftime: Py<PyAny>,
    pending: Mutex<Pending>,
}

/// The access lines.
struct Lines {
    pieces: Vec<Piece>,
    /// The `logging` handler of gunicorn's access logger (a `FileHandler` or a stdout
    /// `StreamHandler` with gunicorn's `%(message)s` formatter).
    handler: Py<PyAny>,
    /// `p`: `<pid>`.
    pid: Vec<u8>,
}

/// The per-request statsd metrics: the templates, and the statsd logger's connected socket.
struct Metrics {
    templates: Vec<access::Metric>,
    socket: Py<PyAny>,
}

/// `(socket, datagrams, duration, status)` of gunicorn's statsd logger for a sample request.
type StatsdSample = (Py<PyAny>, Vec<Vec<u8>>, Vec<u8>, Vec<u8>);

/// Metrics are sent in datagrams of at most this size (several metrics, one per line, fit in
/// one Ethernet frame).
const DATAGRAM: usize = 1400;

#[pymethods]
impl AccessLog {
    /// The request log: access lines written to `handler`'s stream (gunicorn's access handler,
    /// with its `%(message)s` formatter) in `format` (gunicorn's `access_log_format`), when
    /// both are given; `strftime` is `time.strftime`, for `t`. `statsd` is `(socket, samples,
    /// duration, status)`: gunicorn's statsd socket and the datagrams its logger sent for a
    /// sample request that took `duration` (as it wrote it) and answered `status`, the
    /// templates of each request's metrics. A `ValueError` when the format uses a conversion
    /// other than `%(name)s`: gunicorn's own logging must write it.
    #[new]
    #[pyo3(signature = (handler, format, strftime, statsd=None))]
    fn new(
        handler: Option<Py<PyAny>>,
        format: Option<&str>,
        strftime: Py<PyAny>,
        statsd: Option<StatsdSample>,
    ) -> PyResult<Self> {
        let lines = match (handler, format) {
            (Some(handler), Some(format)) => Some(Lines {
                pieces: access::parse(format).ok_or_else(|| {
                    pyo3::exceptions::PyValueError::new_err(
                        "access_log_format uses a conversion other than %(name)s",
                    )
                })?,
                handler,
                pid: format!("<{}>", std::process::id()).into_bytes(),
            }),
            _ => None,
        };
        let metrics = statsd.map(|(socket, samples, duration, status)| Metrics {
            templates: samples
                .iter()
                .map(|sample| access::Metric::of(sample, &duration, &status))
                .collect(),
            socket,
        });
        Ok(Self {
            lines,
            metrics,
            strftime,
            pending: Mutex::new(Pending::default()),
        })
    }

    /// Writes the buffered lines to the handler's stream, under its lock.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.write_pending(py)
    }
}

impl AccessLog {
    /// Adds the line and the metrics of one request. A value that cannot be read is reported
    /// the way gunicorn reports a failed access line (on the error log, through `error`) and
    /// the request goes on.
    pub fn record(&self, py: Python<'_>, entry: &Entry<'_, '_>) -> PyResult<()> {
        let line = match &self.lines {
            Some(lines) => self.line(py, lines, entry)?,
            None => None,
        };
        let metrics = match &self.metrics {
            Some(m) => Some(self.request_metrics(m, entry)?),
            None => None,
        };
        let (full, datagram) = {
            let mut pending = self.lock();
            if let Some(line) = line {
                pending.lines.extend_from_slice(&line);
            }
            let mut datagram = None;
            if let Some(metrics) = metrics {
                if !pending.metrics.is_empty() && pending.metrics.len() + metrics.len() > DATAGRAM {
                    datagram = Some(std::mem::take(&mut pending.metrics));
                }
                pending.metrics.extend_from_slice(&metrics);
            }
            pending.since.get_or_insert_with(Instant::now);
            (pending.lines.len() >= FLUSH_SIZE, datagram)
        };
        if let Some(datagram) = datagram {
            self.send_metrics(py, &datagram)?;
        }
        if full {
            self.write_pending_reporting(py);
        }
        Ok(())
    }

    /// One request's access line, `None` when gunicorn would write none.
    fn line(
        &self,
        py: Python<'_>,
        lines: &Lines,
        entry: &Entry<'_, '_>,
    ) -> PyResult<Option<Vec<u8>>> {
        let mut line = Vec::with_capacity(256);
        for piece in &lines.pieces {
            match piece {
                Piece::Text(text) => line.extend_from_slice(text),
                Piece::Atom(atom) => {
                    if !self.atom(py, lines, atom, entry, &mut line)? {
                        return Ok(None);
                    }
                }
            }
        }
        line.push(b'\n');
        Ok(Some(line))
    }

    /// One request's statsd metrics, one per line.
    fn request_metrics(&self, metrics: &Metrics, entry: &Entry<'_, '_>) -> PyResult<Vec<u8>> {
        let duration = access::duration_ms(entry.elapsed);
        let status = match &entry.status {
            Some(status) => match status.cast::<PyString>() {
                Ok(s) => status_code(s)?.parse::<u16>().ok(),
                Err(_) => status.extract::<u16>().ok(),
            },
            None => None,
        };
        let mut out = Vec::with_capacity(160);
        for template in &metrics.templates {
            let start = out.len();
            template.push(&mut out, &duration, status);
            if out.len() > start {
                out.push(b'\n');
            }
        }
        Ok(out)
    }

    /// Sends `datagram` (metrics, one per line) on the statsd socket, without waiting; a
    /// datagram the socket does not take is dropped, as statsd's are.
    fn send_metrics(&self, py: Python<'_>, datagram: &[u8]) -> PyResult<()> {
        let Some(metrics) = &self.metrics else {
            return Ok(());
        };
        let datagram = datagram.strip_suffix(b"\n").unwrap_or(datagram);
        if datagram.is_empty() {
            return Ok(());
        }
        let fd: RawFd = metrics
            .socket
            .bind(py)
            .call_method0(pyo3::intern!(py, "fileno"))?
            .extract()?;
        // SAFETY: `fd` is the descriptor of the statsd logger's socket, which `metrics` holds
        // open for the whole call; no Python code runs until the send returns.
        #[allow(unsafe_code)]
        if let Some(out) = unsafe { net::borrow(fd) } {
            let _ = net::send_ready(out, datagram);
        }
        Ok(())
    }

    /// [`write_pending`](Self::write_pending) from the request cycle: a failure is reported
    /// on stderr, as `logging` reports a handler that fails, and the worker goes on.
    pub fn write_pending_reporting(&self, py: Python<'_>) {
        if let Err(e) = self.write_pending(py) {
            e.print(py);
        }
    }

    /// Whether buffered lines have waited long enough to be written.
    pub fn due(&self) -> bool {
        self.lock()
            .since
            .is_some_and(|since| since.elapsed() >= FLUSH_AFTER)
    }

    /// Writes the buffered lines to the handler's stream, under its lock, and sends the
    /// buffered metrics.
    pub fn write_pending(&self, py: Python<'_>) -> PyResult<()> {
        let (lines, metrics) = {
            let mut pending = self.lock();
            pending.since = None;
            (
                std::mem::take(&mut pending.lines),
                std::mem::take(&mut pending.metrics),
            )
        };
        if !metrics.is_empty() {
            self.send_metrics(py, &metrics)?;
        }
        match &self.lines {
            Some(l) if !lines.is_empty() => write_to_handler(py, l.handler.bind(py), &lines),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one atom; `false` when gunicorn would write no line for the request (the
    /// environ lacks what `r` needs).
    fn atom<'py>(
        &self,
        py: Python<'py>,
        lines: &Lines,
        atom: &Atom,
        e: &Entry<'_, 'py>,
        out: &mut Vec<u8>,
    ) -> PyResult<bool> {
        // The keys are interned once (`intern!`): a lookup costs no string of its own.
        let env = |key: &Bound<'py, PyString>| e.environ.get_item(key);
        match atom {
            Atom::RemoteAddr => push_or(out, env(pyo3::intern!(py, "REMOTE_ADDR"))?, b"-")?,
            Atom::Dash => out.push(b'-'),
            Atom::User => {
                let start = out.len();
                if let Some(auth) = env(pyo3::intern!(py, "HTTP_AUTHORIZATION"))? {
                    if let Ok(auth) = auth.cast::<PyString>() {
                        let mut user = Vec::new();
                        if access::basic_user_into(auth.to_cow()?.as_bytes(), &mut user).is_some() {
                            access::push_escaped(out, &user);
                        }
                    }
                }
                if out.len() == start {
                    out.push(b'-');
                }
            }
            Atom::Time => self.push_time(py, out)?,
            Atom::RequestLine => {
                let keys = [
                    pyo3::intern!(py, "REQUEST_METHOD"),
                    pyo3::intern!(py, "RAW_URI"),
                    pyo3::intern!(py, "SERVER_PROTOCOL"),
                ];
                for (i, key) in keys.iter().enumerate() {
                    let Some(value) = env(key)? else {
                        return Ok(false);
                    };
                    if i > 0 {
                        out.push(b' ');
                    }
                    push_text(out, &value, true)?;
                }
            }
            Atom::Status => match &e.status {
                Some(status) => match status.cast::<PyString>() {
                    Ok(s) => access::push_escaped(out, status_code(s)?.as_bytes()),
                    Err(_) => push_text(out, status, false)?,
                },
                None => out.extend_from_slice(b"None"),
            },
            Atom::Method => push_or(out, env(pyo3::intern!(py, "REQUEST_METHOD"))?, b"None")?,
            Atom::Path => push_or(out, env(pyo3::intern!(py, "PATH_INFO"))?, b"None")?,
            Atom::Query => push_or(out, env(pyo3::intern!(py, "QUERY_STRING"))?, b"None")?,
            Atom::Protocol => push_or(out, env(pyo3::intern!(py, "SERVER_PROTOCOL"))?, b"None")?,
            Atom::Sent => out.extend_from_slice(e.sent.to_string().as_bytes()),
            Atom::Referer => push_or(out, env(pyo3::intern!(py, "HTTP_REFERER"))?, b"-")?,
            Atom::UserAgent => push_or(out, env(pyo3::intern!(py, "HTTP_USER_AGENT"))?, b"-")?,
            Atom::Seconds | Atom::Micros | Atom::Millis | Atom::SecondsFraction => {
                access::push_time(out, atom, e.elapsed);
            }
            Atom::Pid => out.extend_from_slice(&lines.pid),
            Atom::RequestHeader(name) => {
                let found = e
                    .head
                    .headers(e.block)
                    .filter(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
                    .last();
                match found {
                    Some((_, value)) => {
                        // The header's latin-1 text, as UTF-8 (what the log stream writes).
                        let text: String = value.iter().map(|&b| char::from(b)).collect();
                        access::push_escaped(out, text.as_bytes());
                    }
                    None => out.push(b'-'),
                }
            }
            Atom::ResponseHeader(name) => {
                let mut found = None;
                if let Some(headers) = &e.headers {
                    for pair in headers.try_iter()? {
                        let pair = pair?;
                        let key = pair.get_item(0)?;
                        if key.str()?.to_cow()?.to_lowercase() == *name {
                            found = Some(pair.get_item(1)?);
                        }
                    }
                }
                push_or(out, found, b"-")?;
            }
            Atom::Environ(name) => {
                let mut found = None;
                for (key, value) in e.environ.iter() {
                    if let Ok(key) = key.cast::<PyString>() {
                        if key.to_cow()?.to_lowercase() == *name {
                            found = Some(value);
                        }
                    }
                }
                push_or(out, found, b"-")?;
            }
            Atom::Missing => out.push(b'-'),
        }
        Ok(true)
    }

    /// `t`, formatted by `time.strftime` once per second.
    fn push_time(&self, py: Python<'_>, out: &mut Vec<u8>) -> PyResult<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        if let Some((second, text)) = &self.lock().clock {
            if *second == now {
                out.extend_from_slice(text);
                return Ok(());
            }
        }
        let text = self
            .strftime
            .bind(py)
            .call1((TIME_FORMAT,))?
            .cast_into::<PyString>()?
            .to_cow()?
            .as_bytes()
            .to_vec();
        out.extend_from_slice(&text);
        self.lock().clock = Some((now, text));
        Ok(())
    }
}

/// Writes `lines` to the `logging` handler's stream, under its lock: what gunicorn's own
/// logging wrote through the stream first, then the lines straight to its descriptor.
fn write_to_handler(py: Python<'_>, handler: &Bound<'_, PyAny>, lines: &[u8]) -> PyResult<()> {
    handler.call_method0(pyo3::intern!(py, "acquire"))?;
    let written = (|| {
        let mut stream = handler.getattr(pyo3::intern!(py, "stream"))?;
        if stream.is_none() {
            // A closed FileHandler (logging.shutdown, a dictConfig) opens its file again on
            // the next line, as its emit() does; one closed for good writes nothing.
            let closed = handler
                .getattr_opt(pyo3::intern!(py, "_closed"))?
                .map(|c| c.is_truthy())
                .transpose()?
                .unwrap_or(false);
            let mode = handler.getattr_opt(pyo3::intern!(py, "mode"))?;
            let truncates = match &mode {
                Some(m) => m.eq("w")?,
                None => false,
            };
            if (closed && truncates) || !handler.hasattr(pyo3::intern!(py, "_open"))? {
                return Ok(());
            }
            stream = handler.call_method0(pyo3::intern!(py, "_open"))?;
            handler.setattr(pyo3::intern!(py, "stream"), &stream)?;
        }
        stream.call_method0(pyo3::intern!(py, "flush"))?;
        let fd: RawFd = stream
            .call_method0(pyo3::intern!(py, "fileno"))?
            .extract()?;
        // SAFETY: `fd` is the descriptor of the handler's stream, which stays open while this
        // thread holds the handler's lock (gunicorn's reopen takes it first) and runs no
        // Python code.
        #[allow(unsafe_code)]
        let Some(out) = (unsafe { net::borrow(fd) }) else {
            return Ok(());
        };
        py.detach(|| write_lines(out, lines))
            .map_err(|e| crate::exceptions::os_error(&e))
    })();
    handler.call_method0(pyo3::intern!(py, "release"))?;
    written
}

/// The code of a status string as gunicorn takes it: `status.split(None, 1)[0]`.
fn status_code(status: &Bound<'_, PyString>) -> PyResult<String> {
    Ok(status
        .to_cow()?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// A value as `%s` formats it in gunicorn's line: a string with `"` escaped, anything else
/// as `str()` gives it.
fn push_text(out: &mut Vec<u8>, value: &Bound<'_, PyAny>, escape: bool) -> PyResult<()> {
    match value.cast::<PyString>() {
        Ok(s) => {
            let text = s.to_string_lossy();
            if escape {
                access::push_escaped(out, text.as_bytes());
            } else {
                out.extend_from_slice(text.as_bytes());
            }
        }
        Err(_) => out.extend_from_slice(value.str()?.to_string_lossy().as_bytes()),
    }
    Ok(())
}

fn push_or(out: &mut Vec<u8>, value: Option<Bound<'_, PyAny>>, missing: &[u8]) -> PyResult<()> {
    match value {
        Some(v) => push_text(out, &v, true),
        None => {
            out.extend_from_slice(missing);
            Ok(())
        }
    }
}

/// Writes `lines` in runs of whole lines of at most [`ATOMIC_WRITE`] bytes (a longer line
/// alone).
fn write_lines(out: std::os::fd::BorrowedFd<'_>, lines: &[u8]) -> std::io::Result<()> {
    let mut rest = lines;
    while !rest.is_empty() {
        let window = rest.get(..ATOMIC_WRITE.min(rest.len())).unwrap_or(rest);
        let end = if window.len() == rest.len() {
            rest.len()
        } else {
            match window.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
            }
        };
        let (run, tail) = rest.split_at(end);
        net::write_all(out, run)?;
        rest = tail;
    }
    Ok(())
}
