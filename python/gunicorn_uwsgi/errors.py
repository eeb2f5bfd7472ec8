"""Exceptions of the uwsgi protocol layer.

Each carries ``.code``, the HTTP status that answers it. Where gunicorn has its own uwsgi error
classes (``gunicorn.uwsgi.errors``, gunicorn >= 24) ours subclass them, so ``except`` clauses
written for gunicorn keep working; on older gunicorn they derive from ``Exception``.
"""

from __future__ import annotations

import errno

try:  # gunicorn >= 24
    from gunicorn.uwsgi import errors as _gunicorn_uwsgi_errors
except ImportError:  # pragma: no cover - depends on the installed gunicorn
    _gunicorn_uwsgi_errors = None

from gunicorn.http import errors as _http_errors

from gunicorn_uwsgi._native import HEADER_SIZE
from gunicorn_uwsgi._native import reason as _reason


def _base(name: str, default: type) -> type:
    if _gunicorn_uwsgi_errors is None:
        return default
    return getattr(_gunicorn_uwsgi_errors, name, default)


class UWSGIError(_base("UWSGIParseException", Exception)):  # type: ignore[misc]
    """Base class of every protocol error: a refused uwsgi packet."""

    code = 400
    reason = _reason(400)

    def __init__(self, msg: str = "") -> None:
        self.msg = msg

    def __str__(self) -> str:
        return self.msg


class InvalidUWSGIHeader(UWSGIError, _base("InvalidUWSGIHeader", object)):  # type: ignore[misc]
    """Malformed framing or vars (F3, V2, V3, V5, V6): 400."""

    code = 400

    def __init__(self, msg: str = "") -> None:
        self.msg = msg
        self.code = 400


class ForeignProtocol(InvalidUWSGIHeader):
    """The front end sent HTTP or TLS to the uwsgi port (F7): 400."""


class UnsupportedModifier(UWSGIError, _base("UnsupportedModifier", object)):  # type: ignore[misc]
    """modifier1 other than 0 or 30 (F4): 501."""

    code = 501
    reason = _reason(501)

    def __init__(self, modifier: int) -> None:
        self.modifier = modifier
        self.msg = (
            f"unsupported uwsgi modifier1 {modifier} (only 0 and 30, WSGI requests, are served)"
        )
        self.code = 501


class ForbiddenUWSGIRequest(UWSGIError, _base("ForbiddenUWSGIRequest", object)):  # type: ignore[misc]
    """The peer is not in ``uwsgi_allow_ips`` (A4): 403."""

    code = 403
    reason = _reason(403)

    def __init__(self, host: str) -> None:
        self.host = host
        self.msg = (
            f"uwsgi request from {host!r} not allowed: add the front end's address to "
            "uwsgi_allow_ips (--uwsgi-allow-from)"
        )
        self.code = 403


class LimitRequestLine(UWSGIError):
    """``REQUEST_URI`` over ``limit_request_line`` (V4): 414."""

    code = 414
    reason = _reason(414)


class LimitRequestHeaders(UWSGIError):
    """Too many vars or header vars, or one too large (V4): 431."""

    code = 431
    reason = _reason(431)


class RequestBodyTooLarge(UWSGIError):
    """``CONTENT_LENGTH`` larger than any body that can be framed: 413."""

    code = 413
    reason = _reason(413)


class ClientDisconnected(ConnectionResetError):
    """The peer closed the connection before the whole body (B3), or the whole head, arrived;
    ``what`` names which, ``reset`` says the peer reset the connection rather than closing it."""

    def __init__(
        self, received: int, expected: int, what: str = "body", reset: bool = False
    ) -> None:
        how = " (connection reset)" if reset else ""
        super().__init__(
            errno.ECONNRESET,
            f"client disconnected{how}: {received} of {expected} {what} bytes received",
        )
        self.received = received
        self.expected = expected
        self.what = what
        self.reset = reset


class IncompleteHead(ClientDisconnected, InvalidUWSGIHeader):
    """The peer closed the connection inside the uwsgi header or the vars block.

    A ``ClientDisconnected`` (``what`` is ``"head"``; the workers log it at debug, X3) that is
    also an ``InvalidUWSGIHeader`` (``.code`` 400, ``.msg`` "incomplete header" or "incomplete
    vars block", as gunicorn's parser says): ``except InvalidUWSGIHeader`` written for
    gunicorn's parser catches it, and so does ``except ClientDisconnected``."""

    def __init__(self, received: int, expected: int, reset: bool = False) -> None:
        ClientDisconnected.__init__(self, received, expected, "head", reset)
        self.msg = "incomplete header" if received < HEADER_SIZE else "incomplete vars block"
        self.code = 400
        how = " (connection reset)" if reset else ""
        self.strerror = (
            f"client disconnected{how}: {self.msg}: {received} of {expected} head bytes received"
        )

    def __str__(self) -> str:
        return ConnectionResetError.__str__(self)


class PeerTimeout(TimeoutError):
    """The peer stalled while sending the head or the body (F8)."""

    def __init__(self, seconds: float, what: str) -> None:
        super().__init__(errno.ETIMEDOUT, f"peer sent no {what} for {seconds:g}s")
        self.seconds = seconds
        self.what = what


class ConfigurationProblem(_http_errors.ConfigurationProblem):
    """``PATH_INFO`` does not start with the ``SCRIPT_NAME`` environment variable (E3): 500."""

    code = 500
    reason = _reason(500)


_InvalidHeaderName = getattr(_http_errors, "InvalidResponseHeaderName", ValueError)
_InvalidHeader = getattr(_http_errors, "InvalidResponseHeader", ValueError)


class InvalidResponseHeaderName(_InvalidHeaderName):  # type: ignore[misc,valid-type]
    """The application sent a header name that is not a token (R1)."""

    def __init__(self, msg: str) -> None:
        self.msg = self.hdr = msg

    def __str__(self) -> str:
        return self.msg


class InvalidResponseHeader(_InvalidHeader):  # type: ignore[misc,valid-type]
    """The application sent a header value with CR, LF, NUL or another control character (R1)."""

    def __init__(self, msg: str) -> None:
        self.msg = self.hdr = msg

    def __str__(self) -> str:
        return self.msg


class InvalidResponseStatus(ValueError):
    """The application sent a malformed status or ``Content-Length`` (R1)."""


__all__ = [
    "ClientDisconnected",
    "ConfigurationProblem",
    "ForbiddenUWSGIRequest",
    "ForeignProtocol",
    "IncompleteHead",
    "InvalidResponseHeader",
    "InvalidResponseHeaderName",
    "InvalidResponseStatus",
    "InvalidUWSGIHeader",
    "LimitRequestHeaders",
    "LimitRequestLine",
    "PeerTimeout",
    "RequestBodyTooLarge",
    "UWSGIError",
    "UnsupportedModifier",
]
