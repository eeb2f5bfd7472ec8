"""A small WSGI application for the demo: `gunicorn app:app -k gunicorn_uwsgi.SyncWorker`."""

from __future__ import annotations

import json


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body = b"Hello from gunicorn_uwsgi behind nginx\n"
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/whoami":
        keys = (
            "REQUEST_METHOD",
            "PATH_INFO",
            "QUERY_STRING",
            "REQUEST_URI",
            "REMOTE_ADDR",
            "SERVER_NAME",
            "SERVER_PORT",
            "SERVER_PROTOCOL",
            "wsgi.url_scheme",
        )
        body = json.dumps({k: environ.get(k) for k in keys}, indent=2).encode() + b"\n"
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/upload":
        data = environ["wsgi.input"].read()
        body = b"received %d bytes\n" % len(data)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
