"""A small Flask application for the framework suite (tests/test_frameworks.py)."""

from __future__ import annotations

import hashlib

from flask import Flask, Response, redirect, request, stream_with_context, url_for

from apps.gate import gated_chunks

app = Flask(__name__)


@app.post("/form")
def form() -> dict[str, object]:
    return {"name": request.form["name"], "tags": request.form.getlist("tag")}


@app.post("/upload")
def upload() -> dict[str, object]:
    f = request.files["file"]
    data = f.read()
    return {
        "filename": f.filename,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": request.form.get("note"),
    }


@app.get("/stream")
def stream() -> Response:
    """Three chunks; after the first, waits (at most 10 s) for the file named by ``gate`` to
    exist, so the client can prove it received the first chunk before the last was produced."""
    gate = request.args.get("gate", "")

    return Response(stream_with_context(gated_chunks(gate)), mimetype="text/plain")


@app.get("/redirect")
def go() -> Response:
    return redirect(url_for("done", _external=True))


@app.get("/done")
def done() -> str:
    return "done"


@app.get("/url")
def url() -> dict[str, object]:
    return {
        "external": url_for("url", _external=True),
        "path": url_for("url"),
        "scheme": request.scheme,
        "host": request.host,
        "is_secure": request.is_secure,
        "script_root": request.script_root,
        "full_url": request.url,
    }


@app.get("/client")
def client() -> dict[str, object]:
    return {"remote_addr": request.remote_addr}
