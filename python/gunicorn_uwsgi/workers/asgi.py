"""``gunicorn_uwsgi.ASGIWorker``: ASGI 3 applications (FastAPI, Starlette, Django's ASGI
handler, Litestar, Quart) behind nginx ``uwsgi_pass``.

One asyncio event loop per worker process (uvloop when it is installed, gunicorn's
``asgi_loop`` setting): the loop watches the listeners and the connections; the Rust cycle
(``_native.ASGIServer``) accepts, parses, builds the scope, steps the application's
coroutine and writes the response. gunicorn keeps the arbiter, the settings, the signals and
the heartbeat. ``pip install gunicorn-uwsgi-rs[asgi]`` adds uvloop; the worker runs without.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from gunicorn.workers import base as gbase

from gunicorn_uwsgi import _native
from gunicorn_uwsgi.workers.base import UWSGIWorkerMixin, _access_log_enabled, _is_default

#: Seconds between two checks of the worker's state (heartbeat, parent, stop) at most.
TICK = 1.0
#: Seconds between keep-alive pings of an idle websocket: well inside nginx's default
#: ``uwsgi_read_timeout`` of 60 s (W5). ``GUNICORN_UWSGI_WEBSOCKET_PING`` changes it (0: none).
WEBSOCKET_PING = 20.0
#: gunicorn's default ``websocket_max_message_size``, where gunicorn lacks the setting.
WEBSOCKET_MAX_MESSAGE = 16 * 1024 * 1024


def new_event_loop(choice: str, log: Any) -> asyncio.AbstractEventLoop:
    """The worker's event loop by gunicorn's ``asgi_loop`` (``auto``: uvloop when it is
    installed, else asyncio's)."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                log.warning("asgi_loop is uvloop, but uvloop is not installed: using asyncio")
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


class LifespanFailed(Exception):
    """The application said its startup failed (``lifespan.startup.failed``)."""


class Lifespan:
    """The ASGI lifespan protocol (S5) for one worker process: ``startup()`` before the first
    connection is accepted, ``shutdown()`` after the last request of a graceful stop.
    ``mode`` is gunicorn's ``asgi_lifespan``: ``auto`` runs it when the application takes it
    (an application that raises at once does not), ``on`` insists, ``off`` never runs it."""

    def __init__(self, app: Any, log: Any, mode: str) -> None:
        self.app = app
        self.log = log
        self.mode = mode
        #: The state the application keeps; each request's scope gets a shallow copy.
        self.state: dict[str, Any] = {}
        self.supported = False
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def _receive(self) -> dict[str, Any]:
        return await self._events.get()

    async def _send(self, message: dict[str, Any]) -> None:
        await self._answers.put(message)

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as e:  # the application's own failure, reported by startup()
            self._error = e
        finally:
            await self._answers.put({"type": "lifespan.ended"})

    async def _exchange(self, event: str) -> dict[str, Any]:
        await self._events.put({"type": event})
        return await self._answers.get()

    async def startup(self) -> None:
        """Runs the application's startup; raises ``LifespanFailed`` when the worker must not
        serve (the application said so, or ``on`` and it does not take lifespan)."""
        if self.mode == "off":
            return
        self._task = asyncio.get_running_loop().create_task(self._run())
        answer = await self._exchange("lifespan.startup")
        kind = answer.get("type")
        if kind == "lifespan.startup.complete":
            self.supported = True
            return
        if kind == "lifespan.startup.failed":
            raise LifespanFailed(answer.get("message", "") or "lifespan.startup.failed")
        # The application ended (or raised) without answering: it does not take lifespan.
        if self.mode == "on":
            raise LifespanFailed(f"the application does not support lifespan: {self._error!r}")
        self.log.debug("ASGI lifespan not supported by the application: %r", self._error)

    async def shutdown(self) -> None:
        if not self.supported:
            return
        answer = await self._exchange("lifespan.shutdown")
        if answer.get("type") == "lifespan.shutdown.failed":
            self.log.error("ASGI lifespan shutdown failed: %s", answer.get("message", ""))
        if self._task is not None:
            await asyncio.wait([self._task], timeout=1.0)


class ASGIWorker(UWSGIWorkerMixin, gbase.Worker):
    """ASGI applications on one event loop per process, many connections at once
    (``--worker-connections`` bounds them: a full worker stops accepting), with lifespan
    (``asgi_lifespan``), uvloop (``asgi_loop``), ``asgi_disconnect_grace_period`` and
    ``root_path`` where the installed gunicorn has them, and gunicorn's graceful stop on
    ``TERM`` (S5, S6, G2). TLS is nginx's job: this worker does not serve it itself."""

    loop: asyncio.AbstractEventLoop
    server: Any = None
    lifespan: Lifespan | None = None
    _quick = False
    _wake: asyncio.Event | None = None
    #: Whether the Rust cycle buffers access lines, which the heartbeat writes out.
    flushes = False

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        super().check_config(cfg, log)
        if cfg.is_ssl:
            raise RuntimeError(
                "gunicorn_uwsgi.ASGIWorker does not serve TLS itself: terminate TLS in nginx "
                "and add `uwsgi_param HTTPS on;`"
            )
        if cfg.threads > 1:
            log.warning(
                "gunicorn_uwsgi.ASGIWorker does not use --threads; see --worker-connections"
            )

    def init_process(self) -> None:
        self.loop = new_event_loop(str(getattr(self.cfg, "asgi_loop", "auto")), self.log)
        asyncio.set_event_loop(self.loop)
        kind = "uvloop" if type(self.loop).__module__.startswith("uvloop") else "asyncio"
        self.log.info("ASGI event loop: %s", kind)
        super().init_process()

    def init_signals(self) -> None:
        super().init_signals()
        add = self.loop.add_signal_handler
        add(signal.SIGTERM, self._stop, False)
        add(signal.SIGQUIT, self._stop, True)
        add(signal.SIGINT, self._stop, True)
        add(signal.SIGUSR1, self.log.reopen_files)
        add(signal.SIGWINCH, lambda: None)
        add(signal.SIGABRT, self._abort)

    def _stop(self, quick: bool) -> None:
        if quick:
            self._quick = True
            if self.alive:
                self.cfg.worker_int(self)
        self.alive = False
        self.wake()

    def _abort(self) -> None:
        self.alive = False
        self.cfg.worker_abort(self)
        sys.exit(1)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def count_request(self, n: int = 1) -> None:
        super().count_request(n)
        if not self.alive:
            self.wake()

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self.serve_forever())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def native_server(self, state: dict[str, Any] | None) -> Any:
        """The Rust cycle, with gunicorn's access log (written by the cycle, or by gunicorn's
        logger for a logging set-up the cycle does not write itself) and the request hooks."""
        cfg = self.cfg
        root_path = str(getattr(cfg, "root_path", "") or self.uwsgi.native.script_name or "")
        server = _native.ASGIServer(
            self.wsgi,
            self.uwsgi.native,
            self.loop,
            self,
            root_path,
            state,
            self.uwsgi.timeout,
            float(getattr(cfg, "asgi_disconnect_grace_period", 3)),
            int(cfg.worker_connections),
            1 if cfg.workers > 1 else 64,
        )
        if _access_log_enabled(self.log, cfg):
            access = self.access_log()
            if access is not None:
                server.log_access(access)
                self.flushes = True
            else:
                server.log_access(None, self.log.access)
        ping = float(os.environ.get("GUNICORN_UWSGI_WEBSOCKET_PING", WEBSOCKET_PING))
        server.websocket(
            int(getattr(cfg, "websocket_max_message_size", WEBSOCKET_MAX_MESSAGE)), ping
        )
        pre = None if _is_default(cfg, "pre_request") else cfg.pre_request
        post = None if _is_default(cfg, "post_request") else cfg.post_request
        server.call_hooks(pre, post)
        return server

    async def serve_forever(self) -> None:
        from gunicorn.arbiter import Arbiter

        self._wake = asyncio.Event()
        lifespan = Lifespan(self.wsgi, self.log, str(getattr(self.cfg, "asgi_lifespan", "auto")))
        try:
            await lifespan.startup()
        except LifespanFailed as e:
            self.log.error("ASGI lifespan startup failed: %s", e)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        self.lifespan = lifespan
        server = self.server = self.native_server(lifespan.state if lifespan.supported else None)
        for listener in self.sockets:
            listener.setblocking(False)
            server.listen(listener.fileno(), self.sockname(listener))
        # The cycle tells the worker of its requests when max_requests is near (G2); the
        # heartbeat below catches up with the others.
        server.count_up_to(max(1, self.max_requests - self.nr))
        server.start()
        interval = min(TICK, self._notify_interval)
        if self.flushes:
            interval = min(interval, _native.ACCESS_LOG_FLUSH_AFTER)
        while self.alive:
            self.notify()
            if self.flushes:
                server.flush_access()
            served = server.take_uncounted()
            if served:
                self.count_request(served)
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except asyncio.TimeoutError:
                pass
        await self.stop_serving(server)

    async def stop_serving(self, server: Any) -> None:
        """Graceful stop: no new connections; the requests in flight get ``graceful_timeout``
        (QUIT and INT: none), then are cancelled; then lifespan's shutdown (S5, G2)."""
        server.close()
        loop = self.loop
        deadline = loop.time() + (0 if self._quick else self.cfg.graceful_timeout)
        while server.active and loop.time() < deadline and not self._quick:
            self.notify()
            await asyncio.sleep(0.05)
        if server.active:
            server.cancel_all()
            await asyncio.sleep(0.05)
        if self.lifespan is not None and not self._quick:
            try:
                await self.lifespan.shutdown()
            except Exception:
                self.log.exception("ASGI lifespan shutdown raised")
        server.flush_access()
