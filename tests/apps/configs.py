"""Test application for the nginx configuration suite (tests/test_nginx_configs.py).

Every request is answered with a JSON object ``{"environ": {...}, "body": "<latin-1>"}``, whatever
its path and even without ``PATH_INFO`` (a location without ``include uwsgi_params``), except a
request carrying an ``X-Django`` header, which goes to the Django project of ``apps.django_app``
(imported on first use, so the rest does not need Django).
"""

from __future__ import annotations

from apps.proxied import inspect

_django = None


def app(environ, start_response):
    if "HTTP_X_DJANGO" in environ:
        global _django
        if _django is None:
            from apps.django_app import application as _django
        return _django(environ, start_response)
    return inspect(environ, start_response)


application = app
