"""``gunicorn_uwsgi.SyncWorker``: gunicorn's sync worker speaking uwsgi."""

from __future__ import annotations

import errno
from typing import Any

from gunicorn.workers import sync

from gunicorn_uwsgi.workers.base import BATCH, UWSGIWorkerMixin


class SyncWorker(UWSGIWorkerMixin, sync.SyncWorker):
    """One request at a time per process, like gunicorn's ``sync`` worker.

    Each accepted connection carries one uwsgi request (F5): allow check, one receive feeding
    the parser, the application, the response, close. When the worker runs no request hooks,
    no access log and no TLS, that whole cycle runs in Rust (``_native.FastServer``) and hands
    back to the Python path below any connection that needs more.
    """

    fast: Any = None

    def run(self) -> None:
        self.set_socket_timeouts()
        self.fast = self.fast_server()
        super().run()

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
        if not self.serve_batch(fast, listener, BATCH if left > BATCH else left):
            raise BlockingIOError(errno.EAGAIN, "no connection pending")

    def handle(
        self, listener: Any, client: Any, addr: Any, data: bytes = b"", waited: float = 0.0
    ) -> None:
        self.handle_connection(listener, client, addr, data, waited)
