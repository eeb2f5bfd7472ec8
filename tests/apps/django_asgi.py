"""The Django project of ``apps.django_app`` served through ``django.core.asgi``
(tests/test_asgi.py), plus an async streamed view: Django consumes a synchronous iterator
whole before it sends anything under ASGI, so the gated stream needs an async one.

Django has no lifespan support: it raises on a ``lifespan`` scope, which gunicorn's
``asgi_lifespan = auto`` must take as "not supported" and go on serving (S5)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path

from apps import django_app  # configures the settings, defines the URLs


async def _gated(gate: str) -> AsyncIterator[bytes]:
    yield b"first\n"
    deadline = asyncio.get_running_loop().time() + 10
    while gate and not os.path.exists(gate) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    yield b"second\n"
    yield b"third\n"


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_gated(request.GET.get("gate", "")), content_type="text/plain")


async def meta(request: HttpRequest) -> JsonResponse:
    keys = ("CONTENT_LENGTH", "CONTENT_TYPE", "REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT")
    return JsonResponse({k: request.META.get(k) for k in keys} | {"path": request.path})


django_app.urlpatterns += [path("astream/", astream), path("meta/", meta)]

application = get_asgi_application()
