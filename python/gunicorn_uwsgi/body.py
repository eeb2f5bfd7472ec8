"""``wsgi.input``: the request body, framed by ``CONTENT_LENGTH`` (B1-B3).

The bytes that arrived with the head are served first; the rest is read from the socket only
when the application asks for it, and never past ``CONTENT_LENGTH``: whatever follows the body
on the connection is not read (F5).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

from gunicorn_uwsgi.errors import ClientDisconnected, PeerTimeout

_CHUNK = 65536
_TIMEOUT_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK)


class Body:
    """A file-like reader of exactly ``length`` body bytes."""

    __slots__ = ("_buf", "_expected", "_left", "_pos", "_sock", "_timeout", "overflow")

    def __init__(
        self, sock: socket.socket | None, data: bytes, length: int, timeout: float = 0.0
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

    @property
    def complete(self) -> bool:
        """Whether every body byte has been taken off the connection."""
        return self._left == 0

    def _recv(self, want: int) -> bool:
        """Appends up to ``want`` (at least one) more body bytes to the buffer."""
        if self._left <= 0 or self._sock is None:
            return False
        try:
            chunk = self._sock.recv(min(self._left, max(want, _CHUNK)))
        except BlockingIOError as e:
            if e.errno in _TIMEOUT_ERRNOS:
                raise PeerTimeout(self._timeout, "body bytes") from None
            raise
        except socket.timeout:
            raise PeerTimeout(self._timeout, "body bytes") from None
        if not chunk:
            raise ClientDisconnected(self._expected - self._left, self._expected)
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

    def drain(self, limit: int) -> bool:
        """Reads and drops up to ``limit`` unread body bytes; True if none are left."""
        self._buf = b""
        self._pos = 0
        while 0 < self._left <= limit:
            before = self._left
            self._recv(_CHUNK)
            limit -= before - self._left
            self._buf = b""
        return self._left == 0
