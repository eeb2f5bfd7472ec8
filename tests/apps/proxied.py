"""The echo app, plus an inspection route for tests that run behind nginx.

A request carrying an ``X-Inspect`` header, whatever its path, is answered with a JSON object
``{"environ": {...}, "body": "<the request body, latin-1>"}``, so that paths nginx rewrites
(``SCRIPT_NAME`` stripping, percent-decoding, location matching) can be inspected as they reach
the application. Every other request goes to ``apps.echo``.
"""

from __future__ import annotations

import json

from apps.echo import _environ_json
from apps.echo import app as echo_app


def app(environ, start_response):
    if "HTTP_X_INSPECT" not in environ:
        return echo_app(environ, start_response)
    return inspect(environ, start_response)


def inspect(environ, start_response):
    """The environ and the request body, as JSON."""
    body = environ["wsgi.input"].read()
    payload = {"environ": _environ_json(environ), "body": body.decode("latin-1")}
    data = json.dumps(payload, sort_keys=True).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


application = app
