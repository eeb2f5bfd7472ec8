"""End to end: what the concurrent worker classes (``ThreadWorker``, ``GeventWorker``) add to
the behaviour every worker shares: requests served at once, bounded by ``--threads`` and
``--worker-connections``, a slow application or a stalled peer delaying no other request,
``TERM`` finishing every request in flight (G2), and no log noise per request (X1, X3).

The timing bounds are generous: they tell one wave of requests from two, not a fast server
from a slow one. One gunicorn per worker class, with one worker and 4 threads, behind one
nginx, is shared by the module; tests that stop their server or need other settings start
their own.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import LogMark, good_request

from support import (
    GEVENT,
    THREAD,
    THREADS,
    WORKERS,
    Gunicorn,
    Nginx,
    Reply,
    connect,
    exchange,
    is_multithread,
    request_packet,
    require_worker,
    worker_args,
    worker_id,
)

#: The worker classes that serve several requests at once.
CONCURRENT = [THREAD, GEVENT]
#: Seconds the application sleeps in the /sleep requests.
NAP = 0.3


@dataclass
class Proxied:
    worker: str
    gunicorn: Gunicorn
    nginx: Nginx


@pytest.fixture(scope="module", params=CONCURRENT, ids=worker_id)
def proxied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxied]:
    worker = request.param
    require_worker(worker)
    tmp = tmp_path_factory.mktemp(f"workers-{worker_id(worker)}")
    with Gunicorn(tmp, app="apps.echo:app", worker=worker, args=worker_args(worker)) as g:
        with Nginx(tmp, f"127.0.0.1:{g.tcp[1]}") as nginx:
            yield Proxied(worker, g, nginx)


def at_once(calls: list[Any]) -> tuple[float, list[Any]]:
    """Runs the calls in threads started together; (seconds until the last ended, results)."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return time.monotonic() - started, results


def nap_through(nginx: Nginx, seconds: float = NAP) -> Any:
    return lambda: nginx.request("GET", f"/sleep?{seconds}")


def nap_direct(address: Any, seconds: float = NAP) -> Any:
    return lambda: Reply(exchange(address, request_packet(path="/sleep", query=str(seconds))))


def test_g2_eight_slow_requests_through_nginx_in_waves(proxied: Proxied) -> None:
    """G2 (--threads): 8 requests to an application that sleeps 0.3 s, at once through nginx,
    take two waves on one ThreadWorker with 4 threads and one wave on one GeventWorker; the
    log has no traceback, error or warning for them (X1, X3)."""
    mark = LogMark(proxied.gunicorn)
    elapsed, results = at_once([nap_through(proxied.nginx) for _ in range(8)])
    assert [status for status, _, _ in results] == [200] * 8
    assert all(body == b"slept" for _, _, body in results)
    if proxied.worker == THREAD:
        assert 2 * NAP - 0.05 <= elapsed < 1.0, elapsed
    else:
        assert NAP - 0.05 <= elapsed < 2 * NAP, elapsed
    log = mark.new()
    assert "Traceback" not in log
    assert not mark.lines("ERROR") and not mark.lines("WARNING"), log


def test_g2_slow_application_delays_no_other_request(proxied: Proxied) -> None:
    """A request to a slow application does not delay one to a fast route meanwhile."""
    address = proxied.gunicorn.tcp
    done: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: done.update(slow=nap_direct(address, 1.5)()))
    slow.start()
    try:
        time.sleep(0.2)
        started = time.monotonic()
        good_request(address)
        assert time.monotonic() - started < 0.5
        assert "slow" not in done
    finally:
        slow.join(10)
    assert done["slow"].status == 200


def test_f8_stalled_peer_delays_no_other_request(proxied: Proxied) -> None:
    """F8/B2: while one connection waits for the rest of a head (a thread blocked in recv
    without the GIL, or a greenlet waiting on its socket), the others are served."""
    address = proxied.gunicorn.tcp
    data = request_packet(path="/hello")
    with connect(address, timeout=10) as stalled:
        stalled.sendall(data[:10])
        time.sleep(0.1)
        started = time.monotonic()
        for _ in range(3):
            good_request(address)
        assert time.monotonic() - started < 0.5
        stalled.sendall(data[10:])
        reply = Reply(stalled.recv(65536))
    assert reply.status == 200


@pytest.mark.parametrize("route", ["/big", "/bigfile"])
def test_f8_r5_peer_slow_to_read_a_large_response_delays_no_other_request(
    proxied: Proxied, route: str
) -> None:
    """F8, R5: while one peer leaves an 8 MiB response (from memory, and through sendfile)
    unread, its socket buffer full (a thread blocked in send without the GIL, or a greenlet
    waiting for the socket), other requests are served; then it gets every byte."""
    size = 8 << 20
    with connect(proxied.gunicorn.unix, timeout=10) as slow:
        slow.sendall(request_packet(path=route, query=str(size)))
        time.sleep(0.2)
        started = time.monotonic()
        for _ in range(3):
            good_request(proxied.gunicorn.unix)
        assert time.monotonic() - started < 0.5
        chunks = []
        while chunk := slow.recv(1 << 20):
            chunks.append(chunk)
    reply = Reply(b"".join(chunks))
    assert reply.status == 200
    assert len(reply.body) == size


def test_e8_multithread_only_in_the_threaded_worker(proxied: Proxied) -> None:
    """E8: wsgi.multithread is True in the ThreadWorker only (greenlets are not threads)."""
    status, _, body = proxied.nginx.request("GET", "/environ")
    assert status == 200
    expected = b"true" if is_multithread(proxied.worker) else b"false"
    assert b'"wsgi.multithread": ' + expected in body


@pytest.mark.parametrize("worker", CONCURRENT, ids=worker_id)
def test_g2_worker_connections_bounds_concurrency(tmp_path: Path, worker: str) -> None:
    """G2: --worker-connections 2 serves at most two requests at once, whatever --threads."""
    require_worker(worker)
    args = [*worker_args(worker), "--worker-connections", "2"]
    with Gunicorn(tmp_path, app="apps.echo:app", worker=worker, args=args) as g:
        elapsed, results = at_once([nap_direct(g.tcp) for _ in range(4)])
    assert [r.status for r in results] == [200] * 4
    assert 2 * NAP - 0.05 <= elapsed < 4 * NAP, elapsed


def test_g2_busy_thread_worker_leaves_connections_to_the_others(tmp_path: Path) -> None:
    """G2: a ThreadWorker stops accepting while all its threads are busy, so with two workers
    of 2 threads, 4 requests at once are served in one wave, by both workers."""
    args = ["--threads", "2", "--workers", "2"]
    g = Gunicorn(tmp_path, app="apps.echo:app", worker=THREAD, args=args)
    g.start(wait=False)
    try:
        g.wait_ready(workers=2)
        elapsed, results = at_once([nap_direct(g.tcp, 0.5) for _ in range(4)])
    finally:
        g.stop()
    assert [r.status for r in results] == [200] * 4
    assert len({r.header("X-Pid") for r in results}) == 2
    assert elapsed < 0.9, elapsed


@pytest.mark.parametrize("worker", CONCURRENT, ids=worker_id)
def test_g2_term_finishes_every_request_in_flight(tmp_path: Path, worker: str) -> None:
    """G2: TERM while THREADS requests are in flight: each gets its whole response, the worker
    exits cleanly and new connections are refused."""
    require_worker(worker)
    g = Gunicorn(tmp_path, app="apps.echo:app", worker=worker, args=worker_args(worker)).start()
    results: list[Any] = []
    try:
        clients = [
            threading.Thread(target=lambda: results.append(nap_direct(g.tcp, 1.0)()))
            for _ in range(THREADS)
        ]
        for t in clients:
            t.start()
        time.sleep(0.4)
        g.send(signal.SIGTERM)
        for t in clients:
            t.join(15)
        assert g.proc is not None and g.proc.wait(15) == 0
    finally:
        g.stop()
    assert [r.status for r in results] == [200] * THREADS
    assert all(r.body == b"slept" for r in results)
    assert "Traceback" not in g.log()


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_tcp_connections_get_a_receive_buffer_for_a_whole_request(
    tmp_path: Path, worker: str
) -> None:
    """TCP connections from nginx get a receive buffer large enough for a request of a few
    hundred KiB in one window (512 KiB as the kernel reports it: twice what is set), so that
    a 64 KiB upload does not wait on a window update; unix sockets keep theirs."""
    require_worker(worker)
    with Gunicorn(tmp_path, app="apps.e2e_probe:app", worker=worker) as server:
        packet = request_packet(path="/probe/socket")
        tcp = Reply(exchange(server.tcp, packet)).json()
        unix = Reply(exchange(server.unix, packet)).json()
    assert tcp["rcvbuf"] >= 512 * 1024, tcp
    assert unix["rcvbuf"] < 512 * 1024, unix


@pytest.mark.parametrize("fast", ["1", "0"], ids=["fast-path", "python-path"])
def test_g2_timeout_abort_is_not_an_application_error(tmp_path: Path, fast: str) -> None:
    """G2, X2: a request still running after ``--timeout`` ends with the worker, as in
    gunicorn: the arbiter aborts it and boots another; the exit raised in the application is
    not logged as an application error and gets no 500."""
    with Gunicorn(
        tmp_path, args=["--timeout", "2"], env={"GUNICORN_UWSGI_FAST_PATH": fast}
    ) as server:
        first = server.worker_pids()
        mark = LogMark(server)
        raw = exchange(server.tcp, request_packet(path="/sleep", query="30"), timeout=30)
        assert raw == b"", raw[:200]
        assert mark.wait_for(r"WORKER TIMEOUT|Worker \(pid:\d+\) was sent SIGKILL", timeout=20)
        server.wait_ready(workers=len(first) + 1)
        good_request(server.tcp)
        assert "Error handling request" not in mark.new(), mark.new()
