"""Test application: routes that exercise the protocol layer from the application's side."""

from __future__ import annotations

import json
import os
import tempfile
import time

_SKIP = ("wsgi.", "gunicorn.")


def _environ_json(environ):
    return {k: v for k, v in environ.items() if isinstance(v, str) and not k.startswith(_SKIP)} | {
        "wsgi.url_scheme": environ["wsgi.url_scheme"],
        "wsgi.multithread": environ["wsgi.multithread"],
        "wsgi.multiprocess": environ["wsgi.multiprocess"],
        "wsgi.input_terminated": environ["wsgi.input_terminated"],
        "wsgi.early_hints": callable(environ.get("wsgi.early_hints")),
        "pid": os.getpid(),
    }


def app(environ, start_response):
    path = environ["PATH_INFO"]
    route = path.rsplit("/", 1)[-1] if path.startswith("/cap/") else path
    if path == "/hello" or path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
        return [b"Hello world\n"]
    if path.startswith("/environ") or path.startswith("/hello/"):
        body = json.dumps(_environ_json(environ), sort_keys=True).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if route == "echo" or path == "/echo":
        body = environ["wsgi.input"].read()
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("X-Length", str(len(body)))]
        )
        return [body]
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        body = json.dumps([len(line) for line in lines]).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/noread":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"not read\n"]
    if path == "/big":
        size = int(environ.get("QUERY_STRING") or 1048576)
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        return [b"x" * size]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"chunk %d\n" % i for i in range(5))
    if path == "/nocontent":
        start_response("204 No Content", [("Content-Length", "5")])
        return [b"never"]
    if path == "/short":
        start_response("200 OK", [("Content-Length", "100")])
        return [b"only this"]
    if path == "/long":
        start_response("200 OK", [("Content-Length", "4")])
        return [b"0123456789"]
    if path == "/hop":
        start_response(
            "200 OK",
            [
                ("Connection", "keep-alive"),
                ("Transfer-Encoding", "chunked"),
                ("Keep-Alive", "timeout=5"),
                ("Upgrade", "h2c"),
                ("X-Kept", "yes"),
            ],
        )
        return [b"hop"]
    if path == "/badheader":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
        return [b"never"]
    if path == "/raise":
        raise RuntimeError("boom from the test app")
    if path == "/raise-late":

        def gen():
            yield b"partial"
            raise RuntimeError("late boom")

        start_response("200 OK", [])
        return gen()
    if path == "/socket":
        sock = environ["gunicorn.socket"]
        peer = sock.getpeername()
        body = json.dumps(
            {"fileno": sock.fileno(), "peer": peer or "", "type": type(sock).__name__}
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/close-socket":
        # Closes gunicorn.socket, then opens a file (the query names it) that stays open while
        # the response is written: no response byte may land in it.
        environ["gunicorn.socket"].close()
        f = open(environ["QUERY_STRING"], "wb")

        class Result:
            def __iter__(self):
                yield b"written after the close"

            def close(self):
                f.close()

        start_response("200 OK", [("Content-Type", "text/plain")])
        return Result()
    if path == "/bytes":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return b"bare bytes"
    if path == "/hints":
        environ["wsgi.early_hints"]([("Link", "</a.css>; rel=preload")])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"after hints"]
    if path == "/file":
        f = open(__file__, "rb")
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"), ("Content-Length", str(os.path.getsize(__file__)))],
        )
        return environ["wsgi.file_wrapper"](f)
    if path == "/bigfile":
        size = int(environ.get("QUERY_STRING") or 1048576)
        f = tempfile.TemporaryFile()
        f.truncate(size)
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        return environ["wsgi.file_wrapper"](f)
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or 0.3))
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
        return [b"slept"]
    if path == "/exc-info":
        start_response("200 OK", [])
        try:
            raise ValueError("replace")
        except ValueError:
            import sys

            start_response("500 Oops", [("X-Replaced", "1")], sys.exc_info())
        return [b"replaced"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found: " + path.encode("latin-1") + b"\n"]


application = app


async def asgi(scope, receive, send):
    """The ``/hello`` and ``/echo`` routes as an ASGI 3 application, for the ASGI worker."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/echo":
        headers = [(b"content-type", b"application/octet-stream"), (b"x-length", b"%d" % len(body))]
    else:
        body = b"Hello world\n"
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"12")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
