"""``gunicorn_uwsgi.SyncWorker``: gunicorn's sync worker speaking uwsgi."""

from __future__ import annotations

import errno
import logging
import os
import socket
from typing import Any

from gunicorn import glogging
from gunicorn.workers import sync

from gunicorn_uwsgi import _native
from gunicorn_uwsgi.errors import PeerTimeout
from gunicorn_uwsgi.workers.base import UWSGIWorkerMixin

# How a FastServer.serve batch ended (src/server.rs).
IDLE, FULL, CLOSED, HANDOFF, FAILED, STALLED = range(6)
#: Connections served in one call before gunicorn's loop runs again (heartbeat, parent check).
BATCH = 64


def _is_default(cfg: Any, hook: str) -> bool:
    setting = cfg.settings.get(hook)
    return setting is not None and getattr(cfg, hook) is setting.default


def _access_log_enabled(log: Any, cfg: Any) -> bool:
    """Whether gunicorn's logger does anything per request: an access log, or a logger class
    of its own (statsd's counts every request in ``access``)."""
    if type(log).access is not glogging.Logger.access:
        return True
    enabled = getattr(log, "access_log_enabled", None)
    if enabled is not None:
        return bool(enabled)
    return bool(
        cfg.accesslog
        or cfg.logconfig
        or getattr(cfg, "logconfig_dict", None)
        or getattr(cfg, "logconfig_json", None)
        or (cfg.syslog and not cfg.disable_redirect_access_to_syslog)
    )


class SyncWorker(UWSGIWorkerMixin, sync.SyncWorker):
    """One request at a time per process, like gunicorn's ``sync`` worker.

    Each accepted connection carries one uwsgi request (F5): allow check, one receive feeding
    the parser, the application, the response, close. When the worker runs no request hooks,
    no access log and no TLS, that whole cycle runs in Rust (``_native.FastServer``) and hands
    back to the Python path below any connection that needs more.
    """

    fast: Any = None
    _listener_info: dict[Any, tuple[int, int, Any]]

    def run(self) -> None:
        self.set_socket_timeouts()
        self._listener_info = {}
        self.fast = self.fast_server()
        super().run()

    def fast_server(self) -> Any:
        """The Rust request cycle, or None when the worker needs the Python one: request hooks
        of its own, an access log, or TLS. ``GUNICORN_UWSGI_FAST_PATH=0`` turns it off."""
        cfg, settings = self.cfg, self.uwsgi
        if (
            os.environ.get("GUNICORN_UWSGI_FAST_PATH", "1") == "0"
            or settings.is_ssl
            or not _is_default(cfg, "pre_request")
            or not _is_default(cfg, "post_request")
            or _access_log_enabled(self.log, cfg)
        ):
            return None
        # gunicorn's default pre_request hook logs "METHOD PATH" at debug level.
        debug = self.log.debug if self.log.error_log.isEnabledFor(logging.DEBUG) else None
        base = settings.base_environ
        return _native.FastServer(
            self.wsgi,
            settings.limits,
            settings.allow,
            settings.forwarded,
            base,
            socket.socket,
            base["wsgi.file_wrapper"],
            settings.script_name,
            settings.secure_headers or None,
            settings.sendfile,
            debug,
        )

    def accept(self, listener: Any) -> None:
        fast = self.fast
        if fast is None:
            # Accepted sockets are blocking, close-on-exec (PEP 446) and inherit the
            # listener's timeouts: no further system call is needed before reading.
            client, addr = listener.accept()
            self.handle(listener, client, addr)
            return
        # A batch: gunicorn's loop comes back between batches to beat the heartbeat.
        left = self.max_requests - self.nr
        outcome = fast.serve(*self.listener_info(listener), self, BATCH if left > BATCH else left)
        if fast.served:
            self.count_request(fast.served)
        if outcome == IDLE:
            if not fast.served:
                raise BlockingIOError(errno.EAGAIN, "no connection pending")
        elif outcome == HANDOFF:
            fd, addr, data = fast.take_handoff()
            client = socket.socket(listener.family, socket.SOCK_STREAM, 0, fd)
            self.handle(listener, client, addr, data, fast.waited)
        elif outcome == FAILED:
            self.count_request()
            exc, addr, what = fast.take_error()
            if isinstance(exc, OSError):
                self.connection_error(addr, exc)
            else:
                self.log.error("Error handling request %s", what, exc_info=exc)
        elif outcome == CLOSED:
            self.log.debug("uwsgi peer closed before sending a request")
        elif outcome == STALLED:
            addr = fast.take_peer()
            self.connection_error(addr, PeerTimeout(self.uwsgi.timeout, "request bytes"))

    def listener_info(self, listener: Any) -> tuple[int, int, Any]:
        """``(fileno, family, getsockname())`` of a listener, looked up once: gunicorn's socket
        wrappers answer these through ``__getattr__``."""
        try:
            return self._listener_info[listener]
        except KeyError:
            info = (listener.fileno(), listener.family, self.sockname(listener))
            self._listener_info[listener] = info
            return info

    def handle(
        self, listener: Any, client: Any, addr: Any, data: bytes = b"", waited: float = 0.0
    ) -> None:
        self.handle_connection(listener, client, addr, data, waited)
