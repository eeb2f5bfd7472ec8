"""Raw ASGI 3 test application for ``gunicorn_uwsgi.ASGIWorker`` (tests/test_asgi.py).

Every path not listed in ``ROUTES`` returns a JSON dump of the scope and of the request body
as the application received it (``_dump``). The routes exercise the response side (S4), the
body and disconnect events (S3), lifespan (S5) and concurrency (S6).

Environment variables the application reads:

- ``ASGI_MARKERS``: a folder; routes that must report something after their response (a
  disconnect, a background result) write a file there, and lifespan and ``/sleep`` append
  to its ``events`` file (``startup <pid>``, ``done <path> <pid>``, ``shutdown <pid>``).
- ``ASGI_FAIL_STARTUP``: lifespan startup fails with this message.
- ``ASGI_STARTUP_DELAY``: seconds lifespan startup takes before it completes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from urllib.parse import unquote

#: Requests in the application right now, and the most seen at once (S6).
_inflight = 0


def _markers() -> str | None:
    return os.environ.get("ASGI_MARKERS") or None


def _event(text: str) -> None:
    folder = _markers()
    if folder:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "events"), "a") as f:
            f.write(f"{text}\n")


def _mark(name: str, data: object) -> None:
    """Writes ``data`` as JSON to the marker ``name`` (atomically: a reader never sees half)."""
    folder = _markers()
    if not folder or not name:
        return
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def _query(scope) -> str:
    return unquote(scope["query_string"].decode("latin-1"))


async def _read_body(receive):
    """Reads the whole body; returns it, the ``more_body`` flags of the ``http.request``
    events, and the types of any other events (``http.disconnect``)."""
    chunks: list[bytes] = []
    flags: list[bool] = []
    others: list[str] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
            flags.append(more)
            if not more:
                break
        else:
            others.append(message["type"])
            break
    return chunks, flags, others


async def _hash_stream(scope, receive, send):
    """Hashes the body as it arrives, keeping none of it: its size, SHA-256, the number of
    ``http.request`` events and the largest one."""
    digest = hashlib.sha256()
    size = events = largest = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        digest.update(chunk)
        size += len(chunk)
        events += 1
        largest = max(largest, len(chunk))
        if not message.get("more_body"):
            break
    out = {"len": size, "sha256": digest.hexdigest(), "events": events, "largest": largest}
    await _respond(send, 200, json.dumps(out).encode())


async def _respond(send, status, body=b"", headers=(), length=True):
    hdrs = [(b"content-type", b"text/plain"), *headers]
    if length:
        hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def _json(send, data, status=200):
    body = json.dumps(data, sort_keys=True).encode()
    await _respond(send, status, body, [(b"x-json", b"1")])


def _jsonable_state(state):
    if state is None:
        return None
    return {k: v for k, v in state.items() if isinstance(v, (str, int, float, bool, type(None)))}


async def _dump(scope, receive, send):
    chunks, flags, others = await _read_body(receive)
    body = b"".join(chunks)
    client = scope.get("client")
    server = scope.get("server")
    await _json(
        send,
        {
            "type": scope["type"],
            "asgi": scope.get("asgi"),
            "http_version": scope.get("http_version"),
            "method": scope["method"],
            "scheme": scope.get("scheme"),
            "path": scope["path"],
            "raw_path": None
            if scope.get("raw_path") is None
            else scope["raw_path"].decode("latin-1"),
            "raw_path_is_bytes": isinstance(scope.get("raw_path"), bytes),
            "query_string": scope["query_string"].decode("latin-1"),
            "query_string_is_bytes": isinstance(scope["query_string"], bytes),
            "root_path": scope.get("root_path"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "headers_are_bytes": all(
                isinstance(k, bytes) and isinstance(v, bytes) for k, v in scope["headers"]
            ),
            "client": None if client is None else list(client),
            "client_port_is_int": client is not None and type(client[1]) is int,
            "server": None if server is None else list(server),
            "server_port_type": None if server is None else type(server[1]).__name__,
            "has_state": "state" in scope,
            "state": _jsonable_state(scope.get("state")),
            "extensions": sorted((scope.get("extensions") or {}).keys()),
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body": body.decode("latin-1") if len(body) <= 65536 else None,
            "more_body": flags,
            "events": len(flags),
            "max_chunk": max((len(c) for c in chunks), default=0),
            "other_events": others,
            "loop": type(asyncio.get_running_loop()).__module__,
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "E2E_FOO": os.environ.get("E2E_FOO"),
            "e2e_marker_imported": "e2e_marker" in sys.modules,
        },
    )


# -- routes ------------------------------------------------------------------------------------


async def hello(scope, receive, send):
    await _respond(send, 200, b"Hello world\n")


async def echo(scope, receive, send):
    """The body as received, with its size and the number of ``http.request`` events."""
    chunks, flags, _ = await _read_body(receive)
    body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"x-length", str(len(body)).encode()),
                (b"x-events", str(len(flags)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def stream(scope, receive, send):
    """Five chunks in five ``more_body`` events, no content-length: close-delimited."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    for i in range(5):
        await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def length(scope, receive, send):
    """A content-length response in two body events."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"10")],
        }
    )
    await send({"type": "http.response.body", "body": b"01234", "more_body": True})
    await send({"type": "http.response.body", "body": b"56789"})


async def head(scope, receive, send):
    """Sends its body whatever the method: on HEAD the server must drop it (S4/R4)."""
    await _respond(send, 200, b"hello world")


async def status(scope, receive, send):
    """``?204``: that status with a content-length and a body the server must not send."""
    code = int(_query(scope) or 200)
    headers = [(b"content-length", b"5" if code != 304 else b"10")]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": b"never"})


async def raise_early(scope, receive, send):
    raise RuntimeError("boom from the asgi test app (before start)")


async def raise_late(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom from the asgi test app (after start)")


async def no_response(scope, receive, send):
    return None


async def unfinished(scope, receive, send):
    """Starts, sends part of a body and returns without ``more_body: False``."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"unfinished", "more_body": True})


async def bad_header(scope, receive, send):
    """``?value``: a header value with CR LF; ``?name``: a header name with a space. Records
    in the marker ``bad-header-<kind>`` whether ``send`` raised (R1: the app gets an error)."""
    kind = _query(scope) or "value"
    header = (b"x-evil", b"x\r\ny") if kind == "value" else (b"bad name", b"x")
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [header]})
        await send({"type": "http.response.body", "body": b"never sent"})
    except Exception as e:
        _mark(f"bad-header-{kind}", {"raised": type(e).__name__})
        raise
    _mark(f"bad-header-{kind}", {"raised": None})


async def bad_status(scope, receive, send):
    """``?42``: a status that is not three digits."""
    code = int(_query(scope) or 42)
    try:
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": b"never sent"})
    except Exception as e:
        _mark(f"bad-status-{code}", {"raised": type(e).__name__})
        raise
    _mark(f"bad-status-{code}", {"raised": None})


async def hop(scope, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"connection", b"keep-alive"),
                (b"keep-alive", b"timeout=5"),
                (b"transfer-encoding", b"chunked"),
                (b"te", b"trailers"),
                (b"trailer", b"x-sum"),
                (b"upgrade", b"h2c"),
                (b"proxy-connection", b"keep-alive"),
                (b"x-kept", b"yes"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"hop"})


async def cookies(scope, receive, send):
    """Two set-cookie headers: both reach the wire, in order."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
        }
    )
    await send({"type": "http.response.body", "body": b"cookies"})


async def short(scope, receive, send):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
    )
    await send({"type": "http.response.body", "body": b"only this"})


async def long(scope, receive, send):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
    )
    await send({"type": "http.response.body", "body": b"0123456789"})


async def big(scope, receive, send):
    """``?n``: n bytes with a content-length, in 64 KiB events."""
    size = int(_query(scope) or 1 << 20)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(size).encode())],
        }
    )
    block = b"x" * 65536
    sent = 0
    while sent < size:
        n = min(len(block), size - sent)
        sent += n
        await send({"type": "http.response.body", "body": block[:n], "more_body": sent < size})


async def sleep(scope, receive, send):
    """``?seconds``: sleeps, then reports how many requests were in the app when it came
    in, and appends ``done /sleep <pid>`` to the events file."""
    global _inflight
    _inflight += 1
    at_entry = _inflight
    try:
        seconds = float(_query(scope) or 0.5)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        _event(f"done /sleep {os.getpid()}")
        await _json(
            send,
            {
                "slept": seconds,
                "inflight": at_entry,
                "elapsed": time.monotonic() - started,
                "pid": os.getpid(),
            },
        )
    finally:
        _inflight -= 1


async def disconnect(scope, receive, send):
    """``?name``: reads events until ``http.disconnect`` (after the whole body, it waits for
    the peer to leave: it never answers), then writes the marker ``name`` with the event
    types and the body bytes received."""
    name = _query(scope)
    types: list[str] = []
    received = 0
    while True:
        message = await receive()
        types.append(message["type"])
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            continue
        break
    _mark(name, {"types": types, "received": received})


async def after(scope, receive, send):
    """``?name``: reads the body, answers, then calls ``receive()`` again: S3 says it returns
    ``http.disconnect``. Writes the marker ``name`` with what it got (or ``timeout``)."""
    name = _query(scope)
    await _read_body(receive)
    await _respond(send, 200, b"answered")
    try:
        message = await asyncio.wait_for(receive(), 5)
        _mark(name, {"type": message["type"]})
    except asyncio.TimeoutError:
        _mark(name, {"type": "timeout"})


async def ignore_disconnect(scope, receive, send):
    """``?name``: never calls ``receive()``, sleeps 30 s; records ``cancelled`` in the marker
    when the server cancels it (asgi_disconnect_grace_period after the peer left)."""
    name = _query(scope)
    _mark(name, {"state": "started"})
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        _mark(name, {"state": "cancelled"})
        raise
    _mark(name, {"state": "finished"})
    await _respond(send, 200, b"slept through")


async def pathsend(scope, receive, send):
    """``?/abs/path``: the file, through the ``http.response.pathsend`` extension (S4)."""
    if "http.response.pathsend" not in (scope.get("extensions") or {}):
        await _respond(send, 501, b"no http.response.pathsend extension in the scope")
        return
    path = _query(scope)
    size = os.stat(path).st_size
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(size).encode()),
            ],
        }
    )
    await send({"type": "http.response.pathsend", "path": path})


async def state_mutate(scope, receive, send):
    """Changes its scope's state: the next request must not see it (a shallow copy, S2)."""
    state = scope.get("state")
    if state is not None:
        state["mutated"] = True
    await _json(send, {"had_state": state is not None})


ROUTES = {
    "/hash-stream": _hash_stream,
    "/hello": hello,
    "/": hello,
    "/echo": echo,
    "/stream": stream,
    "/length": length,
    "/head": head,
    "/status": status,
    "/raise": raise_early,
    "/raise-late": raise_late,
    "/no-response": no_response,
    "/unfinished": unfinished,
    "/bad-header": bad_header,
    "/bad-status": bad_status,
    "/hop": hop,
    "/cookies": cookies,
    "/short": short,
    "/long": long,
    "/big": big,
    "/sleep": sleep,
    "/disconnect": disconnect,
    "/after": after,
    "/ignore-disconnect": ignore_disconnect,
    "/pathsend": pathsend,
    "/state-mutate": state_mutate,
}


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            failure = os.environ.get("ASGI_FAIL_STARTUP")
            if failure:
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
            await asyncio.sleep(float(os.environ.get("ASGI_STARTUP_DELAY") or 0))
            if "state" in scope:
                scope["state"]["started"] = True
                scope["state"]["pid"] = os.getpid()
                scope["state"]["not_json"] = object()
            _event(f"startup {os.getpid()}")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _event(f"shutdown {os.getpid()}")
            await send({"type": "lifespan.shutdown.complete"})
            return


def _route_path(scope) -> str:
    """The path below ``root_path`` (``path`` is the full path, S2), as Starlette routes."""
    path, root = scope["path"], scope.get("root_path") or ""
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    assert scope["type"] == "http", scope["type"]
    route = ROUTES.get(_route_path(scope), _dump)
    await route(scope, receive, send)
