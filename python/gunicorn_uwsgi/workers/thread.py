"""``gunicorn_uwsgi.ThreadWorker``: ``--threads`` requests at a time per process, like
gunicorn's ``gthread`` worker, speaking uwsgi."""

from __future__ import annotations

import errno
import os
import queue
import selectors
import threading
import time
from typing import Any

from gunicorn.workers import base

from gunicorn_uwsgi.workers.base import UWSGIWorkerMixin

_ACCEPT_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED)
#: What the main loop waits at most between two heartbeats.
TICK = 1.0


class ThreadWorker(UWSGIWorkerMixin, base.Worker):
    """A main loop that accepts and beats the heartbeat, and ``--threads`` threads that each
    serve one connection at a time: the head, the application, the response, close (F5).

    A connection carries one request, so there is none of gthread's keep-alive machinery:
    no poller registration per connection, no second read. Accepting stops while every
    thread is busy (or ``--worker-connections`` connections are open, when that is lower), so
    a connection waits in the kernel's backlog, where another worker may take it, not in this
    worker's queue. Threads wait for peer bytes in ``recv`` and for the peer to take the
    response in ``send`` without the GIL: the sockets stay blocking, with the read and send
    timeouts (F8) inherited from the listeners.

    ``TERM`` stops accepting and waits up to ``graceful_timeout`` for the requests in flight;
    ``QUIT``/``INT`` exit at once (G2).
    """

    multithread = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Connections served at once: accepting stops at this many.
        self.max_busy = max(1, min(self.cfg.threads, self.cfg.worker_connections))
        self.busy = 0
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Any, Any, Any] | None] = queue.SimpleQueue()
        self._accepting = False
        self.poller: selectors.BaseSelector | None = None

    # -- the main loop ---------------------------------------------------------------------

    def run(self) -> None:
        self.set_socket_timeouts()
        for listener in self.sockets:
            listener.setblocking(False)
        self.start_threads()
        self.poller = selectors.DefaultSelector()
        # gunicorn's pipe: signals (set_wakeup_fd) and the threads wake the loop through it.
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, None)
        try:
            while self.alive:
                self.notify()
                self.set_accepting(self.busy < self.max_busy)
                self.wait(TICK)
                if not self.is_parent_alive():
                    break
            self.set_accepting(False)
            self.finish_in_flight()
        finally:
            self.poller.close()
            for listener in self.sockets:
                listener.close()

    def start_threads(self) -> None:
        for i in range(self.cfg.threads):
            # Daemon threads: QUIT and INT must not wait for an application call to return.
            thread = threading.Thread(
                target=self.serve_jobs, name=f"gunicorn_uwsgi-{i}", daemon=True
            )
            thread.start()

    def is_parent_alive(self) -> bool:
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return True

    def set_accepting(self, enabled: bool) -> None:
        """Puts the listeners on the loop's poller, or takes them off it."""
        if enabled == self._accepting or self.poller is None:
            return
        for listener in self.sockets:
            if enabled:
                self.poller.register(listener, selectors.EVENT_READ, listener)
            else:
                self.poller.unregister(listener)
        self._accepting = enabled

    def wait(self, timeout: float) -> None:
        """Waits for a listener or the pipe, and accepts from the listeners that are ready."""
        assert self.poller is not None
        for key, _ in self.poller.select(timeout):
            if key.data is None:
                self.read_pipe()
            else:
                self.accept(key.data)

    def read_pipe(self) -> None:
        try:
            os.read(self.PIPE[0], 4096)
        except (BlockingIOError, InterruptedError):
            pass

    def wake(self) -> None:
        try:
            os.write(self.PIPE[1], b".")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: the loop is woken already

    def accept(self, listener: Any) -> None:
        """Takes one connection off ``listener`` and hands it to a free thread."""
        if self.busy >= self.max_busy:
            return  # another listener took the last free thread in this round of events
        try:
            # Blocking, close-on-exec, with the listener's timeouts: ready to read.
            client, addr = listener.accept()
        except OSError as e:
            if e.errno in _ACCEPT_AGAIN:
                return
            raise
        with self._lock:
            self.busy += 1
        self._jobs.put((listener, client, addr))

    def finish_in_flight(self) -> None:
        """After ``TERM``: the requests in flight finish, for ``graceful_timeout`` at most."""
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.busy > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                return
            self.notify()
            self.wait(min(TICK, left))

    # -- the threads -----------------------------------------------------------------------

    def serve_jobs(self) -> None:
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                return
            self.serve_job(*job)

    def serve_job(self, listener: Any, client: Any, addr: Any) -> None:
        try:
            self.handle_connection(listener, client, addr)
        except BaseException:
            self.log.exception("Error handling connection")
        finally:
            with self._lock:
                self.busy -= 1
                # The loop waits on the listeners alone unless accepting is paused or the
                # worker is stopping: only then does it need to learn a thread is free.
                wake = self.busy == self.max_busy - 1 or not self.alive
            if wake:
                self.wake()

    def count_request(self, n: int = 1) -> None:
        """``max_requests`` (G2), counted by the threads: ``nr`` must not lose increments.
        When the last request starts, the loop is woken to stop accepting at once."""
        with self._lock:
            super().count_request(n)
            stopping = not self.alive
        if stopping:
            self.wake()
