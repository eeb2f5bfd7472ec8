"""A Django Channels project for the WebSocket suite (tests/test_websocket.py), configured with
``settings.configure`` (no database, no channel layer): the ``/echo`` and ``/info`` routes of
``apps.ws_apps`` written as Channels consumers, HTTP served by ``django.core.asgi``."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=["channels"],
    DATABASES={},
    USE_TZ=True,
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

urlpatterns: list = []


class Echo(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        if bytes_data is not None:
            await self.send(bytes_data=bytes_data)
        else:
            await self.send(text_data=text_data)


class Info(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        scope = self.scope
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope["query_string"].decode("latin-1")
        info = {
            "client": list(scope["client"]) if scope.get("client") else None,
            "scheme": scope["scheme"],
            "path": scope["path"],
            "url": f"{scope['scheme']}://{headers.get('host')}{scope['path']}?{query}",
            "query": {k: v[-1] for k, v in parse_qs(query).items()},
            "subprotocols": scope.get("subprotocols"),
            "header": headers.get("x-trace"),
        }
        await self.send(text_data=json.dumps(info))
        await self.close(code=4010)


application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("echo", Echo.as_asgi()), path("info", Info.as_asgi())]),
    }
)
