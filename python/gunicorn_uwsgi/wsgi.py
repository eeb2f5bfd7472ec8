"""The WSGI environ and the response writer (E, R rules).

``create(req, sock, client, server, cfg)`` returns ``(response, environ)`` like
``gunicorn.http.wsgi.create``.
"""

from __future__ import annotations

from typing import Any

from gunicorn_uwsgi import _native
from gunicorn_uwsgi.message import UWSGIRequest
from gunicorn_uwsgi.settings import ProtocolSettings, settings_for

#: Writes one response: ``HTTP/1.1`` status line, headers, body; never chunked (R1-R5).
#: ``Response(req, sock, cfg, sendfile=True)``, with ``start_response``, ``write``,
#: ``write_file``, ``close`` and gunicorn's response attributes (``status``, ``headers``,
#: ``sent``, ...).
Response = _native.Response


def make_environ(
    req: UWSGIRequest,
    sock: Any,
    client: Any,
    server: Any,
    settings: ProtocolSettings,
) -> dict[str, Any]:
    """The environ for ``req`` (E1-E8); sets ``req.scheme``."""
    environ: dict[str, Any] = req.environ(settings.native, sock, client, server)
    return environ


def create(
    req: UWSGIRequest,
    sock: Any,
    client: Any,
    server: Any,
    cfg: Any,
    settings: ProtocolSettings | None = None,
) -> tuple[Response, dict[str, Any]]:
    """``(response, environ)`` for a request, like ``gunicorn.http.wsgi.create``; ``settings``
    defaults to the ones compiled for ``cfg``."""
    if settings is None:
        settings = settings_for(cfg)
    environ: dict[str, Any] = req.environ(settings.native, sock, client, server)
    return Response(req, sock, None, settings.sendfile), environ
