"""WebSocket test applications for ``gunicorn_uwsgi.ASGIWorker`` (tests/test_websocket.py).

- ``app``: a raw ASGI 3 application. Its websocket routes are chosen by the last segment of
  the path (``/echo``, ``/t3/echo`` and the vector's ``/chat`` are all the echo), so nginx
  locations with settings of their own need no route of their own. An HTTP request gets
  ``200 http <path>`` (a plain GET to a websocket path is still HTTP, W1).
- ``starlette_app`` and ``fastapi_app``: the same ``/echo`` and ``/info`` routes written with
  Starlette's and FastAPI's ``WebSocket``.

Routes of ``app`` (query parameters in brackets):

- ``echo`` [``marker``]: accepts (choosing the first offered subprotocol it knows, ``chat`` or
  ``superchat``), sends every message back as it came (text as text, bytes as bytes); at the
  ``websocket.disconnect`` writes ``{"code", "reason", "received"}`` to the marker file.
- ``scope``: accepts, sends the scope as JSON text, then waits for the disconnect.
- ``close`` [``code``, ``reason``, ``wait``, ``marker``]: accepts, closes with that code and
  reason; with ``wait`` it then awaits ``receive()`` and records the disconnect in the marker.
- ``deny``: ``websocket.close`` before the accept (403); ``deny-return``: returns without
  accepting (403); ``deny-response``: a 401 denial response through the
  ``websocket.http.response`` extension.
- ``accept-headers``: accepts with extra headers; ``bad-accept-header``: accepts with a header
  value holding a line feed (R1: refused).
- ``flood`` [``mib``, ``marker``]: accepts and sends ``mib`` MiB as 64 KiB binary messages,
  one buffer reused; writes ``{"sent": bytes}`` to the marker after every MiB, and
  ``{"sent": ..., "done": true}`` at the end.

``ASGI_MARKERS`` (a folder) is where marker files go.

No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
"""

import json
import os
from urllib.parse import parse_qs

#: The subprotocols ``echo`` knows, in no particular order: it takes the client's first one.
SUBPROTOCOLS = ("chat", "superchat")


def _mark(name, data):
    """Writes ``data`` as JSON to the marker ``name`` (atomically: a reader never sees half)."""
    folder = os.environ.get("ASGI_MARKERS")
    if not folder or not name:
        return
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def _params(scope):
    query = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "state"}
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return repr(value)


async def _connect(receive):
    message = await receive()
    assert message["type"] == "websocket.connect", message
    return message


async def _until_disconnect(receive):
    """Messages until ``websocket.disconnect``; returns it and how many came before it."""
    count = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return message, count
        count += 1


def _disconnect_record(message, received):
    return {"code": message.get("code"), "reason": message.get("reason"), "received": received}


async def echo(scope, receive, send):
    await _connect(receive)
    chosen = next((p for p in scope.get("subprotocols", ()) if p in SUBPROTOCOLS), None)
    await send({"type": "websocket.accept", "subprotocol": chosen})
    received = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            _mark(_params(scope).get("marker"), _disconnect_record(message, received))
            return
        received += 1
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


async def scope_dump(scope, receive, send):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(_jsonable(scope), sort_keys=True)})
    await _until_disconnect(receive)


async def close(scope, receive, send):
    params = _params(scope)
    await _connect(receive)
    await send({"type": "websocket.accept"})
    await send(
        {
            "type": "websocket.close",
            "code": int(params.get("code", 1000)),
            "reason": params.get("reason", ""),
        }
    )
    if "wait" in params:
        message, received = await _until_disconnect(receive)
        _mark(params.get("marker"), _disconnect_record(message, received))


async def deny(scope, receive, send):
    await _connect(receive)
    await send({"type": "websocket.close", "code": 1000})


async def deny_return(scope, receive, send):
    await _connect(receive)


async def deny_response(scope, receive, send):
    await _connect(receive)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"www-authenticate", b'Bearer realm="ws"'),
                (b"content-length", b"8"),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def accept_headers(scope, receive, send):
    await _connect(receive)
    await send(
        {
            "type": "websocket.accept",
            "headers": [(b"x-accepted", b"yes"), (b"set-cookie", b"ws=1; Path=/")],
        }
    )
    await _until_disconnect(receive)


async def bad_accept_header(scope, receive, send):
    await _connect(receive)
    await send({"type": "websocket.accept", "headers": [(b"x-bad", b"line\nfeed")]})
    await _until_disconnect(receive)


async def flood(scope, receive, send):
    params = _params(scope)
    marker = params.get("marker")
    total = int(params.get("mib", 64)) << 20
    chunk = b"\x5a" * 65536
    await _connect(receive)
    await send({"type": "websocket.accept"})
    sent = 0
    while sent < total:
        await send({"type": "websocket.send", "bytes": chunk})
        sent += len(chunk)
        if sent % (1 << 20) == 0:
            _mark(marker, {"sent": sent, "done": False})
    _mark(marker, {"sent": sent, "done": True})
    await _until_disconnect(receive)


ROUTES = {
    "echo": echo,
    "chat": echo,
    "scope": scope_dump,
    "close": close,
    "deny": deny,
    "deny-return": deny_return,
    "deny-response": deny_response,
    "accept-headers": accept_headers,
    "bad-accept-header": bad_accept_header,
    "flood": flood,
}


async def _http(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    body = f"http {scope['path']}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)
    else:
        assert scope["type"] == "websocket", scope["type"]
        route = ROUTES[scope["path"].rstrip("/").rsplit("/", 1)[-1]]
        await route(scope, receive, send)


# -- Starlette and FastAPI --------------------------------------------------------------------


def _info(websocket):
    client = websocket.client
    return {
        "client": [client.host, client.port] if client else None,
        "url": str(websocket.url),
        "scheme": websocket.url.scheme,
        "path": websocket.url.path,
        "query": dict(websocket.query_params),
        "subprotocols": websocket.scope.get("subprotocols"),
        "header": websocket.headers.get("x-trace"),
    }


try:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect
except ImportError:  # pragma: no cover - the tests skip without Starlette
    starlette_app = None
else:

    async def _starlette_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await websocket.send_bytes(message["bytes"])
                else:
                    await websocket.send_text(message["text"])
        except WebSocketDisconnect:
            return

    async def _starlette_info(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(_info(websocket))
        await websocket.close(code=4010, reason="starlette done")

    starlette_app = Starlette(
        routes=[
            WebSocketRoute("/echo", _starlette_echo),
            WebSocketRoute("/info", _starlette_info),
        ]
    )


try:
    from fastapi import FastAPI
    from fastapi import WebSocket as FastAPIWebSocket
    from fastapi import WebSocketDisconnect as FastAPIDisconnect
except ImportError:  # pragma: no cover - the tests skip without FastAPI
    fastapi_app = None
else:
    fastapi_app = FastAPI()

    @fastapi_app.websocket("/echo")
    async def _fastapi_echo(websocket: FastAPIWebSocket):
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(text)
        except FastAPIDisconnect:
            return

    @fastapi_app.websocket("/info")
    async def _fastapi_info(websocket: FastAPIWebSocket):
        await websocket.accept()
        await websocket.send_json(_info(websocket))
        await websocket.close(code=4010, reason="fastapi done")
