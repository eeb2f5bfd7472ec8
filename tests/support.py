"""Test support: uwsgi packets, a real gunicorn arbiter in a subprocess, a real nginx.

Servers bind only to 127.0.0.1, ::1 or unix sockets in the test's temporary folder, and are
stopped by PID at the end of each test.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Union

import pytest

TESTS = Path(__file__).resolve().parent
VECTORS = TESTS / "vectors"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

Address = Union[tuple, str]  # (host, port) for TCP, a path for a unix socket
Pair = tuple[Union[bytes, str], Union[bytes, str]]


#: The vars the server interprets itself: when one is repeated, the last one wins (V3).
CONTROL_VARS = [
    "REQUEST_METHOD",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "PATH_INFO",
    "SCRIPT_NAME",
    "QUERY_STRING",
    "REQUEST_URI",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "HTTPS",
    "UWSGI_SCHEME",
    "SERVER_PROTOCOL",
    "SERVER_NAME",
    "SERVER_PORT",
]


# -- packets ---------------------------------------------------------------------------------


def _b(v: bytes | str) -> bytes:
    return v if isinstance(v, bytes) else v.encode("latin-1")


def vars_block(pairs: Iterable[Pair]) -> bytes:
    out = bytearray()
    for k, v in pairs:
        k, v = _b(k), _b(v)
        out += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return bytes(out)


def header(modifier1: int, size: int, modifier2: int = 0) -> bytes:
    """A uwsgi header: modifier1, the vars size (u16 little-endian), modifier2 (F1)."""
    return struct.pack("<BHB", modifier1, size, modifier2)


def packet(
    pairs: Iterable[Pair], body: bytes = b"", modifier1: int = 0, modifier2: int = 0
) -> bytes:
    """A whole uwsgi stream: header, vars block, body."""
    block = vars_block(pairs)
    return header(modifier1, len(block), modifier2) + block + body


def raw_packet(block: bytes, body: bytes = b"", modifier1: int = 0) -> bytes:
    """A stream around any vars block, well formed or not, with its true size in the header."""
    return header(modifier1, len(block)) + block + body


def nginx_vars(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    content_type: str = "",
    **extra: str,
) -> list[Pair]:
    """The vars nginx sends with the stock ``uwsgi_params`` for such a request."""
    uri = path + ("?" + query if query else "")
    pairs: list[Pair] = [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", content_type),
        ("CONTENT_LENGTH", str(len(body)) if body else ""),
        ("REQUEST_URI", uri),
        ("PATH_INFO", path),
        ("DOCUMENT_ROOT", "/var/www/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "203.0.113.9"),
        ("REMOTE_PORT", "40000"),
        ("SERVER_PORT", "8080"),
        ("SERVER_NAME", "example.test"),
        ("HTTP_HOST", "example.test"),
    ]
    pairs += [("HTTP_" + name.upper().replace("-", "_"), value) for name, value in headers]
    pairs += list(extra.items())
    return pairs


def request_packet(**kw: Any) -> bytes:
    body = kw.get("body", b"")
    return packet(nginx_vars(**kw), body)


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


# -- raw exchanges ---------------------------------------------------------------------------


def connect(address: Address, timeout: float = 10.0, source: str | None = None) -> socket.socket:
    """A connected client socket; ``source`` is the local IP address to connect from (any
    loopback address: ``127.0.0.2``, ``::ffff:127.0.0.2``)."""
    if isinstance(address, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(address)
        return s
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if source is not None:
            s.bind((source, 0))
        s.connect(address)
    except BaseException:
        s.close()
        raise
    return s


def read_all(s: socket.socket) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def exchange(
    address: Address,
    data: bytes | Sequence[bytes],
    delay: float = 0.0,
    timeout: float = 10.0,
    shut_write: bool = False,
) -> bytes:
    """Sends ``data`` (one buffer, or segments with ``delay`` between them), returns all the
    bytes the server wrote until it closed."""
    with connect(address, timeout) as s:
        return send_and_read(s, data, delay, shut_write)


def send_and_read(
    s: socket.socket, data: bytes | Sequence[bytes], delay: float = 0.0, shut_write: bool = False
) -> bytes:
    """Sends ``data`` on a connected socket (segments ``delay`` apart), then reads to EOF."""
    if s.family != socket.AF_UNIX:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    segments = [data] if isinstance(data, bytes) else list(data)
    for i, seg in enumerate(segments):
        if i and delay:
            time.sleep(delay)
        s.sendall(seg)
    if shut_write:
        s.shutdown(socket.SHUT_WR)
    return read_all(s)


class Reply:
    """A parsed HTTP/1.x response as the server wrote it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        head, sep, self.body = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"no complete response head in {raw[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        version, code, *reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        self.status = int(code)
        self.reason = reason[0] if reason else ""
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name, value.strip()))

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_names(self) -> list[str]:
        return [k.lower() for k, _ in self.headers]

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Reply {self.status_line!r} {self.body[:80]!r}>"


def ask(address: Address, data: bytes | Sequence[bytes], **kw: Any) -> Reply:
    return Reply(exchange(address, data, **kw))


# -- ports -----------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# -- gunicorn --------------------------------------------------------------------------------

SYNC = "gunicorn_uwsgi.SyncWorker"
THREAD = "gunicorn_uwsgi.ThreadWorker"
GEVENT = "gunicorn_uwsgi.GeventWorker"
#: Every worker class: the end-to-end suites run once per class, so no behaviour can differ.
WORKERS = [SYNC, THREAD, GEVENT]
#: Threads of the ThreadWorker in the shared end-to-end servers.
THREADS = 4


def worker_id(worker: str) -> str:
    """``sync``, ``thread``, ``gevent``: the test id of a worker class."""
    return worker.rsplit(".", 1)[-1].removesuffix("Worker").lower()


def worker_args(worker: str) -> list[str]:
    """The gunicorn options a worker class is run with in the shared servers."""
    return ["--threads", str(THREADS)] if worker == THREAD else []


def require_worker(worker: str) -> None:
    """A worker class whose optional dependency is missing fails the test in CI and skips it
    elsewhere (gevent: ``pip install gunicorn-uwsgi-rs[gevent]``)."""
    if worker != GEVENT:
        return
    try:
        import gevent  # noqa: F401
    except ImportError:
        message = "gevent is not installed (pip install gevent)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def is_multithread(worker: str) -> bool:
    """``wsgi.multithread`` of a worker class (E8): True only in the threaded worker."""
    return worker == THREAD


def _gunicorn_has(setting: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS

    return any(s.name == setting for s in KNOWN_SETTINGS)


class Gunicorn:
    """A gunicorn arbiter in a subprocess, serving ``app`` from ``tests/apps``."""

    def __init__(
        self,
        tmp: Path,
        app: str = "apps.echo:app",
        worker: str = "gunicorn_uwsgi.SyncWorker",
        tcp: bool = True,
        unix: bool = True,
        ipv6: bool = False,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.worker = worker
        self.tcp = ("127.0.0.1", free_port()) if tcp else None
        self.tcp6 = ("::1", free_port("::1")) if ipv6 else None
        self.unix = str(tmp / f"gunicorn-{os.getpid()}-{id(self)}.sock") if unix else None
        self.log_path = tmp / "gunicorn.log"
        cmd = [sys.executable, "-m", "gunicorn", app, "--worker-class", worker]
        cmd += ["--workers", "1", "--log-level", "debug", "--error-logfile", str(self.log_path)]
        cmd += ["--pid", str(tmp / "gunicorn.pid"), "--graceful-timeout", "5"]
        if _gunicorn_has("control_socket_disable"):
            cmd += ["--no-control-socket"]
        if self.tcp:
            cmd += ["--bind", f"127.0.0.1:{self.tcp[1]}"]
        if self.tcp6:
            cmd += ["--bind", f"[::1]:{self.tcp6[1]}"]
        if self.unix:
            cmd += ["--bind", f"unix:{self.unix}"]
        cmd += list(args)
        self.cmd = cmd
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(TESTS), self.env.get("PYTHONPATH", "")])
        self.env.pop("SCRIPT_NAME", None)
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> Address:
        """The first bound address: TCP if any, else the unix socket."""
        return self.tcp or self.tcp6 or self.unix  # type: ignore[return-value]

    def addresses(self) -> list[Address]:
        return [a for a in (self.tcp, self.tcp6, self.unix) if a]

    def start(self, wait: bool = True) -> Gunicorn:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=str(TESTS),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=open(self.tmp / "gunicorn.stdout", "wb"),
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, workers: int = 1) -> None:
        ok = wait_until(
            lambda: self.proc.poll() is not None or len(self.worker_pids()) >= workers,
            timeout=30,
        )
        if self.proc.poll() is not None or not ok:
            raise AssertionError(f"gunicorn did not start:\n{self.output()}")
        for address in self.addresses():
            if not wait_until(lambda a=address: self._probe(a), timeout=15):
                raise AssertionError(f"gunicorn not listening on {address}:\n{self.output()}")
        # Other workers (there may be several) are booted once they log; give them a moment
        # to enter their loop.
        time.sleep(0.1)

    @staticmethod
    def _probe(address: Address) -> bool:
        """True once ``address`` accepts a connection and a worker has dealt with it: the probe
        sends nothing and waits for the close (or the 403 of a peer outside the allow list),
        so whatever the worker logs about it is written before the tests start."""
        try:
            s = connect(address, 1.0)
        except OSError:
            return False
        with s:
            try:
                s.shutdown(socket.SHUT_WR)
                s.settimeout(10.0)
                read_all(s)
            except OSError:
                pass  # listening; the worker is slow to answer
        return True

    @staticmethod
    def _connectable(address: Address) -> bool:
        try:
            with connect(address, 1.0):
                return True
        except OSError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self) -> str:
        try:
            stdout = (self.tmp / "gunicorn.stdout").read_text(errors="replace")
        except FileNotFoundError:
            stdout = ""
        return self.log() + stdout

    def worker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", self.log())]

    def live_worker_pids(self) -> list[int]:
        """Children of the arbiter that are alive now."""
        pids = []
        for pid in self.worker_pids():
            try:
                os.kill(pid, 0)
                pids.append(pid)
            except OSError:
                pass
        return pids

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def __enter__(self) -> Gunicorn:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# -- nginx -----------------------------------------------------------------------------------


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def require_nginx() -> str:
    """The nginx binary; a missing one fails the test in CI and skips it elsewhere."""
    binary = nginx_binary()
    if binary is None:
        message = "nginx is not installed (apt-get install nginx)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


def require_wrk() -> str:
    """The wrk binary (the load generator of tests/load.py); a missing one fails the test in
    CI and skips it elsewhere."""
    binary = shutil.which("wrk")
    if binary is None:
        message = "wrk is not installed (apt-get install wrk)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


STOCK_UWSGI_PARAMS = """\
uwsgi_param  QUERY_STRING       $query_string;
uwsgi_param  REQUEST_METHOD     $request_method;
uwsgi_param  CONTENT_TYPE       $content_type;
uwsgi_param  CONTENT_LENGTH     $content_length;

uwsgi_param  REQUEST_URI        $request_uri;
uwsgi_param  PATH_INFO          $document_uri;
uwsgi_param  DOCUMENT_ROOT      $document_root;
uwsgi_param  SERVER_PROTOCOL    $server_protocol;
uwsgi_param  REQUEST_SCHEME     $scheme;
uwsgi_param  HTTPS              $https if_not_empty;

uwsgi_param  REMOTE_ADDR        $remote_addr;
uwsgi_param  REMOTE_PORT        $remote_port;
uwsgi_param  SERVER_PORT        $server_port;
uwsgi_param  SERVER_NAME        $server_name;
"""


class Nginx:
    """A real nginx with its own prefix and config, listening on 127.0.0.1, in front of
    ``upstream`` (``host:port`` or ``unix:/path``) with ``uwsgi_pass`` and the stock
    ``uwsgi_params``. ``locations`` is extra config inside the ``server`` block."""

    def __init__(self, tmp: Path, upstream: str, locations: str = "", http_extra: str = "") -> None:
        self.binary = require_nginx()
        self.prefix = tmp / "nginx"
        for sub in ("logs", "tmp", "conf"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        params = Path("/etc/nginx/uwsgi_params")
        text = params.read_text() if params.exists() else STOCK_UWSGI_PARAMS
        (self.prefix / "conf" / "uwsgi_params").write_text(text)
        tmpdir = self.prefix / "tmp"
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf = self.prefix / "conf" / "nginx.conf"
        self.conf.write_text(
            f"""
{user}
worker_processes 1;
daemon off;
pid {self.prefix}/logs/nginx.pid;
error_log {self.prefix}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {self.prefix}/logs/access.log;
    client_body_temp_path {tmpdir}/body;
    proxy_temp_path {tmpdir}/proxy;
    fastcgi_temp_path {tmpdir}/fastcgi;
    uwsgi_temp_path {tmpdir}/uwsgi;
    scgi_temp_path {tmpdir}/scgi;
    client_max_body_size 64m;
    large_client_header_buffers 8 64k;
    {http_extra}
    server {{
        listen 127.0.0.1:{self.port};
        server_name localhost;
        {locations}
        location / {{
            uwsgi_pass {upstream};
            include uwsgi_params;
        }}
    }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.prefix / "logs" / "stderr.log", "wb"),
        )
        ok = wait_until(
            lambda: self.proc.poll() is not None or Gunicorn._connectable(("127.0.0.1", self.port))
        )
        if self.proc.poll() is not None or not ok:
            raise AssertionError(f"nginx did not start:\n{self.error_log()}")
        return self

    def error_log(self) -> str:
        out = ""
        for name in ("stderr.log", "error.log"):
            p = self.prefix / "logs" / name
            if p.exists():
                out += p.read_text(errors="replace")
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Nginx:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def raw(self, data: bytes, timeout: float = 30.0) -> bytes:
        """Sends raw bytes to nginx's HTTP port, returns what it answered until close."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            return read_all(s)
