"""Faults through a real nginx in front of a real gunicorn, for every worker class: clients
that leave mid-body or mid-response, an application that raises, one that never reads its
body, one that streams until the peer leaves, and the process faults — a worker killed with
``SIGKILL`` under load, ``HUP`` under load, ``TERM`` with slow requests in flight.

The rule every test checks: no request accepted by a worker is lost or truncated silently.
A request either gets its whole, correct answer, or fails in a way the client sees (a 502 from
nginx, a response shorter than its ``Content-Length``); the worker notices a peer that left
and goes back to serving, with a debug line at most and no traceback.

The load is ``wrk`` with the mix of tests/load.py, every body checked. One gunicorn (one
worker, apps.load) and one nginx per worker class are shared by the tests that do not stop
their server; nginx has a second location, ``/unbuffered/``, with
``uwsgi_request_buffering off`` and ``uwsgi_buffering off``, so that bodies stream through it
as the client sends them and responses as the application writes them.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import LogMark
from load import (
    NGINX_HTTP,
    Wrk,
    access_log_directive,
    read_access_log,
    small_mix,
    standard_mix,
)

from apps.load import PIECE, blob
from support import (
    GEVENT,
    SYNC,
    THREAD,
    THREADS,
    WORKERS,
    Gunicorn,
    Nginx,
    Reply,
    connect,
    exchange,
    packet,
    request_packet,
    require_worker,
    wait_until,
    worker_args,
    worker_id,
)

#: Seconds of load in the tests that run wrk.
LOAD_SECONDS = 6
#: Connections wrk keeps open in those tests.
CONNECTIONS = 16


@dataclass
class Stack:
    worker: str
    tmp: Path
    gunicorn: Gunicorn
    nginx: Nginx
    access_log: Path
    counter: list[int] = field(default_factory=lambda: [0])

    def marker(self) -> Path:
        """A fresh path for the application to write what it saw."""
        self.counter[0] += 1
        return self.tmp / f"marker-{self.counter[0]}"


def _locations(upstream: str, access_log: Path) -> str:
    return f"""
        {access_log_directive(access_log)}
        location /unbuffered/ {{
            uwsgi_request_buffering off;
            uwsgi_buffering off;
            include uwsgi_params;
            uwsgi_pass {upstream};
        }}
    """


def start_nginx(tmp: Path, upstream: str) -> tuple[Nginx, Path]:
    access_log = tmp / "access.log"
    nginx = Nginx(
        tmp, upstream, locations=_locations(upstream, access_log), http_extra=NGINX_HTTP
    ).start()
    return nginx, access_log


@pytest.fixture(scope="module", params=WORKERS, ids=worker_id)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    worker = request.param
    require_worker(worker)
    tmp = tmp_path_factory.mktemp(f"faults-{worker_id(worker)}")
    with Gunicorn(tmp, app="apps.load:app", worker=worker, args=worker_args(worker)) as g:
        nginx, access_log = start_nginx(tmp, f"127.0.0.1:{g.tcp[1]}")
        try:
            yield Stack(worker, tmp, g, nginx, access_log)
        finally:
            nginx.stop()


def quiet(mark: LogMark, *allowed_errors: str) -> None:
    """No traceback, warning or error in the log since ``mark``, but for ERROR lines that
    contain one of ``allowed_errors``."""
    log = mark.new()
    errors = [
        line
        for line in mark.lines("ERROR")
        if not any(allowed in line for allowed in allowed_errors)
    ]
    assert not errors and not mark.lines("WARNING") and not mark.lines("CRITICAL"), log
    if not allowed_errors:
        assert "Traceback" not in log, log


def serves(stack: Stack) -> None:
    """The same worker still answers, through nginx and directly."""
    status, _, body = stack.nginx.request("GET", "/hello")
    assert (status, body) == (200, b"Hello world\n")
    reply = Reply(exchange(stack.gunicorn.tcp, request_packet(path="/hello")))
    assert reply.status == 200 and reply.body == b"Hello world\n"


def read_marker(path: Path, timeout: float = 15.0) -> str:
    assert wait_until(path.exists, timeout=timeout), f"{path} was never written"
    assert wait_until(lambda: path.read_text() != "", timeout=5)
    return path.read_text()


def assert_disconnect_seen(seen: str) -> None:
    """What the application's read of a body cut short raised (B3): the disconnect error
    with the counts, after an EOF or a reset alike; never a short body."""
    kind = seen.partition(":")[0]
    assert kind == "ClientDisconnected", seen
    assert "body bytes received" in seen, seen


def http_head(path: str, length: int, host: str = "t") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def hang_up(s: socket.socket, reset: bool) -> None:
    """Closes a client socket: a FIN, or a reset (``SO_LINGER`` 0) as a vanished client."""
    if reset:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


HANG_UPS = [pytest.param(False, id="fin"), pytest.param(True, id="reset")]


# -- clients that leave ------------------------------------------------------------------------


def abort_mid_body_through_nginx(stack: Stack, marker: Path, reset: bool) -> None:
    """A client that announces 8 MiB, sends 1 MiB through the streaming location and leaves."""
    with socket.create_connection(("127.0.0.1", stack.nginx.port), timeout=10) as s:
        s.sendall(http_head(f"/unbuffered/hash?{marker}", 8 << 20))
        s.sendall(os.urandom(1 << 20))
        time.sleep(0.5)  # nginx passes what it has; the application reads it
        hang_up(s, reset)


@pytest.mark.parametrize("reset", HANG_UPS)
def test_b3_client_leaves_mid_body_through_nginx(stack: Stack, reset: bool) -> None:
    """B3/X3: the client leaves after 1 MiB of an 8 MiB body that nginx streams to the
    application (``uwsgi_request_buffering off``): the application's read raises the
    disconnect error — it never gets a short body as if it were whole —, the worker logs it at
    debug level only and goes on serving."""
    pids = stack.gunicorn.live_worker_pids()
    mark = LogMark(stack.gunicorn)
    marker = stack.marker()
    abort_mid_body_through_nginx(stack, marker, reset)
    assert_disconnect_seen(read_marker(marker))
    mark.wait_for(r"\[DEBUG\].*went away")
    serves(stack)
    quiet(mark)
    assert stack.gunicorn.live_worker_pids() == pids


@pytest.mark.parametrize("reset", HANG_UPS)
def test_b3_raw_client_leaves_mid_body(stack: Stack, reset: bool) -> None:
    """B3/X3: the same straight on the uwsgi port: a packet announcing 8 MiB, 512 KiB of it,
    then a close or a reset."""
    pids = stack.gunicorn.live_worker_pids()
    mark = LogMark(stack.gunicorn)
    marker = stack.marker()
    data = packet(
        [
            ("REQUEST_METHOD", "POST"),
            ("PATH_INFO", "/hash"),
            ("QUERY_STRING", str(marker)),
            ("CONTENT_LENGTH", str(8 << 20)),
        ],
        os.urandom(512 << 10),
    )
    with connect(stack.gunicorn.tcp) as s:
        s.sendall(data)
        time.sleep(0.5)  # the worker reads what was sent
        hang_up(s, reset)
    assert_disconnect_seen(read_marker(marker))
    mark.wait_for(r"\[DEBUG\].*went away")
    serves(stack)
    quiet(mark)
    assert stack.gunicorn.live_worker_pids() == pids


def leave_endless_stream(stack: Stack, via: str, marker: Path, after: int = 1 << 20) -> None:
    """Reads ``after`` bytes of the endless ``/forever`` response, then leaves."""
    if via == "direct":
        s = connect(stack.gunicorn.tcp)
        s.sendall(request_packet(path="/forever", query=str(marker)))
    else:
        prefix = "/unbuffered" if via == "nginx-unbuffered" else ""
        s = socket.create_connection(("127.0.0.1", stack.nginx.port), timeout=10)
        s.sendall(f"GET {prefix}/forever?{marker} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    with s:
        got = 0
        while got < after:
            chunk = s.recv(65536)
            assert chunk, "the stream ended early"
            got += len(chunk)
        hang_up(s, reset=False)


@pytest.mark.parametrize("via", ["direct", "nginx", "nginx-unbuffered"])
def test_x3_endless_stream_ends_when_the_peer_leaves(stack: Stack, via: str) -> None:
    """X3/R7: an application that streams without end: once the client leaves (straight on
    the uwsgi port, or through nginx with and without ``uwsgi_buffering``), the worker's next
    write fails, it closes the application's iterable (its ``finally`` runs), logs one debug
    line and serves the next request; no traceback."""
    pids = stack.gunicorn.live_worker_pids()
    mark = LogMark(stack.gunicorn)
    marker = stack.marker()
    leave_endless_stream(stack, via, marker)
    pieces = int(read_marker(marker))
    assert pieces >= 16, pieces  # at least the 1 MiB the client read
    mark.wait_for(r"\[DEBUG\].*went away")
    serves(stack)
    quiet(mark)
    assert stack.gunicorn.live_worker_pids() == pids


# -- applications that misbehave ------------------------------------------------------------------


@pytest.mark.parametrize("location", ["/", "/unbuffered/"])
def test_b2_large_unread_body_still_gets_the_answer(stack: Stack, location: str) -> None:
    """B2/F5: an application that answers without reading a 16 MiB body: nginx still gets
    the answer. nginx writes the whole body before it reads the response, so the worker
    drains the unread rest of the announced body before closing (a close with unread bytes
    would reset the connection under nginx's feet: a 502 instead of the answer)."""
    pids = stack.gunicorn.live_worker_pids()
    mark = LogMark(stack.gunicorn)
    for _ in range(2):
        status, _, body = stack.nginx.request("POST", location + "noread", body=b"x" * (16 << 20))
        assert (status, body) == (200, b"not read\n")
    serves(stack)
    quiet(mark)
    assert stack.gunicorn.live_worker_pids() == pids


class Faults:
    """Injects faults through nginx and on the uwsgi port, in a loop, until stopped."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []
        self.markers: list[Path] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Faults:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the fault injection did not end"

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def _check(self, name: str, ok: bool, detail: Any) -> None:
        self._count(name)
        if not ok:
            self.failures.append(f"{name}: {detail!r}")

    def _run(self) -> None:
        stack = self.stack
        steps = ["raise", "noread", "mid-body", "endless", "raw-mid-body"]
        i = 0
        while not self._stop.is_set():
            step = steps[i % len(steps)]
            i += 1
            try:
                if step == "raise":
                    status, _, _ = stack.nginx.request("GET", "/raise")
                    self._check(step, status == 500, status)
                elif step == "noread":
                    status, _, body = stack.nginx.request("POST", "/noread", body=b"y" * (1 << 20))
                    self._check(step, (status, body) == (200, b"not read\n"), (status, body))
                elif step == "mid-body":
                    marker = stack.marker()
                    self.markers.append(marker)
                    abort_mid_body_through_nginx(stack, marker, reset=i % 2 == 0)
                    self._count(step)
                elif step == "endless":
                    leave_endless_stream(stack, "nginx", stack.marker(), after=256 << 10)
                    self._count(step)
                else:
                    marker = stack.marker()
                    self.markers.append(marker)
                    with connect(stack.gunicorn.tcp) as s:
                        s.sendall(
                            packet(
                                [
                                    ("REQUEST_METHOD", "POST"),
                                    ("PATH_INFO", "/hash"),
                                    ("QUERY_STRING", str(marker)),
                                    ("CONTENT_LENGTH", "100000"),
                                ],
                                b"z" * 1000,
                            )
                        )
                        time.sleep(0.05)
                        hang_up(s, reset=True)
                    self._count(step)
            except Exception as e:
                self.failures.append(f"{step}: {e!r}")
            time.sleep(0.05)


def test_faults_under_load_leave_other_requests_alone(stack: Stack) -> None:
    """X2/X3/B2/B3 under load: while wrk sends the checked mix, faults are injected in a
    loop — an application that raises (a 500), a 1 MiB body left unread, clients leaving
    mid-body and mid-response, a raw peer resetting mid-body. wrk sees only whole, correct
    200s and no socket error; the worker is never restarted; the log holds one ERROR with its
    traceback per ``/raise`` and nothing else above debug."""
    pids = stack.gunicorn.live_worker_pids()
    mark = LogMark(stack.gunicorn)
    url = f"http://127.0.0.1:{stack.nginx.port}"
    with Wrk(stack.tmp, url, standard_mix(), connections=CONNECTIONS) as wrk:
        wrk.start(LOAD_SECONDS)
        faults = Faults(stack).start()
        try:
            result = wrk.wait()
        finally:
            faults.stop()
    print(f"\n{worker_id(stack.worker)} faults {faults.counts}; load: {result.summary()}")
    result.assert_clean()
    assert not faults.failures, faults.failures
    assert all(faults.counts.get(s, 0) >= 1 for s in ("raise", "noread", "mid-body")), faults
    for marker in faults.markers:
        assert_disconnect_seen(read_marker(marker))
    serves(stack)
    errors = mark.lines("ERROR")
    assert len(errors) == faults.counts["raise"], mark.new()
    assert all("Error handling request GET /raise" in line for line in errors), errors
    assert mark.new().count("RuntimeError: raised on purpose") == faults.counts["raise"]
    quiet(mark, "GET /raise")
    assert stack.gunicorn.live_worker_pids() == pids


# -- process faults --------------------------------------------------------------------------------

#: Requests a worker of each class may have in flight through nginx at once: what a SIGKILL
#: of that worker may fail.
IN_FLIGHT = {SYNC: 1, THREAD: THREADS, GEVENT: CONNECTIONS}


def served_by_two(tmp: Path, worker: str, *extra: str) -> Gunicorn:
    g = Gunicorn(
        tmp,
        app="apps.load:app",
        worker=worker,
        args=[*worker_args(worker), "--workers", "2", "--log-level", "info", *extra],
    )
    g.start(wait=False)
    g.wait_ready(workers=2)
    return g


def load_two_workers(
    tmp: Path, g: Gunicorn, mix: Any, action: Callable[[], None]
) -> tuple[Any, Path]:
    """Loads ``g`` through nginx with ``mix`` for ``LOAD_SECONDS``, running ``action`` two
    seconds in; returns wrk's result and nginx's access log."""
    nginx, access_log = start_nginx(tmp, f"127.0.0.1:{g.tcp[1]}")
    try:
        with Wrk(tmp, f"http://127.0.0.1:{nginx.port}", mix, connections=CONNECTIONS) as wrk:
            wrk.start(LOAD_SECONDS)
            time.sleep(2)
            action()
            return wrk.wait(), access_log
    finally:
        nginx.stop()


def expected_sizes(mix: Any) -> dict[str, int]:
    return {call.tag: len(call.expect) for call in mix}


def check_access_log(path: Path, mix: Any, allowed: set[int]) -> dict[int, int]:
    """Every 200 nginx logged has the whole body for its request; other statuses are in
    ``allowed``, or 499 for the requests wrk leaves in flight when it stops (at most one per
    connection). Returns the count of each status."""
    sizes = expected_sizes(mix)
    statuses: dict[int, int] = {}
    for entry in read_access_log(path):
        statuses[entry.status] = statuses.get(entry.status, 0) + 1
        if entry.status == 200:
            assert entry.body_bytes == sizes[entry.tag], entry
        else:
            assert entry.status in allowed | {499}, entry
    assert statuses.get(499, 0) <= CONNECTIONS, statuses
    return statuses


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_g2_sigkill_of_a_worker_under_load(tmp_path: Path, worker: str) -> None:
    """G2: one of two workers is killed with SIGKILL under load; the arbiter boots another.
    Only the requests in flight on the killed worker may fail, and visibly: each is a 502
    from nginx, never a short or wrong 200 (wrk counts a response cut short as a read error,
    and nginx's log gives every 200 its whole size)."""
    require_worker(worker)
    g = served_by_two(tmp_path, worker)
    try:
        mix = small_mix()
        first: list[int] = []

        def kill_one() -> None:
            first.extend(g.live_worker_pids())
            os.kill(first[0], signal.SIGKILL)
            assert wait_until(
                lambda: len(g.live_worker_pids()) == 2 and first[0] not in g.live_worker_pids(),
                timeout=30,
            ), g.output()

        result, access_log = load_two_workers(tmp_path, g, mix, kill_one)
        victim = first[0]
        replaced = g.live_worker_pids()
        statuses = check_access_log(access_log, mix, allowed={502})
        print(f"\n{worker_id(worker)} SIGKILL under load: {result.summary()}; nginx {statuses}")
        assert result.errors == 0, result.summary()
        assert result.bad_bodies == 0, result.samples
        assert set(result.statuses) <= {200, 502}, result.statuses
        assert result.statuses.get(502, 0) <= IN_FLIGHT[worker], result.summary()
        assert result.statuses.get(200, 0) > 0
        assert victim not in replaced and len(replaced) == 2 and first[1] in replaced
        assert "Traceback" not in g.log()
    finally:
        g.stop()


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_g2_hup_under_load_loses_nothing(tmp_path: Path, worker: str) -> None:
    """G2: HUP under load: the arbiter boots new workers on the same listening socket and
    stops the old ones gracefully; every request gets its whole, correct 200, no socket
    error."""
    require_worker(worker)
    g = served_by_two(tmp_path, worker)
    try:
        mix = standard_mix()

        def reload() -> None:
            old = g.live_worker_pids()
            g.send(signal.SIGHUP)
            assert wait_until(
                lambda: (
                    len(g.live_worker_pids()) == 2 and set(g.live_worker_pids()).isdisjoint(old)
                ),
                timeout=30,
            ), g.output()

        result, access_log = load_two_workers(tmp_path, g, mix, reload)
        statuses = check_access_log(access_log, mix, allowed=set())
        print(f"\n{worker_id(worker)} HUP under load: {result.summary()}; nginx {statuses}")
        result.assert_clean()
        assert "Traceback" not in g.log()
    finally:
        g.stop()


#: How the TERM test is served: worker options, and the slow requests it keeps in flight.
TERM_SETUPS = {SYNC: (["--workers", "3"], 2), THREAD: ([], 3), GEVENT: ([], 3)}


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_g2_term_finishes_slow_requests_in_flight(tmp_path: Path, worker: str) -> None:
    """G2: TERM to the arbiter while slow responses are being written through nginx: each one
    that ends within ``graceful_timeout`` (3 s) arrives whole; one that would take longer is
    cut when the arbiter kills the worker, and the client sees it short of its
    Content-Length; a request sent after TERM is refused with a 502 from nginx, or served
    whole. The arbiter exits 0."""
    require_worker(worker)
    extra, finishing = TERM_SETUPS[worker]
    args = [*worker_args(worker), *extra, "--graceful-timeout", "3"]
    g = Gunicorn(tmp_path, app="apps.load:app", worker=worker, args=args)
    g.start(wait=False)
    try:
        g.wait_ready(workers=3 if worker == SYNC else 1)
        nginx, _ = start_nginx(tmp_path, f"127.0.0.1:{g.tcp[1]}")
        try:
            results: dict[int, Any] = {}
            started = threading.Barrier(finishing + 2, timeout=20)

            def fetch(i: int, pieces: int) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
                try:
                    conn.request("GET", f"/slow?{pieces},0.25")
                    resp = conn.getresponse()
                    started.wait()
                    try:
                        results[i] = (resp.status, resp.read())
                    except http.client.IncompleteRead as e:
                        results[i] = ("incomplete", len(e.partial))
                except Exception as e:
                    results[i] = ("error", repr(e))
                finally:
                    conn.close()

            # `finishing` responses of 6 pieces 0.25 s apart, one of 60 (15 s).
            threads = [threading.Thread(target=fetch, args=(i, 6)) for i in range(finishing)]
            threads.append(threading.Thread(target=fetch, args=(finishing, 60)))
            for t in threads:
                t.start()
            started.wait()  # every response has started
            g.send(signal.SIGTERM)
            term_sent = time.monotonic()
            time.sleep(0.1)
            late = nginx.request("GET", "/hello", timeout=30)
            for t in threads:
                t.join(30)
            assert g.proc is not None and g.proc.wait(30) == 0
            stopped_after = time.monotonic() - term_sent
        finally:
            nginx.stop()
        outcomes = {
            i: (r[0], len(r[1]) if isinstance(r[1], bytes) else r[1]) for i, r in results.items()
        }
        print(
            f"\n{worker_id(worker)} TERM: stopped after {stopped_after:.1f} s; "
            f"(status, bytes) of the slow requests {outcomes}; sent after TERM: {late[0]}"
        )
        whole = blob(PIECE) * 6
        for i in range(finishing):
            status, body = results[i]
            assert status == 200 and body == whole, (i, outcomes[i])
        assert results[finishing][0] in ("incomplete", "error"), outcomes[finishing]
        # A request sent after TERM is refused (nginx answers 502), or served whole by a
        # worker that has not stopped accepting yet (the gevent worker looks at its flag
        # once a second).
        assert late[0] == 502 or late[0::2] == (200, b"Hello world\n"), late
        assert "Traceback" not in g.log()
    finally:
        g.stop()
