"""A Starlette application for the ASGI framework tests (tests/test_asgi.py): path and query
parameters, JSON, forms and multipart uploads, streamed and file responses, background
tasks, the client address, absolute URLs and lifespan state.

``ASGI_MARKERS`` (a folder) is where background tasks leave their marker files."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from starlette.routing import Route


async def gated_chunks(gate: str) -> AsyncIterator[bytes]:
    """Three chunks; after the first, waits (at most 10 s) for the file ``gate`` to exist."""
    yield b"first\n"
    deadline = asyncio.get_running_loop().time() + 10
    while gate and not os.path.exists(gate) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    yield b"second\n"
    yield b"third\n"


def write_marker(name: str, text: str) -> None:
    folder = os.environ.get("ASGI_MARKERS")
    if folder and name:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


async def item(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "item_id": request.path_params["item_id"],
            "q": request.query_params.get("q"),
            "tags": request.query_params.getlist("tag"),
            "path": request.url.path,
        }
    )


async def json_body(request: Request) -> JSONResponse:
    return JSONResponse({"received": await request.json()})


async def form(request: Request) -> JSONResponse:
    data = await request.form()
    return JSONResponse({"name": data["name"], "tags": data.getlist("tag")})


async def upload(request: Request) -> JSONResponse:
    async with request.form(max_part_size=64 * 1024 * 1024) as data:
        f = data["file"]
        digest = hashlib.sha256()
        size = 0
        while chunk := await f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        return JSONResponse(
            {
                "filename": f.filename,
                "size": size,
                "sha256": digest.hexdigest(),
                "note": data.get("note"),
            }
        )


async def stream(request: Request) -> StreamingResponse:
    return StreamingResponse(
        gated_chunks(request.query_params.get("gate", "")), media_type="text/plain"
    )


async def file(request: Request) -> FileResponse:
    return FileResponse(request.query_params["path"], media_type="application/octet-stream")


async def background(request: Request) -> PlainTextResponse:
    marker = request.query_params["marker"]
    task = BackgroundTask(write_marker, marker, "background ran")
    return PlainTextResponse("scheduled", background=task)


async def client(request: Request) -> JSONResponse:
    c = request.client
    return JSONResponse({"host": c.host if c else None, "port": c.port if c else None})


async def url(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "external": str(request.url_for("url")),
            "path": request.url.path,
            "scheme": request.url.scheme,
            "host": request.url.netloc,
            "root_path": request.scope.get("root_path"),
            "full_url": str(request.url),
            "base_url": str(request.base_url),
        }
    )


async def go(request: Request) -> RedirectResponse:
    return RedirectResponse(str(request.url_for("done")), status_code=302)


async def done(request: Request) -> PlainTextResponse:
    return PlainTextResponse("done")


async def state(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "request_state_started": getattr(request.state, "started", None),
            "app_state_started": getattr(request.app.state, "started", None),
            "lifespan_pid": getattr(request.state, "lifespan_pid", None),
            "pid": os.getpid(),
        }
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
    app.state.started = True
    yield {"started": True, "lifespan_pid": os.getpid()}


app = Starlette(
    routes=[
        Route("/items/{item_id:int}", item),
        Route("/json", json_body, methods=["POST"]),
        Route("/form", form, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/stream", stream),
        Route("/file", file),
        Route("/background", background),
        Route("/client", client),
        Route("/url", url, name="url"),
        Route("/redirect", go),
        Route("/done", done, name="done"),
        Route("/state", state),
    ],
    lifespan=lifespan,
)
