"""Test application for the end-to-end protocol tests: ``/probe/...`` routes that look at what
``apps.echo`` does not show (the non-string environ keys, ``wsgi.input`` methods, bad responses,
``close()``); every other path is served by ``apps.echo``."""

from __future__ import annotations

import json
import os
import socket
import sys
from urllib.parse import unquote

from apps.echo import app as echo_app


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data, sort_keys=True).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


class _Closing:
    """An app iterable whose ``close()`` leaves a marker file (R7)."""

    def __init__(self, marker, fail):
        self.marker = marker
        self.fail = fail

    def __iter__(self):
        yield b"first "
        if self.fail:
            raise RuntimeError("iterable failed on purpose")
        yield b"second"

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def _body_ops(body, spec):
    """Runs ``read:3,readline:-1,...`` on ``wsgi.input``; returns what each call gave."""
    out = []
    for op in spec.split(","):
        name, _, arg = op.partition(":")
        if name == "readlines":
            out.append([line.decode("latin-1") for line in body.readlines()])
        elif name == "iter":
            out.append([line.decode("latin-1") for line in body])
        elif name == "readnone":
            out.append(body.read(None).decode("latin-1"))
        elif arg:
            out.append(getattr(body, name)(int(arg)).decode("latin-1"))
        else:
            out.append(getattr(body, name)().decode("latin-1"))
    return out


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if not path.startswith("/probe/"):
        return echo_app(environ, start_response)
    route = path[len("/probe/") :]
    query = unquote(environ.get("QUERY_STRING", ""))
    if route == "keys":
        return _json(
            start_response,
            {
                "wsgi.version": list(environ["wsgi.version"]),
                "wsgi.run_once": environ["wsgi.run_once"],
                "wsgi.multiprocess": environ["wsgi.multiprocess"],
                "wsgi.multithread": environ["wsgi.multithread"],
                "wsgi.input_terminated": environ["wsgi.input_terminated"],
                "wsgi.errors.write": callable(getattr(environ["wsgi.errors"], "write", None)),
                "wsgi.input.read": callable(getattr(environ["wsgi.input"], "read", None)),
                "wsgi.file_wrapper": callable(environ.get("wsgi.file_wrapper")),
                "wsgi.early_hints": repr(environ["wsgi.early_hints"]([("Link", "</x>")])),
                "gunicorn.socket.fileno": environ["gunicorn.socket"].fileno() >= 0,
                "SERVER_SOFTWARE": environ.get("SERVER_SOFTWARE"),
            },
        )
    if route == "socket":
        sock = environ["gunicorn.socket"]
        return _json(
            start_response,
            {
                "family": int(sock.family),
                "rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            },
        )
    if route == "body":
        return _json(start_response, _body_ops(environ["wsgi.input"], query))
    if route == "truncated":
        try:
            environ["wsgi.input"].read()
        except Exception as e:
            return _json(
                start_response,
                {"type": type(e).__name__, "oserror": isinstance(e, OSError), "msg": str(e)},
            )
        return _json(start_response, {"type": None})
    if route == "status":
        start_response(query, [("Content-Type", "text/plain")])
        return [b"never sent"]
    if route == "header-name":
        start_response("200 OK", [(query, "x")])
        return [b"never sent"]
    if route == "header-value":
        start_response("200 OK", [("X-Evil", query)])
        return [b"never sent"]
    if route == "hop-all":
        start_response(
            "200 OK",
            [
                ("Connection", "close"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("TE", "trailers"),
                ("Trailer", "X-Sum"),
                ("Upgrade", "websocket"),
                ("Proxy-Connection", "keep-alive"),
                ("X-Kept", "yes"),
            ],
        )
        return [b"hop-all"]
    if route == "status-body":
        start_response(query, [("Content-Length", "10")])
        return [b"0123456789"]
    if route in ("close", "close-fail"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Closing(query, route == "close-fail")
    if route == "twice":
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"never sent"]
    if route == "exc-late":
        write = start_response("200 OK", [])
        write(b"already sent")
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"never sent"]
    if route == "cwd":
        return _json(
            start_response,
            {
                "cwd": os.getcwd(),
                "FOO": os.environ.get("E2E_FOO"),
                "modules": "e2e_marker" in sys.modules,
            },
        )
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such probe"]


application = app
