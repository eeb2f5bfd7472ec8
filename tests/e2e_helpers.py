"""Helpers of the end-to-end protocol tests (tests/test_e2e_*.py): raw exchanges that also
report the client's own address (so the log line naming the peer can be checked), log
watching, and the checks every refused packet must pass (X1)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import pytest

from support import (
    Address,
    Gunicorn,
    Reply,
    connect,
    ipv6_available,
    request_packet,
    send_and_read,
)

PROBE_APP = "apps.e2e_probe:app"

TRANSPORTS = [
    "tcp4",
    pytest.param("tcp6", marks=pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")),
    "unix",
]


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
) -> tuple[bytes, str]:
    """Like ``support.exchange`` but also returns the server's name for this peer."""
    with connect(address, timeout) as s:
        label = peer_label(address, s.getsockname())
        return send_and_read(s, data, delay, shut_write), label


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


def good_request(address: Address) -> None:
    """The server still serves a normal request."""
    reply = Reply(talk(address, request_packet(path="/hello"))[0])
    assert reply.status == 200, reply
    assert reply.body == b"Hello world\n"


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
    worker then serves a good request."""
    pids = server.live_worker_pids()
    assert pids, server.output()
    mark = LogMark(server)
    raw, peer = talk(address, data, **kw)
    reply = Reply(raw)
    assert reply.status == status, reply
    assert reply.header("Content-Length") == str(len(reply.body)), reply.headers
    assert (reply.header("Content-Type") or "").startswith("text/plain"), reply.headers
    line = mark.wait_for(r"\[WARNING\].*" + re.escape(peer))
    assert f"({status} " in line, line
    for reason in reasons:
        assert reason in line, f"{reason!r} not in {line!r}"
    good_request(address)
    assert len(mark.lines("WARNING")) == 1, mark.new()
    assert "Traceback" not in mark.new()
    assert not mark.lines("ERROR"), mark.new()
    assert server.live_worker_pids() == pids
    return reply, line
