"""What every uwsgi worker class shares: configuration checks, the per-worker protocol state,
protocol-error answers, error logging and closing connections."""

from __future__ import annotations

import copy
import errno
import ipaddress
import logging
import os
import socket
import struct
import time
from collections import Counter
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from gunicorn import glogging
from gunicorn import sock as gsock

from gunicorn_uwsgi import _native
from gunicorn_uwsgi._native import (
    SERVE_CLOSED,
    SERVE_FAILED,
    SERVE_HANDOFF,
    SERVE_IDLE,
    SERVE_STALLED,
    write_result,
)
from gunicorn_uwsgi.errors import (
    ClientDisconnected,
    ForbiddenUWSGIRequest,
    PeerTimeout,
    UWSGIError,
)
from gunicorn_uwsgi.message import UWSGIRequest
from gunicorn_uwsgi.parser import read_request
from gunicorn_uwsgi.settings import DEFAULT_ALLOW_IPS, ProtocolSettings, _as_list, _setting
from gunicorn_uwsgi.wsgi import Response, make_environ

_QUIET_ERRNOS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)
_TIMEOUT_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ETIMEDOUT)

#: Connections the Rust cycle serves in one call before the worker's loop runs again
#: (heartbeat, parent check, signals).
BATCH = 64

#: Logged once per worker process for a request without ``REQUEST_METHOD`` (V6).
MISSING_METHOD = (
    "uwsgi peer %s sent no REQUEST_METHOD: served as GET. Is `include uwsgi_params;` missing "
    "from the nginx location? (logged once per worker)"
)

#: Bytes read and dropped at most when closing a connection with unread input, on top of
#: the unread rest of the body.
DRAIN_LIMIT = 1 << 20
#: Seconds spent at most draining a connection before closing it.
DRAIN_SECONDS = 1.0


def _is_loopback_bind(address: str) -> bool:
    if address.startswith(("unix:", "fd://")):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_default(cfg: Any, hook: str) -> bool:
    setting = cfg.settings.get(hook)
    return setting is not None and getattr(cfg, hook) is setting.default


def rust_request_log(log: Any, cfg: Any) -> tuple[Any, str | None, Any] | None:
    """``(handler, access_log_format, statsd)``, the arguments of ``_native.AccessLog``, when
    the Rust cycle can write what gunicorn's logger writes per request, byte for byte: the
    access lines of gunicorn's own ``Logger`` through one plain file or stdout handler with its
    ``%(message)s`` formatter, in UTF-8, no filters, no ``logconfig``/``logconfig_dict``/
    ``logconfig_json`` or syslog (``handler`` and the format None without an access log), and
    the metrics of gunicorn's ``Statsd`` logger (``statsd_sample``). None for anything else (a
    logger class of its own, another logging setup): gunicorn's logging, on the Python path."""
    statsd = None
    if type(log) is not glogging.Logger:
        if not _is_gunicorn_statsd(log):
            return None
        statsd = statsd_sample(log)
    if not _access_lines_enabled(log, cfg):
        return None, None, statsd
    if _logging_configured(cfg):
        return None
    access = log.access_log
    if access.filters or access.propagate or not access.isEnabledFor(logging.INFO):
        return None
    if len(access.handlers) != 1:
        return None
    handler = access.handlers[0]
    if type(handler) not in (logging.FileHandler, logging.StreamHandler):
        return None
    if handler.filters or handler.level > logging.INFO or handler.terminator != "\n":
        return None
    formatter = handler.formatter
    if type(formatter) is not logging.Formatter or formatter._fmt != "%(message)s":
        return None
    stream = getattr(handler, "stream", None)
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if encoding != "utf8":
        return None
    try:
        stream.fileno()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return None
    return handler, str(cfg.access_log_format), statsd


def _is_gunicorn_statsd(log: Any) -> bool:
    try:
        from gunicorn.instrument.statsd import Statsd
    except ImportError:  # pragma: no cover - every supported gunicorn has it
        return False
    return type(log) is Statsd


class _Recorder:
    """A statsd socket that keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)


def statsd_sample(log: Any) -> tuple[Any, list[bytes], bytes, bytes] | None:
    """``(socket, datagrams, duration, status)``: the datagrams gunicorn's ``Statsd.access``
    sends for a sample request that took 1.234 ms and answered 599, recorded once per worker
    with a copy of the logger whose socket keeps them and whose access lines go nowhere. They
    are the templates of every request's metrics in the Rust cycle: the installed gunicorn's
    own names, metric types, prefix and tags. None when the logger has no socket (it sends
    nothing)."""
    sock = getattr(log, "sock", None)
    if sock is None:
        return None
    probe = copy.copy(log)
    recorder = _Recorder()
    probe.sock = recorder
    quiet = logging.getLogger("gunicorn_uwsgi.statsd_sample")
    quiet.propagate = False
    quiet.disabled = True
    probe.access_log = quiet
    resp = SimpleNamespace(status="599 Sample", headers=[], sent=0)
    req = SimpleNamespace(headers=[])
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1"}
    type(log).access(probe, resp, req, environ, timedelta(microseconds=1234))
    return sock, recorder.sent, b"1.234", b"599"


def _access_lines_enabled(log: Any, cfg: Any) -> bool:
    """Whether gunicorn's ``Logger.access`` writes lines (as it decides it)."""
    enabled = getattr(log, "access_log_enabled", None)
    if enabled is not None:
        return bool(enabled)
    return bool(cfg.accesslog) or _logging_configured(cfg)


def _logging_configured(cfg: Any) -> bool:
    """Whether gunicorn's logging is set up by a logging configuration or syslog, which route
    access lines through ``logging`` in ways a direct writer cannot honour."""
    return bool(
        cfg.logconfig
        or getattr(cfg, "logconfig_dict", None)
        or getattr(cfg, "logconfig_json", None)
        or (cfg.syslog and not getattr(cfg, "disable_redirect_access_to_syslog", False))
    )


def _access_log_enabled(log: Any, cfg: Any) -> bool:
    """Whether gunicorn's logger does anything per request: an access log, or a logger class
    of its own (statsd's counts every request in ``access``)."""
    return type(log).access is not glogging.Logger.access or _access_lines_enabled(log, cfg)


def check_allow_list(cfg: Any, log: Any) -> None:
    """Compiles ``uwsgi_allow_ips`` once in the arbiter so a bad entry stops start-up, and warns
    when ``*`` meets a non-loopback TCP bind (A5)."""
    entries = _as_list(_setting(cfg, "uwsgi_allow_ips", DEFAULT_ALLOW_IPS))
    try:
        allow = _native.AllowList(entries)
    except ValueError as e:
        raise RuntimeError(f"uwsgi_allow_ips (--uwsgi-allow-from): {e}") from None
    if allow.allows_any:
        exposed = [b for b in _setting(cfg, "bind", []) if not _is_loopback_bind(b)]
        if exposed:
            log.warning(
                "uwsgi_allow_ips is '*' and gunicorn listens on %s: the uwsgi protocol has no "
                "authentication, anyone who reaches the port writes the WSGI environ. "
                "List the front end's addresses in --uwsgi-allow-from instead.",
                ", ".join(exposed),
            )


class UWSGIWorkerMixin:
    """Mixed into a gunicorn worker class before it: swaps the protocol, keeps the rest."""

    #: ``wsgi.multithread`` in the environ (E8).
    multithread = False
    #: Exceptions that end a connection's handler without being an application error (the
    #: gevent worker's ``GreenletExit`` when a stopping worker kills its handlers).
    passthrough: tuple[type[BaseException], ...] = ()
    #: Whether the debug line saying the Rust cycle writes the access log was logged.
    _access_log_told = False

    # Set by gunicorn's Worker.
    cfg: Any
    log: Any
    nr: int
    max_requests: int
    alive: bool
    sockets: list[Any]
    wsgi: Any

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        parent = getattr(super(), "check_config", None)
        if parent is not None:
            parent(cfg, log)
        check_allow_list(cfg, log)

    def init_process(self) -> None:
        self.uwsgi = ProtocolSettings(self.cfg, multithread=self.multithread)
        #: Protocol errors answered, by status (X1).
        self.uwsgi_errors: Counter[int] = Counter()
        self._socknames: dict[Any, Any] = {}
        self._listener_info: dict[Any, tuple[int, int, Any]] = {}
        self._notified = float("-inf")
        # The arbiter kills a worker silent for `timeout` seconds; beat well within it.
        self._notify_interval = min(1.0, (self.cfg.timeout or 30) / 4)
        for listener in self.sockets:
            if listener.family in (socket.AF_INET, socket.AF_INET6):
                widen_receive_buffer(listener, self.log)
        super().init_process()  # type: ignore[misc]

    def set_socket_timeouts(self) -> None:
        """Receive and send timeouts on the listeners: accepted sockets inherit them, so a
        stalled peer is dropped without a per-connection system call (F8)."""
        seconds = self.uwsgi.timeout
        tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
        for listener in self.sockets:
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                try:
                    listener.setsockopt(socket.SOL_SOCKET, option, tv)
                except OSError as e:  # pragma: no cover - platform dependent
                    self.log.debug("cannot set socket timeout: %s", e)

    # -- the Rust request cycle ----------------------------------------------------------

    def fast_server(self) -> Any:
        """The Rust request cycle (``_native.FastServer``: accept, receive, parse, environ,
        application, response, close, with the worker's request hooks and gunicorn's access
        log), or None when the worker needs the Python one: TLS, or logging the Rust cycle
        does not write itself (``rust_request_log``). ``GUNICORN_UWSGI_FAST_PATH=0`` turns it off.
        A threaded worker makes one per thread."""
        cfg, settings = self.cfg, self.uwsgi
        if os.environ.get("GUNICORN_UWSGI_FAST_PATH", "1") == "0" or settings.is_ssl:
            return None
        access = None
        if _access_log_enabled(self.log, cfg):
            access = self.access_log()
            if access is None:
                return None
        # gunicorn's default pre_request hook logs "METHOD PATH" at debug level.
        debug = self.log.debug if self.log.error_log.isEnabledFor(logging.DEBUG) else None
        fast = _native.FastServer(
            self.wsgi,
            settings.native,
            socket.socket,
            settings.base_environ["wsgi.file_wrapper"],
            debug,
        )
        pre = None if _is_default(cfg, "pre_request") else cfg.pre_request
        post = None if _is_default(cfg, "post_request") else cfg.post_request
        fast.call_hooks(pre, post)
        if access is not None:
            fast.log_access(access)
            if not self._access_log_told:
                self._access_log_told = True
                self.log.debug("access log and request metrics written by the Rust cycle")
        if len(self.sockets) > 1:
            # The worker's own wait covers every listener (F8: no connection waits behind a
            # wait on another listener).
            fast.accept_wait_ms = 0
        return fast

    def access_log(self) -> Any:
        """The worker's one ``_native.AccessLog``, shared by its threads' cycles, or None when
        gunicorn's own logging must write the access log (``rust_request_log``)."""
        try:
            return self._access_log
        except AttributeError:
            pass
        log = None
        found = rust_request_log(self.log, self.cfg)
        if found is not None:
            handler, fmt, statsd = found
            try:
                log = _native.AccessLog(handler, fmt, time.strftime, statsd)
            except ValueError:
                log = None
        self._access_log: Any = log
        return log

    def serve_batch(self, fast: Any, listener: Any, limit: int) -> bool:
        """Serves up to ``limit`` connections of ``listener`` in the Rust cycle, then what it
        handed back: a connection for the Python path, a failed request, a stalled peer.
        Returns False when no connection was pending."""
        code = fast.serve(*self.listener_info(listener), self, limit)
        if fast.served:
            self.count_request(fast.served)
        if code == SERVE_IDLE:
            return bool(fast.served)
        if code == SERVE_HANDOFF:
            fd, addr, data = fast.take_handoff()
            client = socket.socket(listener.family, socket.SOCK_STREAM, 0, fd)
            self.handle_connection(listener, client, addr, data, fast.waited)
        elif code == SERVE_FAILED:
            exc, addr, what, counts = fast.take_error()
            if counts:
                self.count_request()
            self.request_failed(exc, addr, what)
        elif code == SERVE_CLOSED:
            self.log.debug("uwsgi peer closed before sending a request")
        elif code == SERVE_STALLED:
            addr = fast.take_peer()
            self.connection_error(addr, PeerTimeout(self.uwsgi.timeout, "request bytes"))
        return True

    def request_failed(self, exc: BaseException, addr: Any, what: str) -> None:
        """A request of the Rust cycle failed: the connection (X3, F8) or the application
        (X2, a 500 already sent when nothing else was)."""
        if isinstance(exc, OSError):
            self.connection_error(addr, exc)
        else:
            self.log.error("Error handling request %s", what, exc_info=exc)

    def listener_info(self, listener: Any) -> tuple[int, int, Any]:
        """``(fileno, family, getsockname())`` of a listener, looked up once: gunicorn's socket
        wrappers answer these through ``__getattr__``."""
        try:
            return self._listener_info[listener]
        except KeyError:
            info = (listener.fileno(), listener.family, self.sockname(listener))
            self._listener_info[listener] = info
            return info

    def sockname(self, listener: Any) -> Any:
        try:
            return self._socknames[listener]
        except KeyError:
            name = self._socknames[listener] = listener.getsockname()
            return name

    # -- answers -------------------------------------------------------------------------

    def protocol_error(self, client: Any, addr: Any, exc: UWSGIError) -> None:
        """A refused packet: a short plain response, one warning line, no traceback (X1)."""
        self.uwsgi_refused(addr, exc)
        try:
            client.sendall(_native.error_response(exc.code, str(exc)))
        except OSError:
            self.log.debug("could not send the %d answer to %s", exc.code, peer_name(addr))

    def uwsgi_refused(self, addr: Any, exc: UWSGIError) -> None:
        """Counts a refused packet and logs its one warning line (X1); the caller answers."""
        code = exc.code
        self.uwsgi_errors[code] += 1
        increment = getattr(self.log, "increment", None)
        if increment is not None:
            increment("gunicorn_uwsgi.errors", 1)
        self.log.warning(
            "uwsgi request from %s refused (%d %s): %s", peer_name(addr), code, exc.reason, exc
        )

    def warn_missing_method(self, addr: Any) -> None:
        """The one warning of a worker process about a request without ``REQUEST_METHOD``
        (V6); the caller claims it first (``_native.claim_missing_method_warning``)."""
        self.log.warning(MISSING_METHOD, peer_name(addr))

    def app_error(
        self,
        req: UWSGIRequest | None,
        client: Any,
        addr: Any,
        resp: Any,
        environ: dict[str, Any] | None = None,
    ) -> None:
        """An exception from the application: logged with its traceback, a 500 when nothing
        was sent yet (X2), and its access line (the request's environ when it was made)."""
        if req is not None:
            self.log.exception("Error handling request %s %s", req.method, req.uri)
        else:
            self.log.exception("Error handling request (no request read)")
        if resp is not None and resp.headers_sent:
            return
        body = _native.error_response(500, "the application raised an exception")
        try:
            client.sendall(body)
        except OSError:
            self.log.debug("could not send the 500 answer to %s", peer_name(addr))
            return
        if req is not None and _access_log_enabled(self.log, self.cfg):
            error_resp = Response(req, client, self.cfg)
            error_resp.status = f"500 {_native.reason(500)}"
            error_resp.sent = len(body)
            if not environ:
                environ = {
                    "REQUEST_METHOD": req.method,
                    "RAW_URI": req.uri,
                    "SERVER_PROTOCOL": "HTTP/{}.{}".format(*req.version),
                    "REMOTE_ADDR": req.remote_addr[0] if isinstance(req.remote_addr, tuple) else "",
                }
            self.log.access(error_resp, req, environ, timedelta(0))

    def connection_error(self, addr: Any, exc: BaseException) -> None:
        """Peer hang-ups are debug noise (X3); stalls are dropped with a warning (F8)."""
        if isinstance(exc, PeerTimeout):
            self.log.warning("uwsgi peer %s dropped: %s", peer_name(addr), exc)
        elif isinstance(exc, ClientDisconnected) or getattr(exc, "errno", None) in _QUIET_ERRNOS:
            self.log.debug("uwsgi peer %s went away: %s", peer_name(addr), exc)
        elif getattr(exc, "errno", None) in _TIMEOUT_ERRNOS:
            self.log.warning("uwsgi peer %s stopped reading the response: dropped", peer_name(addr))
        else:
            # exc_info names the exception: the Rust cycle reports its failures after the fact.
            self.log.error("Socket error processing request.", exc_info=exc)

    # -- the connection ------------------------------------------------------------------

    def handle_connection(
        self, listener: Any, client: Any, addr: Any, data: bytes = b"", waited: float = 0.0
    ) -> None:
        """One connection, one request (F5): the allow check (A4), the head (starting with
        ``data``, bytes already read from it, after the peer kept the worker ``waited``
        seconds: they count against its read budget, F8), the application and its response,
        close."""
        req = None
        clean = False
        try:
            if not self.uwsgi.allow.allows(addr):
                raise ForbiddenUWSGIRequest(str(addr[0]))
            client = self.wrap_client(client)
            req = read_request(client, addr, self.uwsgi, 1, data, waited)
            if req is None:
                self.log.debug("uwsgi peer closed before sending a request")
                clean = True
                return
            if req.head.method_missing and _native.claim_missing_method_warning():
                self.warn_missing_method(addr)
            self.serve(listener, req, client, addr)
            clean = True
        except (OSError, PeerTimeout) as e:  # first: a head cut short is both (X3)
            self.connection_error(addr, e)
        except UWSGIError as e:
            self.protocol_error(client, addr, e)
        except self.passthrough:
            raise
        except (SystemExit, KeyboardInterrupt) as e:
            if not self.alive:  # the worker's own exit (a signal, the arbiter's timeout abort)
                raise
            self.app_error(*failed(req, client, addr, e))
        except BaseException as e:  # the application failed (X2); the worker keeps serving
            self.app_error(*failed(req, client, addr, e))
        finally:
            # A slow peer may have kept the worker for most of the read budget, and closing
            # may drain its input for a moment more: the arbiter must not take that for a
            # stuck worker (F8).
            self.notify()
            close_connection(client, req, clean)

    def wrap_client(self, client: Any) -> Any:
        """The socket requests are read from: TLS when gunicorn serves it itself (E7)."""
        if self.uwsgi.is_ssl:
            return gsock.ssl_wrap_socket(client, self.cfg)
        return client

    def response_socket(self, client: Any) -> Any:
        """The socket the response is written to (``Response.sock``)."""
        return client

    # -- the request ---------------------------------------------------------------------

    def count_request(self, n: int = 1) -> None:
        """``max_requests``: the worker stops after this many requests (G2)."""
        self.nr += n
        if self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False

    def notify(self) -> None:
        """Tells the arbiter the worker is alive, at most every ``notify_interval`` seconds:
        gunicorn's loop calls this once per accepted connection, and the heartbeat is a system
        call (G2)."""
        now = time.monotonic()
        if now - self._notified >= self._notify_interval:
            self._notified = now
            super().notify()  # type: ignore[misc]

    def serve(self, listener: Any, req: UWSGIRequest, client: Any, addr: Any) -> Any:
        """Runs the application for one request and writes its response (R, G3, G4).

        Returns the response; raises what the application raised, with ``resp`` attached."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            environ = make_environ(req, client, addr, self.sockname(listener), self.uwsgi)
            resp = Response(req, self.response_socket(client), self.cfg, self.uwsgi.sendfile)
            self.count_request()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                write_result(resp, respiter, environ["wsgi.file_wrapper"])
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                close = getattr(respiter, "close", None)
                if close is not None:
                    close()
            return resp
        except BaseException as e:
            e._uwsgi_response = resp  # type: ignore[attr-defined]
            e._uwsgi_environ = environ  # type: ignore[attr-defined]
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")


def failed(req: Any, client: Any, addr: Any, exc: BaseException) -> tuple[Any, ...]:
    """``app_error``'s arguments for a request the application failed: what ``serve``
    attached to the exception."""
    resp = getattr(exc, "_uwsgi_response", None)
    return req, client, addr, resp, getattr(exc, "_uwsgi_environ", None)


def peer_name(addr: Any) -> str:
    if isinstance(addr, tuple):
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return addr.decode() if isinstance(addr, bytes) else (addr or "unix socket")


#: Receive buffer of TCP connections from nginx (the kernel doubles it for its bookkeeping).
TCP_RECEIVE_BUFFER = 256 * 1024


def widen_receive_buffer(listener: Any, log: Any) -> None:
    """A receive buffer on a TCP listener (inherited by its connections) large enough for a
    request of a few hundred KiB in one window. With the default, a request over about 64 KiB
    waits for a window update, and nginx, which does not disable Nagle's algorithm towards
    its upstreams, then holds the last segment for the kernel's delayed acknowledgement:
    40 ms added to such requests. A larger buffer already set is kept."""
    try:
        if listener.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < 2 * TCP_RECEIVE_BUFFER:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TCP_RECEIVE_BUFFER)
    except OSError as e:  # pragma: no cover - platform dependent
        log.debug("cannot set the receive buffer: %s", e)


def close_connection(client: Any, req: UWSGIRequest | None, clean: bool) -> None:
    """Closes at once when every byte the peer sent was read; else half-closes and drains
    what is pending, so unread input does not turn the close into a reset that truncates or
    discards the response (F5, B2): the unread rest of the body the peer announced (nginx
    sends all of it before it reads the answer) and up to ``DRAIN_LIMIT`` more, for
    ``DRAIN_SECONDS`` at most."""
    if clean and req is not None and req.body.complete and not req.body.overflow:
        client.close()
        return
    try:
        client.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DRAIN_SECONDS
        drained = 0
        limit = DRAIN_LIMIT + (req.body.unread if req is not None else 0)
        client.settimeout(0.2)
        while drained < limit and time.monotonic() < deadline:
            chunk = client.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass
    finally:
        client.close()
