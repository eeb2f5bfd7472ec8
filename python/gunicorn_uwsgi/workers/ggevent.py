"""``gunicorn_uwsgi.GeventWorker``: gunicorn's gevent worker speaking uwsgi.

Needs gevent (``pip install gunicorn-uwsgi-rs[gevent]``); importing ``gunicorn_uwsgi`` does not.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from gunicorn.workers import ggevent

from gunicorn_uwsgi._native import SERVE_FAILED, SERVE_HANDOFF
from gunicorn_uwsgi.parser import RECV_SIZE
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


class GeventWorker(UWSGIWorkerMixin, ggevent.GeventWorker):
    """Many connections per process on gevent, like gunicorn's ``gevent`` worker.

    gunicorn's setup is kept: the monkey-patching, one ``StreamServer`` per listener with a
    pool of ``--worker-connections`` greenlets (a full pool stops accepting), the heartbeat,
    and the graceful stop on ``TERM`` (G2). Each connection's greenlet reads the head through
    the gevent socket into the same core as the other workers, runs the application and
    writes the response (F5); waiting for the peer yields to the other greenlets. TLS
    (``--certfile``) is done by the ``StreamServer``.
    """

    # Greenlets run the application concurrently but never in parallel threads: E8 keeps
    # wsgi.multithread True for the threaded worker only.
    multithread = False
    passthrough = (gevent.GreenletExit,)
    fast: Any = None

    def run(self) -> None:
        self.fast = self.fast_server()
        super().run()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """The greenlet of one connection (``StreamServer``'s handler): one receive through
        the gevent socket, then the request cycle the other workers run in Rust when those
        bytes are the whole request (the response goes out through the gevent socket, so a
        slow peer yields to the other greenlets); else, or with request hooks, an access log
        or TLS, the Python path."""
        # gevent sockets are non-blocking underneath: the read timeout (F8) is gevent's own.
        client.settimeout(self.uwsgi.timeout)
        fast = self.fast
        if fast is None or not self.uwsgi.allow.allows(addr):
            self.handle_connection(listener, client, addr)
            return
        started = time.monotonic()
        try:
            data = client.recv(RECV_SIZE)
        except OSError:
            data = b""  # the Python path meets the same error, or the spent budget (F8)
        if data:
            code, failure = fast.serve_received(
                client, addr, data, self.sockname(listener), self.response_socket(client), self
            )
            if code != SERVE_HANDOFF:
                self.count_request()
                if code == SERVE_FAILED:
                    exc, what = failure
                    self.request_failed(exc, addr, what)
                client.close()
                return
        self.handle_connection(listener, client, addr, data, time.monotonic() - started)

    def wrap_client(self, client: Any) -> Any:
        return client  # the StreamServer has wrapped it in TLS already, when configured

    def response_socket(self, client: Any) -> Any:
        return GreenSocketWriter(client, self.uwsgi.timeout)
