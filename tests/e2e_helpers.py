"""Helpers of the end-to-end protocol tests (tests/test_e2e_*.py, tests/test_hostile.py): raw
exchanges that also report the client's own address (so the log line naming the peer can be
checked), slow peers, log watching, the malformed packets several suites send, and the checks
every refused packet must pass (X1)."""

from __future__ import annotations

import os
import re
import select
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from support import (
    Address,
    Gunicorn,
    Reply,
    connect,
    ipv6_available,
    read_all,
    request_packet,
    send_and_read,
    vars_block,
)

PROBE_APP = "apps.e2e_probe:app"

TRANSPORTS = [
    "tcp4",
    pytest.param("tcp6", marks=pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")),
    "unix",
]


# -- malformed packets ----------------------------------------------------------------------


def var(key: bytes, value: bytes) -> bytes:
    """One var of a vars block, as the protocol encodes it (F3)."""
    return vars_block([(key, value)])


GOOD_BLOCK = var(b"REQUEST_METHOD", b"GET") + var(b"PATH_INFO", b"/hello")

#: Vars blocks that break F3, each sent with its true size in the header: 400.
F3_BAD_BLOCKS = {
    "zero_length_key": GOOD_BLOCK + var(b"", b"value"),
    "zero_length_key_first": var(b"", b"") + GOOD_BLOCK,
    "key_overruns_block": GOOD_BLOCK + struct.pack("<H", 50) + b"KEY",
    "value_overruns_block": GOOD_BLOCK
    + struct.pack("<H", 3)
    + b"KEY"
    + struct.pack("<H", 60)
    + b"v",
    "missing_value_size": GOOD_BLOCK + struct.pack("<H", 3) + b"KEY",
    "one_stray_byte": GOOD_BLOCK + b"\x01",
    "stray_trailing_bytes": GOOD_BLOCK + b"\x01\x00",
}

#: HTTP and TLS sent to the uwsgi port (F7): 400 at once.
F7_FOREIGN = {
    "http_get": b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n",
    "http_post_partial": b"POST /submit HTTP/1.1\r\n",
    "http_method_only": b"PUT ",
    "http2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "tls_client_hello": bytes.fromhex("16030100a5010000a10303") + os.urandom(32),
}

#: A var name that is not printable ASCII without spaces, or a request or HTTP_* value with
#: CR, LF or NUL (V2): 400.
V2_BAD = {
    "key_with_space": (b"BAD KEY", b"x"),
    "key_with_control": (b"K\x01", b"x"),
    "key_with_del": (b"K\x7f", b"x"),
    "key_with_high_byte": (b"K\xe9", b"x"),
    "key_with_tab": (b"K\tY", b"x"),
    "http_value_cr_lf": (b"HTTP_X_A", b"a\r\nSet-Cookie: x=1"),
    "http_value_lf": (b"HTTP_X_A", b"a\nb"),
    "http_value_nul": (b"HTTP_X_A", b"a\x00b"),
    "path_info_lf": (b"PATH_INFO", b"/a\nb"),
    "request_uri_cr": (b"REQUEST_URI", b"/a\rb"),
    "query_string_nul": (b"QUERY_STRING", b"a=\x00"),
    "remote_addr_lf": (b"REMOTE_ADDR", b"1.2.3.4\n"),
}

#: CONTENT_LENGTH values that are not 1-19 ASCII digits (V5): 400.
V5_BAD = [
    "+5",
    "-1",
    " 5",
    "5 ",
    "0x10",
    "1_0",
    "5.0",
    "1e3",
    "\uff15",
    "12345678901234567890",
    "five",
]


# -- raw exchanges --------------------------------------------------------------------------


def address_of(server: Gunicorn, transport: str) -> Address:
    address = {"tcp4": server.tcp, "tcp6": server.tcp6, "unix": server.unix}[transport]
    assert address is not None, f"{transport} is not bound"
    return address


def peer_label(address: Address, local: Any) -> str:
    """How the server names this client in its log lines."""
    if isinstance(address, str):
        return "unix socket"
    host, port = local[0], local[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def talk(
    address: Address,
    data: bytes | Sequence[bytes],
    delay: float = 0.0,
    timeout: float = 10.0,
    shut_write: bool = False,
    source: str | None = None,
) -> tuple[bytes, str]:
    """Like ``support.exchange`` (from the local address ``source``, if given) but also returns
    the server's name for this peer."""
    with connect(address, timeout, source) as s:
        label = peer_label(address, s.getsockname())
        return send_and_read(s, data, delay, shut_write), label


def trickle(
    address: Address,
    segments: Sequence[bytes],
    interval: float,
    timeout: float = 15.0,
    wait: float = 0.0,
    stubborn: bool = False,
) -> tuple[bytes, str, float]:
    """A slow peer: connects, waits ``wait`` seconds, then sends ``segments`` ``interval``
    seconds apart, stopping as soon as the server answers or closes (``stubborn``: only once
    the connection is reset, sending on while the server drains it). Returns what the server
    wrote, its name for the peer, and the seconds from the first segment to the server's
    close."""
    with connect(address, timeout) as s:
        label = peer_label(address, s.getsockname())
        time.sleep(wait)
        started = time.monotonic()
        for i, segment in enumerate(segments):
            if i and stubborn:
                time.sleep(interval)
            # The socket turns readable when the server answers or closes.
            elif i and select.select([s], [], [], interval)[0]:
                break
            try:
                s.sendall(segment)
            except (BrokenPipeError, ConnectionResetError):
                break
        raw = read_all(s)
        return raw, label, time.monotonic() - started


# -- the server's side ----------------------------------------------------------------------


class LogMark:
    """The part of the server's error log written after this mark."""

    def __init__(self, server: Gunicorn) -> None:
        self.server = server
        self.offset = len(server.log())

    def new(self) -> str:
        return self.server.log()[self.offset :]

    def lines(self, level: str | None = None) -> list[str]:
        out = self.new().splitlines()
        return [line for line in out if f"[{level}]" in line] if level else out

    def wait_for(self, pattern: str, timeout: float = 10.0) -> str:
        """The first new line matching ``pattern`` (a regex), waiting for it to appear."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if re.search(pattern, line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {pattern!r} in:\n{self.new()}")
            time.sleep(0.02)


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (``VmRSS`` in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def good_request(address: Address) -> None:
    """The server still serves a normal request."""
    reply = Reply(talk(address, request_packet(path="/hello"))[0])
    assert reply.status == 200, reply
    assert reply.body == b"Hello world\n"


def assert_handled(
    server: Gunicorn,
    address: Address,
    data: bytes | Sequence[bytes],
    status: int | None,
    *reasons: str,
    warns: bool = True,
    serves: Address | None = None,
    pace: float | None = None,
    **kw: Any,
) -> tuple[bytes, str | None]:
    """What the server does with one hostile exchange: ``data`` is answered with ``status``
    (None: the connection is closed with nothing written); exactly one WARNING line names the
    peer and every one of ``reasons`` (no WARNING at all when ``warns`` is false); no
    traceback, no ERROR, no worker timeout; the same worker then serves a good request (on
    ``serves``, by default ``address``).

    With ``pace`` the segments of ``data`` go out that many seconds apart until the server
    closes (``trickle``), else at once (``talk``); ``kw`` goes to either. Returns the bytes
    answered and the warning line."""
    pids = server.live_worker_pids()
    assert pids, server.output()
    mark = LogMark(server)
    if pace is not None:
        assert not isinstance(data, bytes)
        raw, peer, _ = trickle(address, data, pace, **kw)
    else:
        raw, peer = talk(address, data, **kw)
    if status is None:
        assert raw == b"", raw[:200]
    else:
        assert Reply(raw).status == status, Reply(raw)
    line = None
    if warns:
        line = mark.wait_for(r"\[WARNING\].*" + re.escape(peer))
        if status is not None:
            assert f"({status} " in line, line
        for reason in reasons:
            assert reason in line, f"{reason!r} not in {line!r}"
    good_request(serves or address)
    assert len(mark.lines("WARNING")) == (1 if warns else 0), mark.new()
    assert "Traceback" not in mark.new()
    assert not mark.lines("ERROR") and not mark.lines("CRITICAL"), mark.new()
    assert server.live_worker_pids() == pids
    return raw, line


def assert_refused(
    server: Gunicorn,
    address: Address,
    data: bytes | Sequence[bytes],
    status: int,
    *reasons: str,
    **kw: Any,
) -> tuple[Reply, str]:
    """X1: ``data`` is answered with ``status``, a plain short response with Content-Length;
    one WARNING line names the peer and every one of ``reasons``; no traceback; the same
    worker then serves a good request (``assert_handled``)."""
    raw, line = assert_handled(server, address, data, status, *reasons, **kw)
    reply = Reply(raw)
    assert reply.header("Content-Length") == str(len(reply.body)), reply.headers
    assert (reply.header("Content-Type") or "").startswith("text/plain"), reply.headers
    assert line is not None
    return reply, line


def magic_uwsgi_vars(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The uWSGI server's magic vars (V7), pointing at a module and a script in ``tmp_path``
    that would write the returned marker file if anything imported or ran them."""
    marker = tmp_path / "executed"
    (tmp_path / "e2e_marker.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    script = tmp_path / "script.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('run')\n")
    return marker, {
        "UWSGI_SCRIPT": "e2e_marker",
        "UWSGI_MODULE": "e2e_marker",
        "UWSGI_CALLABLE": "app",
        "UWSGI_FILE": str(script),
        "UWSGI_CHDIR": str(tmp_path),
        "UWSGI_PYHOME": str(tmp_path),
        "UWSGI_PYTHONPATH": str(tmp_path),
        "UWSGI_SETENV": "E2E_FOO=pwned",
        "UWSGI_APPID": "other",
        "UWSGI_TOUCH_RELOAD": str(script),
    }
