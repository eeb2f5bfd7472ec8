"""``python -m gunicorn_uwsgi.client`` against a real SyncWorker, over TCP and a unix socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from gunicorn_uwsgi.client import encode, request_vars, response_status
from support import free_port


def run_client(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gunicorn_uwsgi.client", *args],
        capture_output=True,
        timeout=30,
        input=stdin,
    )


def where(server, transport: str) -> list[str]:
    if transport == "unix":
        return ["--unix", server.unix]
    host, port = server.tcp
    return [f"{host}:{port}"]


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_client_get_prints_the_response(server, transport):
    proc = run_client(*where(server, transport), "/environ/caf%C3%A9?x=1", "-H", "X-Test: yes")
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    env = json.loads(body)
    assert env["PATH_INFO"] == "/environ/caf\xc3\xa9"  # decoded once, as nginx does (E2)
    assert env["REQUEST_URI"] == "/environ/caf%C3%A9?x=1"
    assert env["QUERY_STRING"] == "x=1"
    assert env["HTTP_X_TEST"] == "yes"
    assert env["REQUEST_METHOD"] == "GET"


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_client_post_sends_the_body(server, transport, tmp_path):
    proc = run_client(*where(server, transport), "/echo", "-d", "a=1&b=2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(b"\r\n\r\na=1&b=2")
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 100)
    proc = run_client(*where(server, transport), "/echo", "-X", "PUT", "-d", f"@{upload}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(upload.read_bytes())


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_client_exit_status_is_0_below_400(server, transport):
    """1xx-3xx: exit 0, as ``curl --fail`` does (a 204 here)."""
    proc = run_client(*where(server, transport), "/nocontent")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"HTTP/1.1 204 ")


@pytest.mark.parametrize(("target", "status"), [("/no-such-route", 404), ("/raise", 500)])
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_client_exit_status_is_22_from_400(server, transport, target, status):
    """A 4xx or 5xx response exits 22, curl ``--fail``'s status, so that a health check fails;
    the response is printed all the same, and stderr names the status."""
    proc = run_client(*where(server, transport), target)
    assert proc.returncode == 22, (proc.returncode, proc.stderr)
    assert proc.stdout.startswith(b"HTTP/1.1 %d " % status), proc.stdout[:200]
    assert b"\r\n\r\n" in proc.stdout
    assert b"answered %d" % status in proc.stderr


@pytest.fixture
def not_http() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers every connection with bytes that are not HTTP."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        listener.close()


def test_client_answer_that_is_not_http_exits_1(not_http):
    proc = run_client(f"127.0.0.1:{not_http}", "/health")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stdout == b"SSH-2.0-OpenSSH_9.2\r\n"
    assert b"no HTTP status line" in proc.stderr


def test_client_response_status():
    assert response_status(b"HTTP/1.1 200 OK\r\n\r\nbody") == 200
    assert response_status(b"HTTP/1.0 503 Service Unavailable\r\n\r\n") == 503
    assert response_status(b"HTTP/1.1 404\r\n\r\n") == 404
    # An interim response is passed over when another follows; 101 is final (a WebSocket).
    assert (
        response_status(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 500 X\r\n") == 500
    )
    assert response_status(b"HTTP/1.1 103 Early Hints\r\n\r\n") == 103
    assert response_status(b"HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 500 X") == 101
    assert response_status(b"") is None
    assert response_status(b"garbage") is None
    assert response_status(b"HTTP/1.1 2000 OK\r\n") is None


def test_client_connection_errors_exit_non_zero(tmp_path):
    proc = run_client(f"127.0.0.1:{free_port()}", "/")
    assert proc.returncode == 1
    assert b"uwsgi client" in proc.stderr
    proc = run_client("--unix", str(tmp_path / "missing.sock"), "/")
    assert proc.returncode == 1


def test_client_usage_errors_exit_2():
    assert run_client("127.0.0.1:1", "no-slash").returncode == 2
    assert run_client("nohostport", "/").returncode == 2
    assert run_client("127.0.0.1:1", "/", "-H", "no colon").returncode == 2


def test_client_encodes_what_nginx_sends():
    pairs = dict(request_vars("/a%20b?q=1", "POST", [("Content-Type", "text/plain")], b"xyz"))
    assert pairs[b"PATH_INFO"] == b"/a b"
    assert pairs[b"REQUEST_URI"] == b"/a%20b?q=1"
    assert pairs[b"CONTENT_LENGTH"] == b"3"
    assert pairs[b"CONTENT_TYPE"] == b"text/plain"
    assert b"HTTP_CONTENT_TYPE" not in pairs
    packet = encode([(b"K", b"v")], b"body")
    assert packet == b"\x00\x06\x00\x00\x01\x00K\x01\x00vbody"
    with pytest.raises(ValueError):
        encode([(b"K", b"v" * 70000)])
