"""Test application for the nginx configuration suite (tests/test_nginx_configs.py).

Every request is answered with a JSON object ``{"environ": {...}, "body": "<latin-1>"}``, whatever
its path and even without ``PATH_INFO`` (a location without ``include uwsgi_params``), except a
request carrying an ``X-Django`` header, which goes to the Django project of ``apps.django_app``
(imported on first use, so the rest does not need Django).
"""

from __future__ import annotations

import json

from apps.echo import _environ_json

_django = None


def app(environ, start_response):
    if "HTTP_X_DJANGO" in environ:
        global _django
        if _django is None:
            from apps.django_app import application as _django
        return _django(environ, start_response)
    body = environ["wsgi.input"].read()
    payload = {"environ": _environ_json(environ), "body": body.decode("latin-1")}
    data = json.dumps(payload, sort_keys=True).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


application = app
