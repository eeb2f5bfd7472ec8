"""A FastAPI application for the ASGI framework tests (tests/test_asgi.py): the same routes
as ``apps.starlette_app``, written the FastAPI way (typed parameters, a pydantic body,
``UploadFile``/``Form``, ``BackgroundTasks``).

No ``from __future__ import annotations``: FastAPI reads the parameter annotations at run
time, and ``X | None`` would not evaluate on Python 3.9."""

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Optional

from fastapi import BackgroundTasks, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from pydantic import BaseModel

from apps.starlette_app import gated_chunks, write_marker


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
    app.state.started = True
    yield {"started": True, "lifespan_pid": os.getpid()}


app = FastAPI(lifespan=lifespan)


class Order(BaseModel):
    name: str
    quantity: int
    tags: list[str] = []


@app.get("/items/{item_id}")
async def item(
    item_id: int,
    request: Request,
    q: Optional[str] = None,
    tag: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies the default)
) -> dict[str, object]:
    return {"item_id": item_id, "q": q, "tags": tag, "path": request.url.path}


@app.post("/json")
async def json_body(order: Order) -> dict[str, object]:
    return {"received": order.model_dump()}


@app.post("/form")
async def form(
    name: Annotated[str, Form()],
    tag: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies the default)
) -> dict[str, object]:
    return {"name": name, "tags": tag}


@app.post("/upload")
async def upload(
    file: Annotated[UploadFile, File()], note: Annotated[Optional[str], Form()] = None
) -> dict[str, object]:
    digest = hashlib.sha256()
    size = 0
    while chunk := await file.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return {"filename": file.filename, "size": size, "sha256": digest.hexdigest(), "note": note}


@app.get("/stream")
async def stream(gate: str = "") -> StreamingResponse:
    return StreamingResponse(gated_chunks(gate), media_type="text/plain")


@app.api_route("/file", methods=["GET", "HEAD"])
async def file(path: str) -> FileResponse:
    return FileResponse(path, media_type="application/octet-stream")


@app.get("/background", response_class=PlainTextResponse)
async def background(marker: str, tasks: BackgroundTasks) -> str:
    tasks.add_task(write_marker, marker, "background ran")
    return "scheduled"


@app.get("/client")
async def client(request: Request) -> dict[str, object]:
    c = request.client
    return {"host": c.host if c else None, "port": c.port if c else None}


@app.get("/url", name="url")
async def url(request: Request) -> dict[str, object]:
    return {
        "external": str(request.url_for("url")),
        "path": request.url.path,
        "scheme": request.url.scheme,
        "host": request.url.netloc,
        "root_path": request.scope.get("root_path"),
        "full_url": str(request.url),
        "base_url": str(request.base_url),
    }


@app.get("/redirect")
async def go(request: Request) -> RedirectResponse:
    return RedirectResponse(str(request.url_for("done")), status_code=302)


@app.get("/done", name="done", response_class=PlainTextResponse)
async def done() -> str:
    return "done"


@app.get("/state")
async def state(request: Request) -> dict[str, object]:
    return {
        "request_state_started": getattr(request.state, "started", None),
        "app_state_started": getattr(request.app.state, "started", None),
        "lifespan_pid": getattr(request.state, "lifespan_pid", None),
        "pid": os.getpid(),
    }
