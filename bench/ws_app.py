"""The WebSocket benchmark's application (``bench/ws.py``): raw ASGI 3, the same for every
server. It accepts every websocket (no subprotocol, no extension of its own) and sends each
message back as it came, text as text and bytes as bytes, until the client leaves."""

from __future__ import annotations

from asgi_apps import _lifespan


async def echo(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 426, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        elif message["type"] == "websocket.disconnect":
            return
