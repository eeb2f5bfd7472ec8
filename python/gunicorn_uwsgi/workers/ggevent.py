"""``gunicorn_uwsgi.GeventWorker``: gunicorn's gevent worker speaking uwsgi.

Needs gevent (``pip install gunicorn-uwsgi-rs[gevent]``); importing ``gunicorn_uwsgi`` does not.
"""

from __future__ import annotations

from typing import Any

import gevent
from gunicorn.workers import ggevent

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

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """The greenlet of one connection (``StreamServer``'s handler)."""
        # gevent sockets are non-blocking underneath: the read timeout (F8) is gevent's own.
        client.settimeout(self.uwsgi.timeout)
        self.handle_connection(listener, client, addr)

    def wrap_client(self, client: Any) -> Any:
        return client  # the StreamServer has wrapped it in TLS already, when configured

    def response_socket(self, client: Any) -> Any:
        return GreenSocketWriter(client, self.uwsgi.timeout)
