"""Benchmark applications for the ASGI servers: raw ASGI 3, the same for every server."""

from __future__ import annotations

_HELLO = b"Hello, World!"
_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


async def _lifespan(receive, send) -> None:
    """Nothing to set up or tear down: each event completes at once."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _HELLO})
