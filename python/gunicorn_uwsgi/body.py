"""``wsgi.input``: the request body, framed by ``CONTENT_LENGTH`` (B1-B3).

The bytes that arrived with the head are served first; the rest is read from the socket only
when the application asks for it, and never past ``CONTENT_LENGTH``: whatever follows the body
on the connection is not read (F5).
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

from gunicorn_uwsgi.errors import ClientDisconnected, PeerTimeout

_CHUNK = 65536
_TIMEOUT_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK)


class WaitBudget:
    """The seconds a peer may keep the worker waiting for its bytes, the head and the body
    together (F8): a peer that trickles a byte now and then, never stalling a whole read
    timeout, is dropped all the same before gunicorn's arbiter would kill the worker.

    Only time spent blocked in ``recv`` counts, not the application's own work."""

    __slots__ = ("left", "timeout")

    def __init__(self, timeout: float, spent: float = 0.0) -> None:
        self.timeout = timeout
        self.left = timeout - spent

    def recv(self, sock: Any, size: int, what: str, bound: bool = True) -> bytes:
        """``sock.recv(size)``, blocking at most the seconds left. ``bound=False`` trusts the
        socket's own receive timeout (the full budget, inherited from the listener), which
        saves a system call on the first read."""
        if self.left <= 0:
            raise PeerTimeout(self.timeout, what)
        if bound:
            _set_recv_timeout(sock, self.left)
        start = time.monotonic()
        try:
            data: bytes = sock.recv(size)
            return data
        except BlockingIOError as e:
            if e.errno in _TIMEOUT_ERRNOS:
                raise PeerTimeout(self.timeout, what) from None
            raise
        except socket.timeout:
            raise PeerTimeout(self.timeout, what) from None
        finally:
            self.left -= time.monotonic() - start


def _set_recv_timeout(sock: Any, seconds: float) -> None:
    """SO_RCVTIMEO on a blocking socket; a socket in Python's timeout mode (gevent's) gets
    the seconds left as its timeout when they are fewer than it has."""
    gettimeout = getattr(sock, "gettimeout", None)
    if gettimeout is None:
        return
    current = gettimeout()
    if current is not None:
        if seconds < current:
            sock.settimeout(max(seconds, 0.001))
        return
    whole = int(seconds)
    micro = max(int((seconds - whole) * 1_000_000), 0 if whole else 1)  # 0 would mean never
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, micro))
    except OSError:  # pragma: no cover - not a real socket
        pass


class Body:
    """A file-like reader of exactly ``length`` body bytes."""

    __slots__ = ("_budget", "_buf", "_expected", "_left", "_pos", "_sock", "_timeout", "overflow")

    def __init__(
        self,
        sock: socket.socket | None,
        data: bytes,
        length: int,
        timeout: float = 0.0,
        budget: WaitBudget | None = None,
    ) -> None:
        #: Bytes past the body arrived with it (they are never parsed, F5).
        self.overflow = len(data) > length
        if self.overflow:
            data = data[:length]
        self._sock = sock
        self._buf = data
        self._pos = 0
        self._expected = length
        self._left = length - len(data)
        self._timeout = timeout
        self._budget = budget

    @property
    def complete(self) -> bool:
        """Whether every body byte has been taken off the connection."""
        return self._left == 0

    @property
    def unread(self) -> int:
        """Body bytes still on the connection: announced by ``CONTENT_LENGTH``, never read."""
        return self._left

    def _recv(self, want: int) -> bool:
        """Appends up to ``want`` (at least one) more body bytes to the buffer."""
        if self._left <= 0 or self._sock is None:
            return False
        if self._budget is None:
            self._budget = WaitBudget(self._timeout or 30.0)
        received = self._expected - self._left
        try:
            chunk = self._budget.recv(self._sock, min(self._left, max(want, _CHUNK)), "body bytes")
        except ConnectionResetError:
            # A reset is a departure too: the application sees the same error, with the counts.
            raise ClientDisconnected(received, self._expected, reset=True) from None
        if not chunk:
            raise ClientDisconnected(received, self._expected)
        if len(chunk) > self._left:  # a source that ignores the size asked for (B1, F5)
            chunk = chunk[: self._left]
            self.overflow = True
        self._left -= len(chunk)
        rest = self._buf[self._pos :]
        self._buf = rest + chunk if rest else chunk
        self._pos = 0
        return True

    def _available(self) -> int:
        return len(self._buf) - self._pos

    def _take(self, n: int) -> bytes:
        start = self._pos
        self._pos = start + n
        if start == 0 and n == len(self._buf):
            data = self._buf
            self._buf = b""
            self._pos = 0
            return data
        return self._buf[start : start + n]

    def read(self, size: int | None = -1) -> bytes:
        """Reads ``size`` bytes, or all that is left when ``size`` is None or negative."""
        if size is None or size < 0:
            parts = [self._take(self._available())]
            while self._left > 0:
                self._recv(self._left)
                parts.append(self._take(self._available()))
            return b"".join(parts)
        if not isinstance(size, int):
            raise TypeError("size must be an integer")
        while self._available() < size and self._left > 0:
            self._recv(size - self._available())
        return self._take(min(size, self._available()))

    def readline(self, size: int | None = -1) -> bytes:
        """Reads up to and including the next ``\\n``, at most ``size`` bytes."""
        limit = -1 if size is None else size
        if limit == 0:
            return b""
        scanned = self._pos
        while True:
            nl = self._buf.find(b"\n", scanned)
            avail = self._available()
            if nl >= 0:
                n = nl + 1 - self._pos
                return self._take(n if limit < 0 else min(n, limit))
            if 0 <= limit <= avail or self._left == 0:
                return self._take(avail if limit < 0 else min(avail, limit))
            scanned = len(self._buf)
            keep = self._pos
            self._recv(_CHUNK)
            scanned -= keep

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Reads lines until the end, or until ``hint`` bytes have been read."""
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line
