"""``python -m gunicorn_uwsgi.client`` against a real SyncWorker, over TCP and a unix socket."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gunicorn_uwsgi.client import encode, request_vars
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
