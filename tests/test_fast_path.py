"""The Rust request cycle (``_native.FastServer``) against the Python one, for every worker
class: the sync worker and each ThreadWorker thread accept and serve in it, the GeventWorker
serves in it what its first receive brought.

Both paths must put the same bytes on the wire for the same request (every behaviour of the
spec holds on both), and the fast path's own pieces — ``wsgi.input`` for a body that arrived
whole, ``gunicorn.socket`` — must behave like the Python path's.
"""

from __future__ import annotations

import json

import pytest

from gunicorn_uwsgi._native import BytesInput
from gunicorn_uwsgi.body import Body
from support import (
    GEVENT,
    WORKERS,
    Gunicorn,
    exchange,
    packet,
    request_packet,
    require_worker,
    vector,
    wait_until,
    worker_args,
    worker_id,
)

# Requests whose responses carry nothing that differs between two servers (no pid, no port).
REQUESTS = {
    "hello": request_packet(path="/hello"),
    "head": request_packet(method="HEAD", path="/hello"),
    "echo-body": request_packet(method="POST", path="/echo", body=b"a=1&b=2"),
    "lines": request_packet(method="POST", path="/lines", body=b"one\ntwo\n\nthree"),
    "stream": request_packet(path="/stream"),
    "no-content": request_packet(path="/nocontent"),
    "short": request_packet(path="/short"),
    "long": request_packet(path="/long"),
    "hop": request_packet(path="/hop"),
    "bytes": request_packet(path="/bytes"),
    "hints": request_packet(path="/hints"),
    "file": request_packet(path="/file"),
    "exc-info": request_packet(path="/exc-info"),
    "raise": request_packet(path="/raise"),
    "raise-late": request_packet(path="/raise-late"),
    "bad-header": request_packet(path="/badheader"),
    "not-found": request_packet(path="/caf\xc3\xa9"),
    "vector-post": vector("nginx-post-chunked.bin"),
    "protocol-error": packet([("REQUEST_METHOD", "GET"), ("CONTENT_LENGTH", "x")]),
    "no-method": packet([("PATH_INFO", "/hello")]),
}


@pytest.fixture(scope="module", params=WORKERS, ids=worker_id)
def servers(request, tmp_path_factory):
    worker = request.param
    require_worker(worker)
    args = worker_args(worker)
    name = worker_id(worker)
    fast = Gunicorn(tmp_path_factory.mktemp(f"fast-{name}"), tcp=False, worker=worker, args=args)
    slow = Gunicorn(
        tmp_path_factory.mktemp(f"slow-{name}"),
        tcp=False,
        worker=worker,
        args=args,
        env={"GUNICORN_UWSGI_FAST_PATH": "0"},
    )
    with fast, slow:
        yield fast, slow


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_r_e_x_fast_and_python_paths_write_the_same_bytes(servers, name):
    """R1-R7, E, X1, X2: the same request gets byte-identical answers from both paths."""
    fast, slow = servers
    data = REQUESTS[name]
    assert exchange(fast.unix, data) == exchange(slow.unix, data)


def test_e8_gunicorn_socket_works_on_both_paths(servers):
    """E8: ``gunicorn.socket`` answers ``fileno()`` and the other socket methods on both paths;
    the default configuration serves through the Rust cycle (its lazy ``Connection``, a gevent
    socket underneath in the GeventWorker), and ``GUNICORN_UWSGI_FAST_PATH=0`` gives the
    Python path's ``socket.socket``."""
    kinds = []
    for server in servers:
        raw = exchange(server.unix, request_packet(path="/socket"))
        body = json.loads(raw.partition(b"\r\n\r\n")[2])
        assert body["fileno"] > 2
        assert body["peer"] == ""  # an unnamed unix peer
        kinds.append(body["type"])
    assert kinds == ["Connection", "socket"]


def test_e8_closing_gunicorn_socket_never_sends_the_response_elsewhere(servers, tmp_path):
    """E8, R1: an application that closes ``gunicorn.socket`` and then opens a file (which may
    get the closed descriptor's number) never gets response bytes in that file. The Rust cycle
    gave the application a duplicate of the connection, so the response still reaches the
    client; on the Python path the write fails as on a closed socket, the client sees the
    connection closed.
    Either way the worker goes on serving."""
    fast, slow = servers
    for label, server, answered in (("fast", fast, True), ("slow", slow, False)):
        target = tmp_path / f"{label}.out"
        raw = exchange(server.unix, request_packet(path="/close-socket", query=str(target)))
        if answered:
            assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw
            assert raw.endswith(b"written after the close"), raw
        else:
            # The client sees the close at once; the write fails after the file is open.
            assert raw == b"", raw
            # The gevent socket says so itself.
            said = (
                "Bad file descriptor" if server.worker == GEVENT else "gunicorn.socket was closed"
            )
            assert wait_until(lambda log=server.log, said=said: said in log(), timeout=10)
        assert target.read_bytes() == b""
        assert exchange(server.unix, request_packet(path="/hello")).endswith(b"Hello world\n")


BODIES = [b"", b"x", b"line1\nline2\n", b"a\n\nb", b"no newline at all", b"\n" * 5]


@pytest.mark.parametrize("data", BODIES)
@pytest.mark.parametrize(
    "calls",
    [
        [("read",)],
        [("read", 3), ("read", -1)],
        [("read", None)],
        [("readline",), ("readline",), ("read",)],
        [("readline", 2), ("readline", 100)],
        [("readline", 0), ("read", 1)],
        [("readlines",)],
        [("readlines", 3)],
        [("iter",)],
    ],
)
def test_b1_b2_bytes_input_reads_like_body(data, calls):
    """B1, B2: the fast path's ``wsgi.input`` answers every read like ``Body``."""
    readers = [BytesInput(data), Body(None, data, len(data))]
    results = []
    for reader in readers:
        out = []
        for name, *args in calls:
            if name == "iter":
                out.append(list(reader))
            else:
                out.append(getattr(reader, name)(*args))
        out.append(reader.read())
        out.append(reader.read())
        results.append(out)
    assert results[0] == results[1]
    assert results[0][-1] == b""
