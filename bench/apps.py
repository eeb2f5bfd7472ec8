"""Benchmark applications, the same for every server."""

from __future__ import annotations

import json
import time

_HELLO = b"Hello, World!"


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [_HELLO]


def environ_json(environ, start_response):
    body = json.dumps({k: v for k, v in environ.items() if isinstance(v, str)}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def post(environ, start_response):
    size = len(environ["wsgi.input"].read())
    body = b"%d" % size
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def sleep10(environ, start_response):
    """An I/O-bound request: 10 ms waiting (cooperative under gevent's monkey-patching)."""
    time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [_HELLO]
