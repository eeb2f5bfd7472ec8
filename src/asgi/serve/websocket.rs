//! WebSocket over `uwsgi_pass` (W): nginx tunnels the connection once the cycle answers an
//! upgrade request with `101`, and the cycle then speaks RFC 6455 on it with the core's codec
//! (`core::websocket`): `websocket.connect`, `accept`, `receive`, `send`, `close` and
//! `disconnect`, the denial response, permessage-deflate, pings within nginx's
//! `uwsgi_read_timeout`, and back-pressure on sends through the same write path as HTTP.

use std::collections::VecDeque;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::{ready, Cycle, Flushed, HEADER_SIZE, RECV_SIZE};
use crate::core::response_head;
use crate::core::websocket::{self as ws, Decoder, Encoder, Event};
use crate::net;
use std::os::fd::AsFd;

/// Messages a connection holds for an application that does not read them, at most: past
/// that, the cycle stops reading and the peer's sends wait in the kernel (back-pressure).
const QUEUED: usize = 32;

/// Seconds the cycle waits for the peer's close frame after sending its own.
const CLOSE_WAIT: f64 = 2.0;

/// `websocket.disconnect`'s code when the connection ended without a close frame.
const ABNORMAL: u16 = 1006;

/// One websocket's state beside the connection's.
pub(super) struct Ws {
    key: Vec<u8>,
    /// The client's `Sec-WebSocket-Extensions`.
    offer: Option<Vec<u8>>,
    connected: bool,
    pub(super) accepted: bool,
    /// The application answers with `websocket.http.response.*` instead (W2).
    pub(super) denial: bool,
    decoder: Option<Decoder>,
    encoder: Option<Encoder>,
    queue: VecDeque<Py<PyDict>>,
    /// Set when the websocket ended: what `websocket.disconnect` says.
    pub(super) close_code: Option<u16>,
    sent_close: bool,
    pong_due: bool,
    timer: Option<Py<PyAny>>,
}

impl Ws {
    pub(super) fn new(key: Vec<u8>, offer: Option<Vec<u8>>) -> Self {
        Self {
            key,
            offer,
            connected: false,
            accepted: false,
            denial: false,
            decoder: None,
            encoder: None,
            queue: VecDeque::new(),
            close_code: None,
            sent_close: false,
            pong_due: false,
            timer: None,
        }
    }
}

/// `websocket.disconnect` with `code`.
pub(super) fn disconnect_message(py: Python<'_>, code: u16) -> PyResult<Bound<'_, PyDict>> {
    let msg = PyDict::new(py);
    msg.set_item(
        pyo3::intern!(py, "type"),
        pyo3::intern!(py, "websocket.disconnect"),
    )?;
    msg.set_item(pyo3::intern!(py, "code"), code)?;
    msg.set_item(pyo3::intern!(py, "reason"), pyo3::intern!(py, ""))?;
    Ok(msg)
}

fn event_message<'py>(py: Python<'py>, event: &Event) -> PyResult<Option<Bound<'py, PyDict>>> {
    let msg = PyDict::new(py);
    msg.set_item(
        pyo3::intern!(py, "type"),
        pyo3::intern!(py, "websocket.receive"),
    )?;
    match event {
        Event::Text(text) => msg.set_item(pyo3::intern!(py, "text"), PyString::new(py, text))?,
        Event::Binary(data) => msg.set_item(pyo3::intern!(py, "bytes"), PyBytes::new(py, data))?,
        _ => return Ok(None),
    }
    Ok(Some(msg))
}

impl Cycle {
    /// The websocket's `receive()`: `websocket.connect` first, then the peer's messages, then
    /// `websocket.disconnect` with the close code.
    pub(super) fn ws_receive<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.borrow();
        let (message, resume) = {
            let mut st = this.st.borrow_mut();
            if let Some(w) = &st.recv_waiter {
                return Ok(w.bind(py).clone());
            }
            let gone = st.fd.is_none();
            let Some(w) = st.ws.as_mut() else {
                return Err(PyRuntimeError::new_err("not a websocket"));
            };
            if !w.connected {
                w.connected = true;
                let msg = PyDict::new(py);
                msg.set_item(
                    pyo3::intern!(py, "type"),
                    pyo3::intern!(py, "websocket.connect"),
                )?;
                return ready(py, Some(msg.into_any()));
            }
            let queued = w.queue.pop_front();
            let resume = queued.is_some() && w.queue.len() < QUEUED / 2 && w.accepted && !gone;
            match queued {
                Some(m) => (Some(m.into_bound(py).into_any()), resume),
                None if gone || w.close_code.is_some() => {
                    let code = w.close_code.unwrap_or(ABNORMAL);
                    (Some(disconnect_message(py, code)?.into_any()), false)
                }
                None => (None, false),
            }
        };
        if resume {
            drop(this);
            Self::set_reading(slf, true)?;
            return ready(py, message);
        }
        if let Some(m) = message {
            return ready(py, Some(m));
        }
        let fut = this.server.borrow(py).lp.create_future.call0(py)?;
        this.st.borrow_mut().recv_waiter = Some(fut.clone_ref(py));
        drop(this);
        // Before the accept the peer sends nothing; watching the descriptor then tells only
        // of its leaving.
        Self::set_reading(slf, true)?;
        Ok(fut.into_bound(py))
    }

    /// The websocket's `send(message)` for `websocket.accept`, `send` and `close` (W2, W3).
    pub(super) fn ws_send<'py>(
        slf: &Bound<'py, Self>,
        kind: &str,
        message: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        match kind {
            "websocket.accept" => Self::ws_accept(slf, message),
            "websocket.send" => {
                let frame = {
                    let this = slf.borrow();
                    let mut st = this.st.borrow_mut();
                    let gone = st.fd.is_none();
                    let Some(w) = st.ws.as_mut() else {
                        return Err(PyRuntimeError::new_err("not a websocket"));
                    };
                    if !w.accepted {
                        return Err(PyRuntimeError::new_err(
                            "websocket.send before websocket.accept",
                        ));
                    }
                    if gone || w.sent_close || w.close_code.is_some() {
                        // The peer left (X3): what the application sends goes nowhere.
                        return ready(py, None);
                    }
                    let Some(encoder) = w.encoder.as_mut() else {
                        return ready(py, None);
                    };
                    match (
                        message.get_item(pyo3::intern!(py, "bytes"))?,
                        message.get_item(pyo3::intern!(py, "text"))?,
                    ) {
                        (Some(b), _) if !b.is_none() => {
                            let b = b.cast_into::<PyBytes>().map_err(|_| {
                                PyValueError::new_err("websocket.send's bytes must be bytes")
                            })?;
                            encoder.binary(b.as_bytes())
                        }
                        (_, Some(t)) if !t.is_none() => {
                            let t = t.cast_into::<PyString>().map_err(|_| {
                                PyValueError::new_err("websocket.send's text must be str")
                            })?;
                            encoder.text(&t.to_cow()?)
                        }
                        _ => {
                            return Err(PyValueError::new_err("websocket.send needs bytes or text"))
                        }
                    }
                };
                slf.borrow().st.borrow_mut().out.extend_from_slice(&frame);
                let flushed = Self::flush(slf);
                Self::after_flush(slf, flushed)
            }
            "websocket.close" => {
                let code: u16 = match message.get_item(pyo3::intern!(py, "code"))? {
                    Some(c) if !c.is_none() => c.extract()?,
                    _ => 1000,
                };
                let reason: String = match message.get_item(pyo3::intern!(py, "reason"))? {
                    Some(r) if !r.is_none() => r.extract()?,
                    _ => String::new(),
                };
                let accepted = {
                    let this = slf.borrow();
                    let st = this.st.borrow();
                    st.ws.as_ref().is_some_and(|w| w.accepted)
                };
                if !accepted {
                    // Closed before the accept: the handshake is refused (W2).
                    Self::ws_forbid(slf)?;
                    return ready(py, None);
                }
                Self::ws_close(slf, code, &reason)?;
                ready(py, None)
            }
            other => Err(PyValueError::new_err(format!(
                "unexpected ASGI message type {other:?} for a websocket"
            ))),
        }
    }

    /// `websocket.accept`: the 101 (W2), then frames both ways.
    fn ws_accept<'py>(
        slf: &Bound<'py, Self>,
        message: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let subprotocol: Option<String> =
            match message.get_item(pyo3::intern!(py, "subprotocol"))? {
                Some(s) if !s.is_none() => Some(s.extract()?),
                _ => None,
            };
        let mut extra: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if let Some(headers) = message.get_item(pyo3::intern!(py, "headers"))? {
            for item in headers.try_iter()? {
                let item = item?;
                let name: Vec<u8> = item.get_item(0)?.extract()?;
                let value: Vec<u8> = item.get_item(1)?.extract()?;
                extra.push((name, value));
            }
        }
        let max = slf.borrow().server.borrow(py).ws_max;
        {
            let this = slf.borrow();
            let mut st = this.st.borrow_mut();
            let st = &mut *st;
            let Some(w) = st.ws.as_mut() else {
                return Err(PyRuntimeError::new_err("not a websocket"));
            };
            if w.accepted || w.denial {
                return Err(PyRuntimeError::new_err(
                    "websocket.accept after the handshake was answered",
                ));
            }
            let deflate = w.offer.as_deref().and_then(ws::negotiate_deflate);
            let pairs: Vec<(&[u8], &[u8])> = extra
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .collect();
            let head = ws::accept_response(
                &w.key,
                subprotocol.as_deref(),
                deflate.as_ref().map(|(_, s)| s.as_str()),
                &pairs,
            )
            .map_err(|e| crate::exceptions::response_error(py, &e))?;
            let params = deflate.as_ref().map(|(p, _)| p);
            w.decoder = Some(Decoder::with_deflate(max, params));
            w.encoder = Some(Encoder::new(params));
            w.accepted = true;
            st.out.extend_from_slice(&head);
            st.resp.started = true;
            st.resp.head_sent = true;
            st.resp.status = 101;
            if this.server.borrow(py).logs() {
                st.resp_headers = extra;
            }
        }
        let flushed = Self::flush(slf);
        let done = Self::after_flush(slf, flushed)?;
        Self::set_reading(slf, true)?;
        Self::ws_arm_ping(slf)?;
        Ok(done)
    }

    /// The handshake refused by the application (`websocket.close` before the accept, or it
    /// ended without accepting): 403 (W2).
    pub(super) fn ws_forbid(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let this = slf.borrow();
            let mut st = this.st.borrow_mut();
            let answer = response_head::error_response(
                403,
                response_head::reason(403),
                "the application closed the WebSocket before accepting it",
            );
            if let Some(fd) = &st.fd {
                let _ = net::send_ready(fd.as_fd(), &answer);
            }
            st.resp.started = true;
            st.resp.head_sent = true;
            st.resp.complete = true;
            st.resp.status = 403;
            st.resp.sent = answer.len() as u64;
            if let Some(w) = st.ws.as_mut() {
                w.close_code = Some(ABNORMAL);
            }
        }
        Self::close_conn(slf)
    }

    /// Sends the server's close frame, then waits a moment for the peer's (W3).
    pub(super) fn ws_close(slf: &Bound<'_, Self>, code: u16, reason: &str) -> PyResult<()> {
        let py = slf.py();
        {
            let this = slf.borrow();
            let mut st = this.st.borrow_mut();
            let st = &mut *st;
            let Some(w) = st.ws.as_mut() else {
                return Ok(());
            };
            if w.sent_close || st.fd.is_none() {
                return Ok(());
            }
            w.sent_close = true;
            w.close_code.get_or_insert(code);
            st.out
                .extend_from_slice(&ws::close_frame(Some(code), reason));
        }
        let flushed = Self::flush(slf);
        if matches!(flushed, Flushed::Failed) {
            return Self::close_conn(slf);
        }
        if matches!(flushed, Flushed::Blocked) {
            Self::set_writing(slf, true)?;
        }
        // The peer's close frame ends it (`ws_readable`), else this timer.
        Self::ws_cancel_timer(slf)?;
        let this = slf.borrow();
        let server = this.server.borrow(py);
        let cb = slf.getattr(pyo3::intern!(py, "_ws_close_wait"))?;
        let timer = server.lp.call_later.call1(py, (CLOSE_WAIT, cb))?;
        drop(server);
        if let Some(w) = this.st.borrow_mut().ws.as_mut() {
            w.timer = Some(timer);
        }
        Ok(())
    }

    fn ws_cancel_timer(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let timer = slf
            .borrow()
            .st
            .borrow_mut()
            .ws
            .as_mut()
            .and_then(|w| w.timer.take());
        if let Some(t) = timer {
            t.call_method0(py, pyo3::intern!(py, "cancel"))?;
        }
        Ok(())
    }

    /// Schedules the next keep-alive ping (W5).
    fn ws_arm_ping(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let server = this.server.borrow(py);
        if server.ws_ping <= 0.0 {
            return Ok(());
        }
        let cb = slf.getattr(pyo3::intern!(py, "_ws_ping"))?;
        let timer = server.lp.call_later.call1(py, (server.ws_ping, cb))?;
        drop(server);
        if let Some(w) = this.st.borrow_mut().ws.as_mut() {
            w.timer = Some(timer);
        }
        Ok(())
    }

    /// The keep-alive timer: a ping inside nginx's `uwsgi_read_timeout`, and a close for a
    /// peer that did not answer the last one (W5).
    pub(super) fn ws_ping(slf: &Bound<'_, Self>) -> PyResult<()> {
        let unanswered = {
            let this = slf.borrow();
            let mut st = this.st.borrow_mut();
            let st = &mut *st;
            if st.fd.is_none() {
                return Ok(());
            }
            let Some(w) = st.ws.as_mut() else {
                return Ok(());
            };
            w.timer = None;
            if w.sent_close {
                return Ok(());
            }
            if w.pong_due {
                true
            } else {
                w.pong_due = true;
                st.out.extend_from_slice(&ws::ping_frame(b""));
                false
            }
        };
        if unanswered {
            Self::ws_close(slf, 1011, "keepalive ping timeout")?;
            return Self::ws_end(slf, 1011);
        }
        let flushed = Self::flush(slf);
        match flushed {
            Flushed::Failed => Self::ws_end(slf, ABNORMAL),
            Flushed::Blocked => {
                Self::set_writing(slf, true)?;
                Self::ws_arm_ping(slf)
            }
            Flushed::All => Self::ws_arm_ping(slf),
        }
    }

    /// The websocket ended with `code`: the connection closes, a waiting `receive()` gets
    /// `websocket.disconnect`.
    pub(super) fn ws_end(slf: &Bound<'_, Self>, code: u16) -> PyResult<()> {
        Self::ws_cancel_timer(slf)?;
        {
            let this = slf.borrow();
            let mut st = this.st.borrow_mut();
            if let Some(w) = st.ws.as_mut() {
                w.close_code.get_or_insert(code);
            }
            st.client_gone = true;
        }
        Self::close_conn(slf)
    }

    /// Bytes from the peer of an accepted websocket: frames decoded, pings answered, messages
    /// given to a waiting `receive()` or queued, the close handshake (W3).
    pub(super) fn ws_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let server = this.server.borrow(py);
        // Everything the socket has now, so that a reset or EOF right behind the data is seen
        // at once (a bounded number of reads per wake-up, for fairness).
        let mut events = Vec::new();
        let mut failed = None;
        let mut ended = false;
        for _ in 0..16 {
            let mut st = this.st.borrow_mut();
            let st = &mut *st;
            let mut scratch = server.scratch.borrow_mut();
            scratch.clear();
            let got = match &st.fd {
                Some(fd) => net::recv_ready(fd.as_fd(), &mut scratch, RECV_SIZE),
                None => Ok(Some(0)),
            };
            match got {
                Ok(None) => break,
                Ok(Some(0)) | Err(_) => {
                    ended = true;
                    break;
                }
                Ok(Some(_)) => {}
            }
            let Some(decoder) = st.ws.as_mut().and_then(|w| w.decoder.as_mut()) else {
                // Not accepted yet: the peer has nothing to say before the 101.
                return Ok(());
            };
            decoder.feed(&scratch);
            loop {
                match decoder.next_event() {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) => break,
                    Err(reason) => {
                        failed = Some(reason);
                        break;
                    }
                }
            }
            if failed.is_some() || decoder.is_closed() {
                break;
            }
        }
        drop(server);
        drop(this);
        let mut closed = None;
        for event in events {
            match event {
                Event::Ping(payload) => {
                    let this = slf.borrow();
                    let mut st = this.st.borrow_mut();
                    let frame = ws::pong_frame(&payload);
                    st.out.extend_from_slice(&frame);
                }
                Event::Pong(_) => {
                    if let Some(w) = slf.borrow().st.borrow_mut().ws.as_mut() {
                        w.pong_due = false;
                    }
                }
                Event::Close(code, _) => {
                    closed = Some(code);
                    break;
                }
                data => {
                    if let Some(msg) = event_message(py, &data)? {
                        Self::ws_deliver(slf, msg)?;
                    }
                }
            }
        }
        if let Some(reason) = failed {
            // A protocol violation: the close code says which (W3).
            slf.borrow()
                .st
                .borrow_mut()
                .out
                .extend_from_slice(&reason.frame());
            let _ = Self::flush(slf);
            let log = slf.borrow().server.borrow(py).log(py)?;
            log.call_method1(
                "debug",
                (
                    "websocket peer %s closed with %d: %s",
                    super::peer_label(slf.borrow().peer),
                    reason.code,
                    reason.reason,
                ),
            )?;
            return Self::ws_end(slf, reason.code);
        }
        if let Some(code) = closed {
            // The close handshake: answered with the peer's code, then the connection ends.
            let answered = {
                let this = slf.borrow();
                let mut st = this.st.borrow_mut();
                let st = &mut *st;
                let sent = st.ws.as_ref().is_some_and(|w| w.sent_close);
                if !sent {
                    st.out.extend_from_slice(&ws::close_frame(code, ""));
                }
                sent
            };
            let _ = answered;
            let _ = Self::flush(slf);
            return Self::ws_end(slf, code.unwrap_or(1005));
        }
        if ended {
            return Self::ws_end(slf, ABNORMAL);
        }
        let flushed = Self::flush(slf);
        match flushed {
            Flushed::Failed => Self::ws_end(slf, ABNORMAL),
            Flushed::Blocked => Self::set_writing(slf, true),
            Flushed::All => Ok(()),
        }
    }

    /// A message for the application: to its waiting `receive()`, else queued; a full queue
    /// stops reading (the peer then waits: back-pressure).
    fn ws_deliver(slf: &Bound<'_, Self>, msg: Bound<'_, PyDict>) -> PyResult<()> {
        let py = slf.py();
        let waiter = slf.borrow().st.borrow_mut().recv_waiter.take();
        if let Some(w) = waiter {
            let w = w.bind(py);
            if !w.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
                w.call_method1(pyo3::intern!(py, "set_result"), (msg,))?;
                return Ok(());
            }
        }
        let full = {
            let this = slf.borrow();
            let mut st = this.st.borrow_mut();
            match st.ws.as_mut() {
                Some(w) => {
                    w.queue.push_back(msg.unbind());
                    w.queue.len() >= QUEUED
                }
                None => false,
            }
        };
        if full {
            Self::set_reading(slf, false)?;
        }
        Ok(())
    }

    /// Whether the server's close frame went out and the cycle waits for the peer's.
    pub(super) fn ws_closing(&self) -> bool {
        let st = self.st.borrow();
        st.fd.is_some() && st.ws.as_ref().is_some_and(|w| w.sent_close)
    }

    /// Whether this connection is a websocket whose frames the cycle reads.
    pub(super) fn ws_reads(&self) -> bool {
        self.st
            .borrow()
            .ws
            .as_ref()
            .is_some_and(|w| w.accepted && !w.denial)
    }

    /// The application ended: an open websocket closes with 1000; one never accepted is
    /// refused with 403 (W2).
    pub(super) fn ws_done(slf: &Bound<'_, Self>) -> PyResult<()> {
        let (accepted, denial, open) = {
            let this = slf.borrow();
            let st = this.st.borrow();
            match st.ws.as_ref() {
                Some(w) => (w.accepted, w.denial, st.fd.is_some() && !w.sent_close),
                None => return Ok(()),
            }
        };
        if accepted && open {
            // The close handshake: the peer's close frame, or the timer, ends the connection.
            return Self::ws_close(slf, 1000, "");
        }
        if !accepted && !denial && slf.borrow().st.borrow().fd.is_some() {
            return Self::ws_forbid(slf);
        }
        Ok(())
    }
}

/// The handshake's request headers (W1), checked; `Err` is the 400's reason.
pub(super) fn check(
    head: &crate::core::vars::Head,
    buf: &[u8],
) -> Result<(Vec<u8>, Option<Vec<u8>>), ws::HandshakeError> {
    let block = buf
        .get(HEADER_SIZE..head.header.head_size())
        .unwrap_or_default();
    let h = |k: &[u8]| crate::asgi::env::header(head, block, k);
    let key = h(b"HTTP_SEC_WEBSOCKET_KEY");
    ws::check_handshake(
        head.method(block),
        h(b"HTTP_UPGRADE").as_deref(),
        h(b"HTTP_CONNECTION").as_deref(),
        key.as_deref(),
        h(b"HTTP_SEC_WEBSOCKET_VERSION").as_deref(),
    )?;
    let key = key.map(|k| k.into_owned()).unwrap_or_default();
    let offer = h(b"HTTP_SEC_WEBSOCKET_EXTENSIONS").map(|o| o.into_owned());
    Ok((key, offer))
}
