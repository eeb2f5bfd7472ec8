"""``gunicorn_uwsgi.GeventWorker``: gunicorn's gevent worker speaking uwsgi.

Needs gevent (``pip install gunicorn-uwsgi-rs[gevent]``); importing ``gunicorn_uwsgi`` does not.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import Any

import gevent
from gevent.server import StreamServer
from gevent.socket import wait_read, wait_write
from gunicorn.workers import ggevent

from gunicorn_uwsgi._native import (
    ACCESS_LOG_FLUSH_AFTER,
    SERVE_CLOSED,
    SERVE_FAILED,
    SERVE_HANDOFF,
)
from gunicorn_uwsgi.workers.base import UWSGIWorkerMixin


class GreenSocketWriter:
    """The response side of a gevent socket, for ``Response``: the read timeout bounds each
    wait for the peer to take bytes (F8), not the whole response, as ``SO_SNDTIMEO`` does
    for the other workers (gevent's own ``sendall`` bounds the whole call)."""

    __slots__ = ("sock", "timeout")

    def __init__(self, sock: Any, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        send = self.sock.send
        timeout = self.timeout
        view = memoryview(data)
        while view:
            view = view[send(view, 0, timeout) :]

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        # gevent sends a file with send(), waiting at most the socket's timeout for each chunk.
        self.sock.settimeout(self.timeout)
        return int(self.sock.sendfile(file, offset, count))

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class RustStreamServer(StreamServer):
    """gevent's ``StreamServer`` for one listener, accepting in Rust: each connection's
    greenlet gets the non-blocking descriptor (no gevent socket is made unless the Python path
    needs one) and serves it in the Rust cycle. The pool, the full-pool pause, ``max_accept``,
    ``close`` and ``stop`` are gevent's."""

    def __init__(self, listener: Any, *, spawn: Any, worker: GeventWorker, **_: Any) -> None:
        super().__init__(listener, handle=partial(worker.serve_connection, listener), spawn=spawn)
        self.fast = worker.fast
        self.listener_fd = listener.fileno()
        self.listener_family = listener.family
        if worker.cfg.workers > 1:
            self.max_accept = 1  # leave the next connection to another worker process

    def do_read(self) -> Any:
        return self.fast.accept_green(self.listener_fd, self.listener_family)

    def do_close(self, *args: Any) -> None:
        pass  # a connection nobody served closes when it is dropped


class GeventWorker(UWSGIWorkerMixin, ggevent.GeventWorker):
    """Many connections per process on gevent, like gunicorn's ``gevent`` worker.

    gunicorn's setup is kept: the monkey-patching, one server per listener with a pool of
    ``--worker-connections`` greenlets (a full pool stops accepting), the heartbeat, and the
    graceful stop on ``TERM`` (G2). Each connection's greenlet runs the same Rust cycle as the
    other workers on the connection's non-blocking descriptor: waiting for the peer, either
    way, yields to the other greenlets. Connections the Rust cycle hands over, and every
    connection of a worker with request hooks, an access log or TLS (``--certfile``, done by
    gevent's ``StreamServer``), take the Python path through a gevent socket.
    """

    # Greenlets run the application concurrently but never in parallel threads: E8 keeps
    # wsgi.multithread True for the threaded worker only.
    multithread = False
    passthrough = (gevent.GreenletExit,)
    fast: Any = None

    def run(self) -> None:
        fast = self.fast = self.fast_server()
        if fast is None:
            super().run()
            return
        fast.cooperate(wait_read, wait_write, self.uwsgi.timeout)
        # gunicorn's run() makes each listener's server with server_class when it is set.
        self.server_class = partial(RustStreamServer, worker=self)
        flusher = gevent.spawn(self.flush_access_log, fast)
        try:
            super().run()
        finally:
            flusher.kill()
            fast.flush_access()

    def flush_access_log(self, fast: Any) -> None:
        """Writes the access lines the Rust cycle buffered, however quiet the worker is."""
        while True:
            gevent.sleep(ACCESS_LOG_FLUSH_AFTER)
            fast.flush_access()

    def serve_connection(self, listener: Any, conn: Any, addr: Any) -> None:
        """The greenlet of one connection accepted in Rust."""
        fast = self.fast
        code, extra = fast.serve_green(conn, self.sockname(listener), self)
        if code == SERVE_HANDOFF:
            fast.flush_access()  # the lines before it go first
            fd, data, waited = extra
            client = socket.socket(listener.family, socket.SOCK_STREAM, 0, fd)
            client.settimeout(self.uwsgi.timeout)
            self.handle_connection(listener, client, addr, data, waited)
        elif code == SERVE_CLOSED:
            self.log.debug("uwsgi peer closed before sending a request")
        else:
            if code == SERVE_FAILED:
                exc, what, counts = extra
                if counts:
                    self.count_request()
                self.request_failed(exc, addr, what)
            else:
                self.count_request()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """The greenlet of one connection of gevent's own ``StreamServer``: the Python path."""
        # gevent sockets are non-blocking underneath: the read timeout (F8) is gevent's own.
        client.settimeout(self.uwsgi.timeout)
        self.handle_connection(listener, client, addr)

    def wrap_client(self, client: Any) -> Any:
        return client  # the StreamServer has wrapped it in TLS already, when configured

    def response_socket(self, client: Any) -> Any:
        return GreenSocketWriter(client, self.uwsgi.timeout)
