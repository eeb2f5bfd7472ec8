"""The WSGI environ and the response writer (E, R rules).

``create(req, sock, client, server, cfg)`` returns ``(response, environ)`` like
``gunicorn.http.wsgi.create``.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any, Callable

from gunicorn_uwsgi import _native
from gunicorn_uwsgi.message import UWSGIRequest
from gunicorn_uwsgi.settings import ProtocolSettings, settings_for

log = logging.getLogger("gunicorn.error")

#: Responses up to this size are joined with their head into one write (R5).
SMALL_BODY = 65536

_response_head = _native.response_head


class Response:
    """Writes one response: ``HTTP/1.1`` status line, headers, body; never chunked (R1-R5)."""

    def __init__(self, req: UWSGIRequest, sock: Any, cfg: Any, sendfile: bool = True) -> None:
        self.req = req
        self.sock = sock
        self.cfg = cfg
        self.status: str | None = None
        self.status_code: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.response_length: int | None = None
        self.sent = 0
        self.chunked = False
        self.must_close = True
        self._head: bytes | None = None
        self._no_body = False
        self._warned_no_body = False
        self._sendfile = sendfile

    def force_close(self) -> None:
        self.must_close = True

    def should_close(self) -> bool:
        return True

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``; validates the status and headers at once (R1, R7)."""
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("Response headers already set!")
        head, code, length, no_body = _response_head(status, headers, self.req.method == "HEAD")
        self.status = status
        self.status_code = code
        self.headers = list(headers)
        self.response_length = length
        self._no_body = no_body
        self._head = head
        return self.write

    def _warn_no_body(self) -> None:
        if not self._warned_no_body:
            self._warned_no_body = True
            log.warning(
                "WSGI app sent body bytes on a response without a body (method=%s status=%s); "
                "dropped.",
                self.req.method,
                self.status_code,
            )

    def write(self, data: bytes) -> None:
        """Writes body bytes; the head goes out with the first non-empty chunk (R5)."""
        head = self._head
        if head is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"{data!r} is not a byte string")
            data = bytes(data)
        if not data:
            return
        if self._no_body:
            self._warn_no_body()
            return
        limit = self.response_length
        if limit is not None:
            left = limit - self.sent
            if left <= 0:
                return
            if len(data) > left:
                data = data[:left]
        if not self.headers_sent:
            self.headers_sent = True
            if len(data) <= SMALL_BODY:
                self.sock.sendall(head + data)
            else:
                self.sock.sendall(head)
                self.sock.sendall(data)
        else:
            self.sock.sendall(data)
        self.sent += len(data)

    def send_headers(self) -> None:
        if not self.headers_sent and self._head is not None:
            self.headers_sent = True
            self.sock.sendall(self._head)

    def write_file(self, respiter: Any) -> None:
        """``wsgi.file_wrapper``: ``sendfile`` when the object has a real descriptor (R5)."""
        if not self._sendfile_file(respiter):
            for item in respiter:
                self.write(item)

    def _sendfile_file(self, respiter: Any) -> bool:
        filelike = getattr(respiter, "filelike", None)
        if not self._sendfile or self._head is None or filelike is None:
            return False
        try:
            fileno = filelike.fileno()
            offset = os.lseek(fileno, 0, os.SEEK_CUR)
            size = os.fstat(fileno).st_size - offset
        except (AttributeError, OSError, io.UnsupportedOperation):
            return False
        if self._no_body:
            self.send_headers()
            if size > 0:
                self._warn_no_body()
            return True
        if self.response_length is not None:
            size = min(size, self.response_length - self.sent)
        self.send_headers()
        if size > 0:
            sent = self.sock.sendfile(filelike, offset=offset, count=size)
            self.sent += sent or 0
        return True

    def close(self) -> None:
        """Ends the response: sends the head if nothing was written, checks the length (R3)."""
        if not self.headers_sent:
            self.send_headers()
        if (
            self.response_length is not None
            and not self._no_body
            and self.sent < self.response_length
        ):
            log.warning(
                "WSGI app declared Content-Length %d but sent %d bytes; closing the connection.",
                self.response_length,
                self.sent,
            )


def _server_fallback(environ: dict[str, Any], server: Any, scheme: str) -> None:
    """SERVER_NAME/SERVER_PORT when nginx did not send them, as gunicorn does for HTTP (E5):
    the listening address, or on a unix socket the Host header, else the socket path."""
    if isinstance(server, tuple):
        name, port = str(server[0]), str(server[1])
    else:
        host = environ.get("HTTP_HOST", "")
        name, sep, port = host.rpartition(":")
        if not host:
            name = server.decode() if isinstance(server, bytes) else str(server or "")
            port = ""
        elif not sep or "]" in port:
            name, port = host, "443" if scheme == "https" else "80"
    environ.setdefault("SERVER_NAME", name)
    environ.setdefault("SERVER_PORT", port)


def make_environ(
    req: UWSGIRequest,
    sock: Any,
    client: Any,
    server: Any,
    settings: ProtocolSettings,
) -> dict[str, Any]:
    """The environ for ``req`` (E1-E8)."""
    if isinstance(client, tuple):
        peer_addr, peer_port = str(client[0]), str(client[1])
    else:
        peer_addr, peer_port = "", ""
    environ = req.head.environ(
        settings.base_environ,
        req.body,
        sock,
        peer_addr,
        peer_port,
        settings.script_name,
        settings.secure_headers_for(client) if settings.secure_headers else None,
        settings.is_ssl,
    )
    req.scheme = environ["wsgi.url_scheme"]
    if "SERVER_NAME" not in environ or "SERVER_PORT" not in environ:
        _server_fallback(environ, server, req.scheme)
    return environ


def create(
    req: UWSGIRequest,
    sock: Any,
    client: Any,
    server: Any,
    cfg: Any,
    settings: ProtocolSettings | None = None,
) -> tuple[Response, dict[str, Any]]:
    """``(response, environ)`` for a request, like ``gunicorn.http.wsgi.create``."""
    if settings is None:
        settings = settings_for(cfg)
    environ = make_environ(req, sock, client, server, settings)
    return Response(req, sock, cfg, settings.sendfile), environ
