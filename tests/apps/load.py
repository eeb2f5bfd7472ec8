"""Application of the load, soak, fault and scale-out tests (tests/test_soak.py,
tests/test_faults.py, tests/test_scaleout.py).

Every answer can be checked by the load generator without knowing which request it answers:
it carries the request's ``X-Tag`` header back, and its body is a pure function of what the
request sent (``expected_*`` below compute the same bodies on the test's side).

Routes:

- ``/hello``: ``Hello world``;
- ``/hash`` (POST): reads the body in full, answers ``<length> <sha256>``; with
  ``?marker=<path>``, also writes to that file ``ok <length>`` or the exception the read raised;
- ``/headers``: ``<count> <sha256>`` of the ``X-Fill-*`` request headers;
- ``/blob?<size>``: ``size`` bytes of numbered lines (a shifted, repeated or missing piece shows);
- ``/sleep?<seconds>``: answers after sleeping;
- ``/slow?<chunks>,<delay>``: ``chunks`` pieces of ``blob`` content with a ``Content-Length``,
  ``delay`` seconds apart (a response that takes a while to write);
- ``/forever?<marker>``: 64 KiB pieces without end (capped at 120 s) until the peer leaves;
  when the server closes the iterable, writes the number of pieces sent to ``marker``;
- ``/noread``: answers without reading the body;
- ``/raise``: raises.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Mapping

#: Bytes of one piece of the ``/slow`` and ``/forever`` responses.
PIECE = 65536


def expected_hash(body: bytes) -> bytes:
    return b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())


def fill_headers(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in environ.items() if k.startswith("HTTP_X_FILL_"))


def expected_headers(headers: Mapping[str, str]) -> bytes:
    """What ``/headers`` answers for request headers ``X-Fill-*`` given as ``{name: value}``."""
    environ = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    return _digest_headers(fill_headers(environ))


def _digest_headers(pairs: list[tuple[str, str]]) -> bytes:
    joined = "\n".join(f"{k}={v}" for k, v in pairs).encode("latin-1")
    return b"%d %s" % (len(pairs), hashlib.sha256(joined).hexdigest().encode())


_BLOBS: dict[int, bytes] = {}


def blob(size: int) -> bytes:
    """``size`` bytes of numbered 8-byte lines: ``0000000\\n0000001\\n...``."""
    data = _BLOBS.get(size)
    if data is None:
        lines = size // 8 + 1
        data = b"".join(b"%07d\n" % (i % 10_000_000) for i in range(lines))[:size]
        if len(_BLOBS) < 64:
            _BLOBS[size] = data
    return data


def _answer(start_response, tag: str, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Tag", tag),
            ("X-Pid", str(os.getpid())),
        ],
    )
    return [body]


def _hash(environ, start_response, tag: str) -> list[bytes]:
    marker = environ.get("QUERY_STRING", "")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        body = environ["wsgi.input"].read()
    except BaseException as e:
        if marker:
            with open(marker, "w") as f:
                f.write(f"{type(e).__name__}: {e}")
        raise
    if marker:
        with open(marker, "w") as f:
            f.write(f"ok {len(body)} of {length}")
    return _answer(start_response, tag, expected_hash(body))


def _slow(count: int, delay: float) -> Iterator[bytes]:
    piece = blob(PIECE)
    for i in range(count):
        if i:
            time.sleep(delay)
        yield piece


def _forever(marker: str) -> Iterator[bytes]:
    piece = blob(PIECE)
    sent = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            yield piece
            sent += 1
            time.sleep(0.002)
    finally:
        if marker:
            with open(marker, "w") as f:
                f.write(str(sent))


def app(environ, start_response):
    # Routes go by the last segment, so nginx locations may add a prefix.
    path = "/" + environ["PATH_INFO"].rsplit("/", 1)[-1]
    tag = environ.get("HTTP_X_TAG", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/hello":
        return _answer(start_response, tag, b"Hello world\n")
    if path == "/hash":
        return _hash(environ, start_response, tag)
    if path == "/headers":
        return _answer(start_response, tag, _digest_headers(fill_headers(environ)))
    if path == "/blob":
        return _answer(start_response, tag, blob(int(query or 1024)))
    if path == "/sleep":
        time.sleep(float(query or 0.5))
        return _answer(start_response, tag, b"slept")
    if path == "/slow":
        count, _, delay = query.partition(",")
        n = int(count or 4)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(n * PIECE)),
                ("X-Pid", str(os.getpid())),
            ],
        )
        return _slow(n, float(delay or 0.5))
    if path == "/forever":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _forever(query)
    if path == "/noread":
        return _answer(start_response, tag, b"not read\n")
    if path == "/raise":
        raise RuntimeError("raised on purpose by the load app")
    return _answer(start_response, tag, b"no such route\n", "404 Not Found")


application = app
