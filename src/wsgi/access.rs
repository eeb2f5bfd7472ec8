//! gunicorn's access log written by the Rust cycle (G4): the same line gunicorn's `Logger`
//! writes for the same request (`access_log_format` with the atoms of `core::access`, read
//! from the environ as the application left it, the request headers, the response), to the
//! same destination: the descriptor of the logging handler's stream, looked up at each flush,
//! so a `USR1` reopen (gunicorn's `reopen_files`) takes effect at the next one.
//!
//! Lines are buffered per worker (per thread in the ThreadWorker) and written whole, under the
//! handler's lock, at the end of each batch of connections, when [`FLUSH_SIZE`] bytes or
//! [`FLUSH_AFTER`] of waiting have piled up, and when the worker stops: a line is never split
//! or interleaved with another, and never waits longer than a fraction of a second.

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
    /// When the oldest buffered line was added.
    since: Option<Instant>,
    /// `t` for the current second: `(unix seconds, text)`.
    clock: Option<(u64, Vec<u8>)>,
}

/// A worker's access log, shared by the cycles of all its threads: lines go out in the order
/// their requests finished.
#[pyclass(frozen, module = "gunicorn_uwsgi._native")]
pub struct AccessLog {
    pieces: Vec<Piece>,
    /// The `logging` handler of gunicorn's access logger (a `FileHandler` or a stdout
    /// `StreamHandler` with gunicorn's `%(message)s` formatter).
    handler: Py<PyAny>,
    strftime: Py<PyAny>,
    /// `p`: `<pid>`.
    pid: Vec<u8>,
    pending: Mutex<Pending>,
}

#[pymethods]
impl AccessLog {
    /// The access log written to `handler`'s stream (gunicorn's access handler, with its
    /// `%(message)s` formatter) in `format` (gunicorn's `access_log_format`); `strftime` is
    /// `time.strftime`, for `t`. A `ValueError` when the format uses a conversion other than
    /// `%(name)s`: gunicorn's own logging must write it.
    #[new]
    fn new(handler: Py<PyAny>, format: &str, strftime: Py<PyAny>) -> PyResult<Self> {
        let pieces = access::parse(format).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(
                "access_log_format uses a conversion other than %(name)s",
            )
        })?;
        Ok(Self {
            pieces,
            handler,
            strftime,
            pid: format!("<{}>", std::process::id()).into_bytes(),
            pending: Mutex::new(Pending::default()),
        })
    }

    /// Writes the buffered lines to the handler's stream, under its lock.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.write_pending(py)
    }
}

impl AccessLog {
    /// Adds the line of one request. A value that cannot be read is reported the way
    /// gunicorn reports a failed access line (on the error log, through `error`) and the
    /// request goes on.
    pub fn record(&self, py: Python<'_>, entry: &Entry<'_, '_>) -> PyResult<()> {
        let mut line = Vec::with_capacity(256);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => line.extend_from_slice(text),
                Piece::Atom(atom) => {
                    if !self.atom(py, atom, entry, &mut line)? {
                        return Ok(());
                    }
                }
            }
        }
        line.push(b'\n');
        let full = {
            let mut pending = self.lock();
            pending.lines.extend_from_slice(&line);
            pending.since.get_or_insert_with(Instant::now);
            pending.lines.len() >= FLUSH_SIZE
        };
        if full {
            self.write_pending(py)?;
        }
        Ok(())
    }

    /// Whether buffered lines have waited long enough to be written.
    pub fn due(&self) -> bool {
        self.lock()
            .since
            .is_some_and(|since| since.elapsed() >= FLUSH_AFTER)
    }

    /// Writes the buffered lines to the handler's stream, under its lock.
    pub fn write_pending(&self, py: Python<'_>) -> PyResult<()> {
        let lines = {
            let mut pending = self.lock();
            pending.since = None;
            std::mem::take(&mut pending.lines)
        };
        if lines.is_empty() {
            return Ok(());
        }
        let handler = self.handler.bind(py);
        handler.call_method0(pyo3::intern!(py, "acquire"))?;
        let written = (|| {
            let stream = handler.getattr(pyo3::intern!(py, "stream"))?;
            // Whatever gunicorn's own logging wrote through the stream goes first.
            stream.call_method0(pyo3::intern!(py, "flush"))?;
            let fd: RawFd = stream
                .call_method0(pyo3::intern!(py, "fileno"))?
                .extract()?;
            // SAFETY: `fd` is the descriptor of the handler's stream, which stays open while
            // this thread holds the handler's lock (gunicorn's reopen takes it first) and runs
            // no Python code.
            #[allow(unsafe_code)]
            let Some(out) = (unsafe { net::borrow(fd) }) else {
                return Ok(());
            };
            py.detach(|| write_lines(out, &lines))
                .map_err(|e| crate::exceptions::os_error(&e))
        })();
        handler.call_method0(pyo3::intern!(py, "release"))?;
        written
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one atom; `false` when gunicorn would write no line for the request (the
    /// environ lacks what `r` needs).
    fn atom(
        &self,
        py: Python<'_>,
        atom: &Atom,
        e: &Entry<'_, '_>,
        out: &mut Vec<u8>,
    ) -> PyResult<bool> {
        let env = |key: &str| e.environ.get_item(PyString::intern(py, key));
        match atom {
            Atom::RemoteAddr => push_or(out, env("REMOTE_ADDR")?, b"-")?,
            Atom::Dash => out.push(b'-'),
            Atom::User => {
                let start = out.len();
                if let Some(auth) = env("HTTP_AUTHORIZATION")? {
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
                for (i, key) in ["REQUEST_METHOD", "RAW_URI", "SERVER_PROTOCOL"]
                    .iter()
                    .enumerate()
                {
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
                    Ok(s) => {
                        let text = s.to_cow()?;
                        let code = text.split_whitespace().next().unwrap_or_default();
                        access::push_escaped(out, code.as_bytes());
                    }
                    Err(_) => push_text(out, status, false)?,
                },
                None => out.extend_from_slice(b"None"),
            },
            Atom::Method => push_or(out, env("REQUEST_METHOD")?, b"None")?,
            Atom::Path => push_or(out, env("PATH_INFO")?, b"None")?,
            Atom::Query => push_or(out, env("QUERY_STRING")?, b"None")?,
            Atom::Protocol => push_or(out, env("SERVER_PROTOCOL")?, b"None")?,
            Atom::Sent => out.extend_from_slice(e.sent.to_string().as_bytes()),
            Atom::Referer => push_or(out, env("HTTP_REFERER")?, b"-")?,
            Atom::UserAgent => push_or(out, env("HTTP_USER_AGENT")?, b"-")?,
            Atom::Seconds | Atom::Micros | Atom::Millis | Atom::SecondsFraction => {
                access::push_time(out, atom, e.elapsed);
            }
            Atom::Pid => out.extend_from_slice(&self.pid),
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
