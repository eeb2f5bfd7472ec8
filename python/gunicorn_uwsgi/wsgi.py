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
        settings.secure_headers_for(client),
        settings.is_ssl,
        server,
    )
    req.scheme = environ["wsgi.url_scheme"]
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
