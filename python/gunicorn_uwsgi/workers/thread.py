"""``gunicorn_uwsgi.ThreadWorker``: ``--threads`` requests at a time per process, like
gunicorn's ``gthread`` worker, speaking uwsgi."""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from typing import Any

from gunicorn.workers import base

from gunicorn_uwsgi.workers.base import BATCH, UWSGIWorkerMixin

_ACCEPT_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED)
#: What the main thread waits at most between two heartbeats.
TICK = 1.0
#: What a thread on the Python path waits at most for a connection before it looks at
#: ``alive`` again.
ACCEPT_WAIT = 0.05


class ThreadWorker(UWSGIWorkerMixin, base.Worker):
    """``--threads`` threads that each accept and serve one connection at a time: the head,
    the application, the response, close (F5); the main thread beats the heartbeat and takes
    the signals.

    Each thread runs the request cycle the sync worker runs: in Rust (``_native.FastServer``,
    one per thread) when the worker runs no request hooks, no access log and no TLS, waiting
    for connections and peer bytes without the GIL and holding it only for the parse, the
    environ and the application; else the Python path. A connection carries one request, so
    there is none of gthread's keep-alive machinery. A busy thread does not accept, so with
    every thread busy (``--worker-connections``, when lower than ``--threads``, caps the
    threads) a connection waits in the kernel's backlog, where another worker may take it,
    not in this worker.

    ``TERM`` stops accepting and waits up to ``graceful_timeout`` for the requests in flight;
    ``QUIT``/``INT`` exit at once (G2).
    """

    multithread = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Connections served at once: one per thread.
        self.max_busy = max(1, min(self.cfg.threads, self.cfg.worker_connections))
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- the main thread -------------------------------------------------------------------

    def run(self) -> None:
        self.set_socket_timeouts()
        for listener in self.sockets:
            listener.setblocking(False)
        self.access_log()  # made once, before the threads share it
        for i in range(self.max_busy):
            # Daemon threads: QUIT and INT must not wait for an application call to return.
            thread = threading.Thread(target=self.serve_thread, name=f"gunicorn_uwsgi-{i}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        try:
            while self.alive and any(t.is_alive() for t in self._threads):
                self.notify()
                self.wait_pipe(TICK)
                if not self.is_parent_alive():
                    self.alive = False
            self.finish_in_flight()
        finally:
            for listener in self.sockets:
                listener.close()

    def wait_pipe(self, timeout: float) -> None:
        """Waits on gunicorn's pipe (signals, and a thread saying the worker stops)."""
        try:
            ready, _, _ = select.select([self.PIPE[0]], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                os.read(self.PIPE[0], 4096)
            except (BlockingIOError, InterruptedError):
                pass

    def wake(self) -> None:
        try:
            os.write(self.PIPE[1], b".")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: the main thread is woken already

    def is_parent_alive(self) -> bool:
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return True

    def finish_in_flight(self) -> None:
        """After ``TERM``: the requests in flight finish, for ``graceful_timeout`` at most."""
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for thread in self._threads:
            while thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                    return
                self.notify()
                thread.join(min(TICK, left))

    # -- the threads -----------------------------------------------------------------------

    def serve_thread(self) -> None:
        """One thread: accept and serve until the worker stops. With one listener the Rust
        cycle waits for connections itself; with several, the thread waits for any of them."""
        fast = self.fast_server()
        listeners = list(self.sockets)
        try:
            while self.alive:
                try:
                    if fast is not None and len(listeners) == 1:
                        self.serve_fast(fast, listeners[0])
                        continue
                    for listener in self.ready(listeners):
                        if fast is not None:
                            self.serve_fast(fast, listener)
                        else:
                            self.accept_one(listener)
                except BaseException:
                    if not self.alive:
                        raise
                    self.log.exception("Error handling connection")
        finally:
            self.wake()

    def serve_fast(self, fast: Any, listener: Any) -> None:
        left = max(1, self.max_requests - self.nr)
        self.serve_batch(fast, listener, BATCH if left > BATCH else left)

    @staticmethod
    def ready(listeners: list[Any]) -> list[Any]:
        """The listeners with a connection pending, waiting (without the GIL) for
        ``ACCEPT_WAIT`` at most."""
        try:
            ready, _, _ = select.select(listeners, [], [], ACCEPT_WAIT)
        except InterruptedError:
            return []
        return ready

    def accept_one(self, listener: Any) -> None:
        """The Python path: takes one connection off ``listener`` and serves it."""
        try:
            # Blocking, close-on-exec, with the listener's timeouts: ready to read.
            client, addr = listener.accept()
        except OSError as e:
            if e.errno in _ACCEPT_AGAIN:
                return  # another thread or worker took it
            raise
        self.handle_connection(listener, client, addr)

    def count_request(self, n: int = 1) -> None:
        """``max_requests`` (G2), counted by the threads: ``nr`` must not lose increments.
        When the last request starts, the main thread is woken to stop at once."""
        with self._lock:
            super().count_request(n)
            stopping = not self.alive
        if stopping:
            self.wake()
