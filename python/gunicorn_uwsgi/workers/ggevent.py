"""``gunicorn_uwsgi.GeventWorker``: gunicorn's gevent worker speaking uwsgi.

Needs gevent (``pip install gunicorn-uwsgi-rs[gevent]``); importing ``gunicorn_uwsgi`` does not.
"""

from __future__ import annotations

import socket
import time
from functools import partial
from typing import Any

import gevent
from gevent.socket import wait_read, wait_write
from greenlet import getcurrent, greenlet
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


class Slots:
    """The connections a ``RustServer`` serves at once, bounded by ``--worker-connections``:
    ``size`` and ``free_count()``, what gunicorn's graceful stop asks of a server's pool."""

    __slots__ = ("free", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size

    def free_count(self) -> int:
        return self.free


class RustServer:
    """One listener of the GeventWorker, accepting in Rust: a watcher on the listener wakes the
    hub, which accepts what is pending (``FastServer.accept_green``: a non-blocking descriptor,
    no gevent socket) and runs each connection in a greenlet of its own, at most
    ``--worker-connections`` at once (accepting pauses while all are busy). Each greenlet
    serves its connection in the Rust cycle and waits for the peer through gevent. What
    gunicorn's run loop asks of a server: ``start``, ``close`` (stop accepting), ``pool``
    (``size``, ``free_count()``) and ``stop`` (end the connections still running)."""

    def __init__(self, listener: Any, *, spawn: Any, worker: GeventWorker, **_: Any) -> None:
        self.listener = listener
        self.worker = worker
        self.fast = worker.fast
        self.pool = Slots(spawn.size if spawn.size is not None else 1 << 30)
        self.hub = gevent.get_hub()
        self.fd = listener.fileno()
        self.family = listener.family
        self.watcher = self.hub.loop.io(self.fd, 1)
        # Several worker processes: one connection per wake-up, the next left to another.
        self.max_accept = 1 if worker.cfg.workers > 1 else 100
        self.running: set[Any] = set()
        self.closed = False

    def start(self) -> None:
        self.watcher.start(self.accept)

    def accept(self) -> None:
        """In the hub: starts a greenlet for each pending connection, while slots are free."""
        pool, accept_green = self.pool, self.fast.accept_green
        for _ in range(self.max_accept):
            if pool.free <= 0:
                self.watcher.stop()  # started again when a connection ends
                return
            accepted = accept_green(self.fd, self.family)
            if accepted is None:
                return
            pool.free -= 1
            child = greenlet(self.run, parent=self.hub)
            self.running.add(child)
            child.switch(*accepted)

    def run(self, conn: Any, addr: Any) -> None:
        try:
            self.worker.serve_connection(self.listener, conn, addr)
        except gevent.GreenletExit:
            pass
        except BaseException:  # a failure no handler caught: the worker goes on
            self.worker.log.exception("Error serving a uwsgi connection")
        finally:
            self.running.discard(getcurrent())
            self.pool.free += 1
            if self.pool.free == 1 and not self.closed:
                self.watcher.start(self.accept)

    def close(self) -> None:
        self.closed = True
        self.watcher.stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stops accepting and ends the connections still running (``GreenletExit``)."""
        self.close()
        for child in list(self.running):
            gevent.kill(child, block=False)
        deadline = time.monotonic() + (timeout or 0)
        while self.running and time.monotonic() < deadline:
            gevent.sleep(0.01)


class GeventWorker(UWSGIWorkerMixin, ggevent.GeventWorker):
    """Many connections per process on gevent, like gunicorn's ``gevent`` worker.

    gunicorn's setup is kept: the monkey-patching, its run loop with one server per listener
    (here a ``RustServer``) bounded by ``--worker-connections`` (a full worker stops
    accepting), the heartbeat, and the graceful stop on ``TERM`` (G2). Each connection's
    greenlet runs the same Rust cycle as the other workers on the connection's non-blocking
    descriptor: waiting for the peer, either way, yields to the other greenlets. Connections
    the Rust cycle hands over take the Python path through a gevent socket; with TLS
    (``--certfile``) gunicorn's own ``StreamServer`` and the Python path serve them all.
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
        self.server_class = partial(RustServer, worker=self)
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
