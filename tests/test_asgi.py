"""``gunicorn_uwsgi.ASGIWorker``: ASGI 3 applications over the uwsgi protocol (spec section S,
and the F, V, A, X rules that S1 says hold "exactly as for the WSGI workers").

- Raw uwsgi packets on the worker's own ports (TCP/IPv4, TCP/IPv6, unix socket) against
  ``apps/asgi_apps.py``: the scope (S2), the body and disconnect events (S3), the response
  rules (S4), pathsend, lifespan (S5), concurrency (S6), and the protocol cases of the WSGI
  suites (F, V, A, X; the malformed packets come from ``e2e_helpers``).
- A real nginx (``uwsgi_pass`` to the unix socket, the stock ``include uwsgi_params;``) in
  front of the same server: the scope as nginx really sends it, a 10 MiB upload.
- Starlette, FastAPI and Django (``django.core.asgi``) behind nginx.

The shared server runs once per event loop (``--asgi-loop asyncio`` and ``uvloop``): the
module's tests run twice. Servers that need settings of their own are shared by the tests of
their class; the few that must stop or restart a server start their own.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import random
import re
import select
import signal
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from e2e_helpers import (
    F3_BAD_BLOCKS,
    F7_FOREIGN,
    TRANSPORTS,
    V2_BAD,
    V5_BAD,
    LogMark,
    address_of,
    assert_refused,
    good_request,
    magic_uwsgi_vars,
    rss_kib,
    talk,
    trickle,
    var,
)
from test_e2e_protocol import E7_CASES, OVERRIDES
from test_frameworks import _multipart, require_module

from support import (
    CONTROL_VARS,
    TESTS,
    Address,
    Gunicorn,
    Nginx,
    Pair,
    Reply,
    _gunicorn_has,
    connect,
    free_port,
    header,
    ipv6_available,
    nginx_vars,
    packet,
    raw_packet,
    read_all,
    request_packet,
    vector,
    wait_until,
)

ASGI = "gunicorn_uwsgi.ASGIWorker"
APP = "apps.asgi_apps:app"
GET = ("REQUEST_METHOD", "GET")
#: The event loops the shared server runs on (S6: ``asgi_loop``).
LOOPS = ["asyncio", "uvloop"]
#: The Host the clients of nginx send.
HOST = "asgi.example.test"
#: A second loopback address for the client, so that the real client (nginx's
#: ``$remote_addr``) differs from the peer gunicorn sees (nginx itself).
OTHER_CLIENT = "127.0.0.2"

FRAMEWORKS = {
    "starlette": "apps.starlette_app:app",
    "fastapi": "apps.fastapi_app:app",
    "django": "apps.django_asgi:application",
}


# -- servers -------------------------------------------------------------------------------


def loop_args(loop: str | None) -> list[str]:
    """``--asgi-loop`` where gunicorn has the setting (>= 24)."""
    if loop is None or not _gunicorn_has("asgi_loop"):
        return []
    return ["--asgi-loop", loop]


def require_loop(loop: str) -> None:
    """uvloop missing: the uvloop variant fails in CI and is skipped elsewhere."""
    if loop == "uvloop":
        require_module("uvloop")


def asgi_server(
    tmp: Path,
    app: str = APP,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    **kw: Any,
) -> Gunicorn:
    """A gunicorn with one ASGIWorker serving ``app``; ``ASGI_MARKERS`` is ``tmp/markers``."""
    markers = tmp / "markers"
    markers.mkdir(exist_ok=True)
    full_env = {"ASGI_MARKERS": str(markers), **(env or {})}
    return Gunicorn(tmp, app=app, worker=ASGI, args=list(args), env=full_env, **kw)


def markers(server: Gunicorn) -> Path:
    return server.tmp / "markers"


def wait_marker(server: Gunicorn, name: str, timeout: float = 10.0) -> Any:
    """The JSON an app route left in the marker file ``name``."""
    path = markers(server) / name
    assert wait_until(path.exists, timeout=timeout), (
        f"no marker {name!r} after {timeout} s:\n{server.log()[-3000:]}"
    )
    return json.loads(path.read_text())


def events(server: Gunicorn) -> list[str]:
    """The lines of the app's events file (lifespan startup/shutdown, finished sleeps)."""
    path = markers(server) / "events"
    return path.read_text().splitlines() if path.exists() else []


def new_name() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module", params=LOOPS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """The shared server: TCP 127.0.0.1 (and ::1) and a unix socket, one worker, on the
    event loop of the parameter; lifespan startup takes 0.3 s (S5: before any request)."""
    loop = request.param
    require_loop(loop)
    tmp = tmp_path_factory.mktemp(f"asgi-{loop}")
    args = [*loop_args(loop), "--access-logfile", str(tmp / "access.log")]
    g = asgi_server(tmp, args=args, env={"ASGI_STARTUP_DELAY": "0.3"}, ipv6=ipv6_available())
    g.loop = loop  # type: ignore[attr-defined]
    with g:
        yield g


@pytest.fixture(params=TRANSPORTS)
def address(request: pytest.FixtureRequest, server: Gunicorn) -> Address:
    return address_of(server, request.param)


# -- raw exchanges ---------------------------------------------------------------------------


def ask_scope(address: Address, pairs: Sequence[Pair], body: bytes = b"", **kw: Any) -> dict:
    """The scope dump of ``apps.asgi_apps`` for a packet of ``pairs``."""
    reply = Reply(talk(address, packet(pairs, body, modifier1=kw.pop("modifier1", 0)), **kw)[0])
    assert reply.status == 200, reply
    return reply.json()


def scope_for(address: Address, body: bytes = b"", **kw: Any) -> dict:
    """The scope of the request nginx would send for ``nginx_vars(**kw)``."""
    kw.setdefault("path", "/scope")
    return ask_scope(address, nginx_vars(body=body, **kw), body)


def replace(pairs: Sequence[Pair], **values: bytes | str | None) -> list[Pair]:
    """``pairs`` with the value of each var in ``values`` replaced in place (added at the
    end when missing, removed when None)."""
    out: list[Pair] = []
    seen = set()
    for k, v in pairs:
        if k in values:
            seen.add(k)
            if values[k] is None:
                continue
            v = values[k]  # type: ignore[assignment]
        out.append((k, v))
    out += [(k, v) for k, v in values.items() if k not in seen and v is not None]  # type: ignore[misc]
    return out


def header_values(scope: dict, name: str) -> list[str]:
    return [v for k, v in scope["headers"] if k == name]


def no_high_level_lines(mark: LogMark) -> None:
    for level in ("INFO", "WARNING", "ERROR", "CRITICAL"):
        assert not mark.lines(level), mark.new()


def app_error_logged(mark: LogMark, *texts: str) -> None:
    """X2: the exception is logged at ERROR with its traceback (and ``texts``)."""
    mark.wait_for(r"\[ERROR\]")
    assert wait_until(lambda: "Traceback" in mark.new() and all(t in mark.new() for t in texts))


# -- G5: every transport --------------------------------------------------------------------


def test_g5_s1_good_request_on_every_transport(server, address):
    """S1/G5, R1: the ASGI worker answers on 127.0.0.1, ::1 and a unix socket: status line,
    the app's headers, the body; nothing above debug in the log."""
    mark = LogMark(server)
    reply = Reply(talk(address, request_packet(path="/hello"))[0])
    assert reply.status_line == "HTTP/1.1 200 OK"
    assert reply.header_names() == ["content-type", "content-length"]
    assert reply.header("Content-Length") == "12"
    assert reply.body == b"Hello world\n"
    no_high_level_lines(mark)


# -- S2: the scope --------------------------------------------------------------------------


def test_s2_scope_from_nginx_vars(server, address):
    """S2: type, asgi versions, http_version, method, scheme, path, raw_path, query_string,
    root_path, headers (byte pairs, lowercase with dashes, in arrival order), client and
    server as nginx's vars give them, with int ports."""
    pairs = nginx_vars(
        path="/scope/x",
        query="a=1&b=%20",
        headers=[("User-Agent", "t"), ("X-Trace", "t1"), ("Accept-Language", "fr")],
    )
    s = ask_scope(address, pairs)
    assert s["type"] == "http"
    assert s["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert s["http_version"] == "1.1"
    assert s["method"] == "GET"
    assert s["scheme"] == "http"
    assert s["path"] == "/scope/x"
    assert s["raw_path"] == "/scope/x" and s["raw_path_is_bytes"]
    assert s["query_string"] == "a=1&b=%20" and s["query_string_is_bytes"]
    assert s["root_path"] == ""
    assert s["headers_are_bytes"]
    assert s["headers"] == [
        ["host", "example.test"],
        ["user-agent", "t"],
        ["x-trace", "t1"],
        ["accept-language", "fr"],
    ]
    assert s["client"] == ["203.0.113.9", 40000] and s["client_port_is_int"]
    assert s["server"] == ["example.test", 8080] and s["server_port_type"] == "int"


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [("HTTP/1.0", "1.0"), ("HTTP/1.1", "1.1"), ("HTTP/2.0", "2"), ("HTTP/3.0", "3"), (None, "1.1")],
)
def test_s2_http_version_from_server_protocol(server, protocol, expected):
    """S2: http_version from SERVER_PROTOCOL (nginx sends HTTP/2.0 for an h2 client);
    "1.1" when the var is missing."""
    pairs = replace(nginx_vars(path="/scope"), SERVER_PROTOCOL=protocol)
    assert ask_scope(server.tcp, pairs)["http_version"] == expected


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PROPFIND"])
def test_s2_method(server, method):
    """S2/V6: the method is REQUEST_METHOD, any token."""
    assert scope_for(server.tcp, method=method)["method"] == method


@pytest.mark.parametrize(("extra", "scheme"), E7_CASES, ids=[str(c[0]) for c in E7_CASES])
def test_s2_scheme_by_the_e7_rules(server, extra, scheme):
    """S2/E7: scheme https from UWSGI_SCHEME, the HTTPS flags, a trusted peer's
    secure_scheme_headers or REQUEST_SCHEME; UWSGI_SCHEME=http forces http (the WSGI cases)."""
    pairs = [p for p in nginx_vars(path="/scope") if p[0] != "REQUEST_SCHEME"]
    assert ask_scope(server.tcp, [*pairs, *extra.items()])["scheme"] == scheme


@pytest.mark.parametrize(
    ("path_info", "request_uri", "path", "raw_path"),
    [
        # nginx decoded /caf%C3%A9 once: raw UTF-8 bytes, decoded UTF-8 once, not mojibake.
        (b"/caf\xc3\xa9", b"/caf%C3%A9?x=1", "/caf\u00e9", "/caf%C3%A9"),
        # A client's /a%2520b is /a%20b after nginx: never decoded again.
        (b"/a%20b", b"/a%2520b", "/a%20b", "/a%2520b"),
        (b"/x/%2F/%ZZ", b"/x/%252F/%25ZZ", "/x/%2F/%ZZ", "/x/%252F/%25ZZ"),
        # Invalid UTF-8: U+FFFD.
        (b"/bad\xff\xfe", b"/bad%FF%FE", "/bad\ufffd\ufffd", "/bad%FF%FE"),
        # No REQUEST_URI: raw_path is PATH_INFO's bytes.
        (b"/caf\xc3\xa9", None, "/caf\u00e9", "/caf\xc3\xa9"),
        # A fragment is not part of the path.
        (b"/frag", b"/frag#top", "/frag", "/frag"),
    ],
    ids=["utf8", "percent-once", "encoded-slash", "invalid-utf8", "no-request-uri", "fragment"],
)
def test_s2_path_and_raw_path(server, address, path_info, request_uri, path, raw_path):
    """S2/E2: path = PATH_INFO decoded UTF-8 (replacement characters for invalid bytes),
    never percent-decoded again; raw_path = the path part of REQUEST_URI as bytes, else
    PATH_INFO's bytes (shown latin-1 here)."""
    pairs = [GET, ("PATH_INFO", path_info)]
    if request_uri is not None:
        pairs.append(("REQUEST_URI", request_uri))
    s = ask_scope(address, pairs)
    assert s["path"] == path
    assert s["raw_path"] == raw_path


def test_s2_query_string_is_the_raw_bytes(server):
    """S2/V1: query_string is QUERY_STRING's bytes, not decoded."""
    pairs = [GET, ("PATH_INFO", "/scope"), ("QUERY_STRING", b"q=caf\xc3\xa9&r=%20&s")]
    s = ask_scope(server.tcp, pairs)
    assert s["query_string"] == "q=caf\xc3\xa9&r=%20&s"
    assert s["query_string_is_bytes"]
    assert ask_scope(server.tcp, [GET, ("PATH_INFO", "/scope")])["query_string"] == ""


@pytest.mark.parametrize(
    ("script_name", "path_info", "modifier1", "root_path", "path"),
    [
        ("/app", "/app/x", 0, "/app", "/app/x"),
        ("/app", "/app/x", 30, "/app", "/app/x"),
        ("/app/", "/app/x", 30, "/app", "/app/x"),
        ("/app", "/app", 30, "/app", "/app"),
        ("", "/x", 0, "", "/x"),
        (None, "/x", 0, "", "/x"),
    ],
)
def test_s2_root_path_and_full_path(server, script_name, path_info, modifier1, root_path, path):
    """S2/F4: root_path is SCRIPT_NAME (no trailing slash) and path keeps the full path
    (/app/x with root_path /app), with modifier1 0 and 30 alike, as Starlette and uvicorn
    expect."""
    pairs = [GET, ("PATH_INFO", path_info)]
    if script_name is not None:
        pairs.append(("SCRIPT_NAME", script_name))
    s = ask_scope(server.tcp, pairs, modifier1=modifier1)
    assert (s["root_path"], s["path"]) == (root_path, path)


def test_s2_v3_headers_repeated_and_lowercase(server, address):
    """S2/V3: header names lowercase with "-"; a repeated client header (nginx < 1.23 sends
    repeated vars) is kept or joined with ", " ("; " for cookie), never lost; HTTP_HOST
    given twice (the user's override after `include uwsgi_params;`) is one host header with
    the last value."""
    pairs = nginx_vars(
        path="/scope",
        headers=[
            ("X-Multi", "a"),
            ("Accept", "text/html"),
            ("X-Multi", "b"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
            ("X_Under_Score", "u"),
        ],
    )
    pairs.append(("HTTP_HOST", "override.test"))
    s = ask_scope(address, pairs)
    names = [k for k, _ in s["headers"]]
    assert all(k == k.lower() and "_" not in k for k in names), names
    assert ", ".join(header_values(s, "x-multi")) == "a, b"
    assert "; ".join(header_values(s, "cookie")) == "a=1; b=2"
    assert header_values(s, "accept") == ["text/html"]
    assert header_values(s, "x-under-score") == ["u"]
    assert header_values(s, "host") == ["override.test"]
    # arrival order of the distinct headers
    firsts = [n for i, n in enumerate(names) if n not in names[:i]]
    assert firsts.index("x-multi") < firsts.index("accept") < firsts.index("cookie")


def test_s2_content_type_and_length_only_when_not_empty(server, address):
    """S2: nginx sends CONTENT_TYPE and CONTENT_LENGTH empty on a GET: no empty
    content-type/content-length header; on a POST they are there, once each."""
    s = scope_for(address)
    assert header_values(s, "content-type") == []
    assert header_values(s, "content-length") == []
    s = scope_for(address, method="POST", body=b"hello", content_type="text/plain")
    assert header_values(s, "content-type") == ["text/plain"]
    assert header_values(s, "content-length") == ["5"]


@pytest.mark.parametrize(
    ("name", "body", "length"),
    [
        ("nginx-post-form.bin", b"name=gunicorn&proto=uwsgi", "25"),
        ("nginx-post-chunked.bin", b"abc", "3"),
    ],
)
def test_s2_v3_real_nginx_post_has_one_content_length(server, name, body, length):
    """S2/V3/E1: the bytes nginx 1.22 really sends for a POST repeat the client's
    Content-Type/Content-Length as HTTP_CONTENT_TYPE/HTTP_CONTENT_LENGTH (and forward
    HTTP_TRANSFER_ENCODING for a de-chunked body). The scope has one content-length, the one
    that frames the body (CONTENT_LENGTH), and at most one content-type: two copies break
    apps that read the header (Django joins them into "25,25")."""
    reply = Reply(talk(server.tcp, vector(name))[0])
    s = reply.json()
    assert s["body"] == body.decode()
    assert header_values(s, "content-length") == [length]
    assert len(header_values(s, "content-type")) <= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_s2_e4_client_falls_back_to_the_socket_peer(server, transport):
    """S2/E4: client is [REMOTE_ADDR, int(REMOTE_PORT)]; without the vars the socket peer
    on TCP, None on a unix socket."""
    address = address_of(server, transport)
    pairs = [p for p in nginx_vars(path="/scope") if p[0] not in ("REMOTE_ADDR", "REMOTE_PORT")]
    with connect(address) as s:
        s.sendall(packet(pairs))
        local = s.getsockname()
        got = Reply(read_all(s)).json()
    if transport == "unix":
        assert got["client"] is None
    else:
        assert got["client"] == [local[0], local[1]]
        assert got["client_port_is_int"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_s2_e5_server_falls_back_to_the_listener(server, transport):
    """S2/E5: server is [SERVER_NAME, int(SERVER_PORT)] from the vars, else the listening
    host and port; on a unix socket without the vars it is unknown (None, or the socket path
    without a port)."""
    address = address_of(server, transport)
    got = ask_scope(address, [GET, ("PATH_INFO", "/scope")])
    if transport == "unix":
        assert got["server"] in (None, [address, None]), got["server"]
    else:
        assert got["server"] == [address[0], address[1]]
        assert got["server_port_type"] == "int"
    got = ask_scope(
        address, [GET, ("PATH_INFO", "/scope"), ("SERVER_NAME", "n.test"), ("SERVER_PORT", "81")]
    )
    assert got["server"] == ["n.test", 81]


#: What each control var becomes in the scope (``OVERRIDES`` gives the two values sent).
SCOPE_OF = {
    "REQUEST_METHOD": lambda s: s["method"],
    "CONTENT_TYPE": lambda s: header_values(s, "content-type"),
    "PATH_INFO": lambda s: s["path"],
    "SCRIPT_NAME": lambda s: s["root_path"],
    "QUERY_STRING": lambda s: s["query_string"],
    "REQUEST_URI": lambda s: s["raw_path"],
    "REMOTE_ADDR": lambda s: s["client"][0],
    "REMOTE_PORT": lambda s: s["client"][1],
    "HTTPS": lambda s: s["scheme"],
    "UWSGI_SCHEME": lambda s: s["scheme"],
    "SERVER_PROTOCOL": lambda s: s["http_version"],
    "SERVER_NAME": lambda s: s["server"][0],
    "SERVER_PORT": lambda s: s["server"][1],
}
SCOPE_EXPECTED = {
    "REQUEST_METHOD": "POST",
    "CONTENT_TYPE": ["text/plain"],
    "PATH_INFO": "/environ",
    "SCRIPT_NAME": "/mount",
    "QUERY_STRING": "b=2",
    "REQUEST_URI": "/environ",
    "REMOTE_ADDR": "198.51.100.7",
    "REMOTE_PORT": 5000,
    "HTTPS": "https",
    "UWSGI_SCHEME": "https",
    "SERVER_PROTOCOL": "1.1",
    "SERVER_NAME": "example.com",
    "SERVER_PORT": 8443,
}


@pytest.mark.parametrize("name", [n for n in CONTROL_VARS if n != "CONTENT_LENGTH"])
def test_s2_v3_repeated_control_var_last_one_wins(server, name):
    """S2/V3: `include uwsgi_params;` then `uwsgi_param NAME value;`: the scope follows the
    last value (the first PATH_INFO, /hello, is a route of the app: it is not served)."""
    first, last = OVERRIDES[name]
    pairs = [p for p in nginx_vars(path="/environ") if p[0] != name]
    pairs += [(name, first), ("X_BETWEEN", "1"), (name, last)]
    s = ask_scope(server.tcp, pairs)
    assert SCOPE_OF[name](s) == SCOPE_EXPECTED[name]


def test_s2_state_is_a_shallow_copy(server):
    """S2/S5: each request's state is a copy of the lifespan state: what one request puts
    in it is not seen by the next."""
    reply = Reply(talk(server.tcp, request_packet(path="/state-mutate"))[0])
    assert reply.json() == {"had_state": True}
    s = scope_for(server.tcp)
    assert s["has_state"]
    assert "mutated" not in s["state"]
    assert s["state"]["started"] is True


# -- S3: the request body -------------------------------------------------------------------


def test_s3_body_arrives_in_several_events(server, address):
    """S3/B1: a 1 MiB body sent in pieces reaches the app in several http.request events,
    more_body True on all but the last, exactly CONTENT_LENGTH bytes."""
    body = os.urandom(1 << 20)
    data = request_packet(method="POST", path="/scope", body=body)
    head = len(data) - len(body)
    cuts = [0, head + 1000, head + 300_000, head + 700_000, len(data)]
    parts = [data[a:b] for a, b in zip(cuts, cuts[1:])]
    s = Reply(talk(address, parts, delay=0.05)[0]).json()
    assert s["body_len"] == len(body)
    assert s["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert s["events"] >= 2, s["more_body"]
    assert s["more_body"][-1] is False and all(s["more_body"][:-1])
    assert s["max_chunk"] < len(body)
    assert s["other_events"] == []


def test_s3_body_is_exactly_content_length(server, address):
    """S3/B1/F5: the body ends at CONTENT_LENGTH whatever follows it."""
    data = request_packet(method="POST", path="/scope", body=b"exact") + b"GARBAGE" * 1000
    s = Reply(talk(address, data)[0]).json()
    assert (s["body"], s["body_len"]) == ("exact", 5)
    assert s["more_body"][-1] is False


def test_s3_no_body_is_one_empty_event(server):
    """S3/V5: a GET gets one http.request event with no body and more_body False; bytes
    after a request without CONTENT_LENGTH are not its body."""
    s = scope_for(server.tcp)
    assert (s["events"], s["more_body"], s["body_len"]) == (1, [False], 0)
    for pairs in (
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/scope")],
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/scope"), ("CONTENT_LENGTH", "")],
    ):
        s = Reply(talk(server.tcp, packet(pairs, b"not a body"))[0]).json()
        assert s["body_len"] == 0 and s["more_body"] == [False]


def test_s3_x3_peer_leaving_mid_body_gives_http_disconnect(server, address):
    """S3/X3: the peer sends the head and half the body, then closes: the app's receive()
    returns http.disconnect (not a short body passed off as complete); nothing above debug
    is logged, the worker keeps serving."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    name = new_name()
    body = b"x" * 100_000
    data = request_packet(method="POST", path="/disconnect", query=name, body=body)
    with connect(address) as s:
        s.sendall(data[: len(data) - 50_000])
        time.sleep(0.3)
    got = wait_marker(server, name)
    assert got["types"][-1] == "http.disconnect", got
    assert got["received"] < len(body)
    good_request(address)
    no_high_level_lines(mark)
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


def test_s3_app_waiting_after_the_body_sees_the_disconnect(server, address):
    """S3: an app that read the whole body and waits on receive() gets http.disconnect when
    the peer hangs up, and not before."""
    name = new_name()
    body = b"y" * 5000
    with connect(address) as s:
        s.sendall(request_packet(method="POST", path="/disconnect", query=name, body=body))
        time.sleep(0.5)
        assert not (markers(server) / name).exists(), "http.disconnect before the peer left"
    got = wait_marker(server, name)
    assert got == {"types": [*got["types"][:-1], "http.disconnect"], "received": len(body)}
    assert set(got["types"][:-1]) == {"http.request"}


def test_s3_receive_after_the_response_is_http_disconnect(server, address):
    """S3: once the response is sent, receive() returns http.disconnect (at once: the app
    gives up after 5 s)."""
    name = new_name()
    reply = Reply(
        talk(address, request_packet(method="POST", path="/after", query=name, body=b"b"))[0]
    )
    assert reply.body == b"answered"
    assert wait_marker(server, name) == {"type": "http.disconnect"}


# -- S4: the response -----------------------------------------------------------------------


def test_s4_r3_streamed_response_is_not_chunked(server, address):
    """S4/R3/R2: several more_body events without content-length: no Transfer-Encoding, no
    chunk markers, the body ends at close; no Server, Date or Connection header."""
    raw, _ = talk(address, request_packet(path="/stream"))
    reply = Reply(raw)
    assert reply.status_line == "HTTP/1.1 200 OK"
    assert reply.header_names() == ["content-type"]
    assert reply.body == b"".join(b"chunk %d\n" % i for i in range(5))


def test_s4_content_length_response(server, address):
    """S4/R3: with the app's content-length the body is exactly that, over two events."""
    reply = Reply(talk(address, request_packet(path="/length"))[0])
    assert reply.header("Content-Length") == "10"
    assert reply.header("Transfer-Encoding") is None
    assert reply.body == b"0123456789"


def test_s4_r5_small_response_in_one_write(server):
    """S4/R5: a small response (start + one body event) leaves in one write: the first
    receive holds the whole of it."""
    with connect(server.tcp) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request_packet(path="/hello"))
        assert select.select([s], [], [], 10)[0]
        first = s.recv(65536)
    assert first.endswith(b"\r\n\r\nHello world\n"), first


def test_s4_r2_hop_by_hop_headers_stripped(server, address):
    """S4/R2: Connection, Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade,
    Proxy-Connection from the app are dropped."""
    reply = Reply(talk(address, request_packet(path="/hop"))[0])
    assert reply.status == 200
    assert reply.header_names() == ["x-kept"]
    assert reply.body == b"hop"


def test_s4_repeated_response_headers_kept(server):
    """S4/R1: two set-cookie headers both reach the wire, in order."""
    reply = Reply(talk(server.tcp, request_packet(path="/cookies"))[0])
    assert [v for k, v in reply.headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]


def test_s4_r3_content_length_truncates(server, address):
    """S4/R3: never more than content-length bytes."""
    reply = Reply(talk(address, request_packet(path="/long"))[0])
    assert reply.header("Content-Length") == "4"
    assert reply.body == b"0123"


def test_s4_r3_short_body_warns_and_closes(server):
    """S4/R3: the app sent fewer bytes than its content-length: a warning, and close."""
    mark = LogMark(server)
    reply = Reply(talk(server.tcp, request_packet(path="/short"))[0])
    assert reply.header("Content-Length") == "100"
    assert reply.body == b"only this"
    line = mark.wait_for(r"\[WARNING\]")
    assert "Content-Length" in line and "/short" in line, line


def test_s4_unfinished_response_closes(server):
    """S4/R3: an app that returns without its last body event: the connection ends after
    what it sent."""
    raw, _ = talk(server.tcp, request_packet(path="/unfinished"))
    assert raw.count(b"HTTP/1.1 ") == 1
    assert Reply(raw).body == b"unfinished"
    good_request(server.tcp)


@pytest.mark.parametrize("route", ["/head", "/length", "/big?200000"])
def test_s4_r4_head_has_no_body(server, address, route):
    """S4/R4: HEAD: no body bytes even though the app sent them; Content-Length kept."""
    path, _, query = route.partition("?")
    raw, _ = talk(address, request_packet(method="HEAD", path=path, query=query))
    reply = Reply(raw)
    assert reply.status == 200
    assert reply.body == b""
    assert reply.header("Content-Length") == {"/head": "11", "/length": "10"}.get(path, "200000")


@pytest.mark.parametrize(("code", "length"), [(204, None), (304, "10")])
def test_s4_r4_bodiless_statuses(server, address, code, length):
    """S4/R4: 204 and 304: no body bytes (the app sent "never"); Content-Length kept for
    304, dropped for 204."""
    reply = Reply(talk(address, request_packet(path="/status", query=str(code)))[0])
    assert reply.status_line.startswith(f"HTTP/1.1 {code} ")
    assert reply.body == b""
    assert reply.header("Content-Length") == length


def test_s4_r6_expect_is_ignored(server, address):
    """S4/R6: HTTP_EXPECT (nginx already answered it) never gives a 1xx."""
    data = request_packet(
        method="POST", path="/echo", body=b"expected", headers=[("Expect", "100-continue")]
    )
    raw, _ = talk(address, data)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.count(b"HTTP/1.1") == 1
    assert Reply(raw).body == b"expected"


@pytest.mark.parametrize("kind", ["value", "name"])
def test_s4_r1_invalid_header_is_500(server, kind):
    """S4/R1: a header value with CR LF (b"x\\r\\ny") or a name that is not a token: the app
    gets an error from send(), the peer a 500, nothing malformed reaches the wire; logged as
    X2; the worker keeps serving."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    raw, _ = talk(server.tcp, request_packet(path="/bad-header", query=kind))
    reply = Reply(raw)
    assert reply.status == 500
    assert raw.count(b"HTTP/1.1 ") == 1
    assert b"x\r\ny" not in raw and b"bad name" not in raw and b"never sent" not in raw
    assert reply.header("Content-Length") == str(len(reply.body))
    assert wait_marker(server, f"bad-header-{kind}")["raised"] is not None
    app_error_logged(mark)
    good_request(server.tcp)
    assert server.live_worker_pids() == pids


@pytest.mark.parametrize("code", [42, 1000, 0])
def test_s4_r1_bad_status_is_500(server, code):
    """S4/R1: a status that is not a 3-digit code: the app gets an error, the peer a 500,
    nothing malformed on the wire."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    raw, _ = talk(server.tcp, request_packet(path="/bad-status", query=str(code)))
    reply = Reply(raw)
    assert reply.status == 500
    assert raw.count(b"HTTP/1.1 ") == 1
    assert b"never sent" not in raw
    assert wait_marker(server, f"bad-status-{code}")["raised"] is not None
    app_error_logged(mark)
    good_request(server.tcp)
    assert server.live_worker_pids() == pids


def test_s4_x2_exception_before_start_is_500(server, address):
    """S4/X2: an exception before http.response.start: a 500 with Content-Length, logged with
    the traceback; the worker keeps serving."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    reply = Reply(talk(address, request_packet(path="/raise"))[0])
    assert reply.status == 500
    assert reply.header("Content-Length") == str(len(reply.body))
    assert b"boom" not in reply.raw
    app_error_logged(mark, "boom from the asgi test app (before start)")
    good_request(address)
    assert server.live_worker_pids() == pids


def test_s4_x2_exception_after_start_closes(server, address):
    """S4/X2: an exception after the start: no 500 appended, the connection closes after
    what was sent; logged with the traceback."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    raw, _ = talk(address, request_packet(path="/raise-late"))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.count(b"HTTP/1.1 ") == 1
    assert Reply(raw).body == b"partial"
    app_error_logged(mark, "boom from the asgi test app (after start)")
    good_request(address)
    assert server.live_worker_pids() == pids


def test_s4_x2_app_returning_without_a_response_is_500(server):
    """S4/X2: an app that returns without starting a response: the peer gets a 500 (as
    uvicorn and gunicorn do), the worker keeps serving."""
    pids = server.live_worker_pids()
    reply = Reply(talk(server.tcp, request_packet(path="/no-response"))[0])
    assert reply.status == 500
    good_request(server.tcp)
    assert server.live_worker_pids() == pids


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 MiB file of random bytes."""
    path = tmp_path_factory.mktemp("blob") / "blob.bin"
    path.write_bytes(os.urandom(3 << 20))
    return path


def test_s4_pathsend_sends_the_file(server, address, blob):
    """S4: the scope offers the http.response.pathsend extension; the file it names is sent
    whole (sendfile), with the app's Content-Length."""
    assert "http.response.pathsend" in scope_for(address)["extensions"]
    reply = Reply(talk(address, request_packet(path="/pathsend", query=str(blob)))[0])
    assert reply.status == 200, reply
    data = blob.read_bytes()
    assert reply.header("Content-Length") == str(len(data))
    assert reply.body == data


def test_s4_r4_pathsend_on_head(server, blob):
    """S4/R4: HEAD on a pathsend response: no body bytes."""
    reply = Reply(
        talk(server.tcp, request_packet(method="HEAD", path="/pathsend", query=str(blob)))[0]
    )
    assert reply.status == 200
    assert reply.header("Content-Length") == str(blob.stat().st_size)
    assert reply.body == b""


# -- S5: lifespan ---------------------------------------------------------------------------


def test_s5_startup_ran_before_the_first_request(server):
    """S5: lifespan startup (0.3 s) completed before any request was accepted: its state is
    in every request's scope, and it ran once, in this worker."""
    s = scope_for(server.tcp)
    pid = server.live_worker_pids()[0]
    assert s["has_state"]
    assert s["state"] == {"started": True, "pid": pid}
    assert s["pid"] == pid
    assert events(server)[0] == f"startup {pid}"
    assert events(server).count(f"startup {pid}") == 1


def test_s5_failed_startup_stops_gunicorn(tmp_path):
    """S5: an app that sends lifespan.startup.failed: the worker stops with the app's
    message, and gunicorn (as its asgi_lifespan setting documents) stops too instead of
    booting workers in a loop; no request is ever served."""
    message = "database unreachable (asgi test)"
    g = asgi_server(tmp_path, env={"ASGI_FAIL_STARTUP": message})
    g.start(wait=False)
    try:
        rc = g.proc.wait(30)
    finally:
        g.stop()
    assert rc != 0
    out = g.output()
    assert message in out, out
    assert not any(line.startswith("startup") for line in events(g))


def test_s5_g2_term_finishes_in_flight_then_runs_shutdown(tmp_path):
    """S5/G2: TERM lets the request in flight (1.5 s) finish, then lifespan shutdown runs,
    then gunicorn exits 0."""
    g = asgi_server(tmp_path).start()
    result: dict = {}

    def slow() -> None:
        result["raw"] = talk(g.tcp, request_packet(path="/sleep", query="1.5"), timeout=15)[0]

    t = threading.Thread(target=slow)
    try:
        pid = g.live_worker_pids()[0]
        t.start()
        time.sleep(0.5)
        g.send(signal.SIGTERM)
        t.join(15)
        assert g.proc.wait(15) == 0
    finally:
        g.stop()
    reply = Reply(result["raw"])
    assert reply.status == 200, reply
    assert reply.json()["slept"] == 1.5
    assert events(g) == [f"startup {pid}", f"done /sleep {pid}", f"shutdown {pid}"]


# -- S6: concurrency ------------------------------------------------------------------------


def test_s6_200_concurrent_slow_requests_on_one_worker(server):
    """S6: 200 requests that each wait 0.5 s in the app, at once, on one worker: they run
    concurrently on its event loop (serially it would take 100 s)."""
    pids = server.live_worker_pids()

    def one(_: int) -> Reply:
        return Reply(talk(server.tcp, request_packet(path="/sleep", query="0.5"), timeout=60)[0])

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=200) as pool:
        replies = list(pool.map(one, range(200)))
    elapsed = time.monotonic() - started
    assert [r.status for r in replies] == [200] * 200
    got = [r.json() for r in replies]
    assert {g["pid"] for g in got} == set(pids)
    assert max(g["inflight"] for g in got) >= 20, sorted(g["inflight"] for g in got)[-5:]
    assert elapsed < 20, elapsed


def test_s6_a_waiting_request_does_not_block_the_others(server, address):
    """S6: while one request waits for a body that does not come, others are served."""
    name = new_name()
    data = request_packet(method="POST", path="/disconnect", query=name, body=b"z" * 10)
    with connect(address) as stalled:
        stalled.sendall(data[:-10])
        for _ in range(3):
            good_request(address)
    assert wait_marker(server, name)["types"][-1] == "http.disconnect"


def test_s6_event_loop_is_the_chosen_one(server):
    """S6: --asgi-loop asyncio runs asyncio's loop, uvloop runs uvloop's."""
    if not _gunicorn_has("asgi_loop"):
        pytest.skip("this gunicorn has no asgi_loop setting")
    loop = scope_for(server.tcp)["loop"]
    assert loop.split(".")[0] == server.loop, loop


def test_g4_access_log_shows_the_real_client(server):
    """S1/G4: the access log (gunicorn's default format) names the client from REMOTE_ADDR."""
    tag = new_name()
    talk(server.tcp, request_packet(path="/hello", query=f"id={tag}"))
    access = server.tmp / "access.log"
    lines: list[str] = []

    def look() -> bool:
        if access.exists():
            lines[:] = [ln for ln in access.read_text().splitlines() if tag in ln]
        return bool(lines)

    assert wait_until(look, timeout=10), server.log()[-2000:]
    assert lines[0].startswith("203.0.113.9 - - [")
    assert f'"GET /hello?id={tag} HTTP/1.1" 200 12' in lines[0]


# -- S1: the protocol rules of the WSGI workers, on the ASGI worker ----------------------------


def test_s1_f1_vars_block_of_65535_bytes(server, address):
    """S1/F1: a vars block of 65535 bytes is accepted."""
    pairs = nginx_vars(path="/scope")
    base = len(b"".join(var(k.encode(), v.encode()) for k, v in pairs)) + len(var(b"X_PAD", b""))
    pairs.append(("X_PAD", "x" * (65535 - base)))
    assert ask_scope(address, pairs)["path"] == "/scope"


def test_s1_f1_v6_empty_block_is_a_get(server):
    """S1/F1/V6: a header of size 0 is answered at once: a GET of the empty path."""
    s = Reply(talk(server.tcp, header(0, 0))[0]).json()
    assert (s["method"], s["path"]) == ("GET", "")


def test_s1_f2_one_byte_per_segment(server, address):
    """S1/F2: every byte in its own segment."""
    body = b"0123456789"
    data = packet(
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", "10")], body
    )
    reply = Reply(talk(address, [data[i : i + 1] for i in range(len(data))], delay=0.003)[0])
    assert reply.body == body
    assert reply.header("X-Length") == "10"


@pytest.mark.parametrize("case", sorted(F3_BAD_BLOCKS))
def test_s1_f3_malformed_vars_block_is_400(server, case):
    """S1/F3: zero-length key, overrunning sizes, stray bytes → 400, one WARNING."""
    assert_refused(server, server.tcp, raw_packet(F3_BAD_BLOCKS[case]), 400, "vars block")


def test_s1_f3_error_on_every_transport(server, address):
    """S1/F3/X1: answered and logged the same way on every transport."""
    data = raw_packet(F3_BAD_BLOCKS["zero_length_key"])
    assert_refused(server, address, data, 400, "zero-length key")


@pytest.mark.parametrize("modifier1", [1, 5, 17, 255])
def test_s1_f4_other_modifier1_is_501(server, modifier1):
    """S1/F4: modifier1 other than 0 and 30 → 501."""
    data = packet(nginx_vars(path="/hello"), modifier1=modifier1)
    assert_refused(server, server.tcp, data, 501, f"modifier1 {modifier1}")


def test_s1_f5_second_packet_after_the_body_is_never_served(server, address):
    """S1/F5: a packet smuggled after the body is never parsed: one response, /raise never
    runs."""
    mark = LogMark(server)
    data = request_packet(method="POST", path="/echo", body=b"hello")
    data += request_packet(path="/raise")
    raw, _ = talk(address, data)
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    assert Reply(raw).body == b"hello"
    good_request(address)
    assert "boom" not in mark.new()


def test_s1_f5_connection_closed_after_response(server, address):
    """S1/F5: the server closes after its response without waiting for the peer."""
    with connect(address, timeout=5) as s:
        s.sendall(request_packet(path="/hello"))
        started = time.monotonic()
        raw = read_all(s)
    assert Reply(raw).status == 200
    assert time.monotonic() - started < 3


def test_s1_f6_empty_connection_logs_nothing_above_debug(server, address):
    """S1/F6: EOF before the first byte: nothing written, nothing logged above debug."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    for _ in range(3):
        with connect(address) as s:
            s.shutdown(socket.SHUT_WR)
            assert read_all(s) == b""
    with connect(address):
        pass
    good_request(address)
    no_high_level_lines(mark)
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


@pytest.mark.parametrize("case", sorted(F7_FOREIGN))
def test_s1_f7_http_or_tls_is_400_at_once(server, case):
    """S1/F7: HTTP or TLS to the uwsgi port: a plain HTTP/1.1 400 at once, one WARNING that
    says what the front end speaks and names uwsgi_pass."""
    what = "TLS" if case.startswith("tls") else "HTTP"
    pids = server.live_worker_pids()
    mark = LogMark(server)
    with connect(server.tcp, timeout=10) as s:
        peer = f"127.0.0.1:{s.getsockname()[1]}"
        started = time.monotonic()
        s.sendall(F7_FOREIGN[case])
        raw = read_all(s)
        elapsed = time.monotonic() - started
    assert elapsed < 2, elapsed
    reply = Reply(raw)
    assert reply.status_line.startswith("HTTP/1.1 400 ")
    assert reply.header("Content-Length") == str(len(reply.body))
    line = mark.wait_for(r"\[WARNING\].*" + re.escape(peer))
    assert f"speaking {what}" in line and "uwsgi_pass" in line, line
    good_request(server.tcp)
    assert len(mark.lines("WARNING")) == 1, mark.new()
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


@pytest.mark.parametrize("case", sorted(V2_BAD))
def test_s1_v2_bad_names_and_values_are_400(server, case):
    """S1/V2: a var name that is not printable ASCII, a CR/LF/NUL in a request or HTTP_*
    value (a header value with CR) → 400."""
    key, value = V2_BAD[case]
    block = var(b"REQUEST_METHOD", b"GET") + var(key, value)
    assert_refused(server, server.tcp, raw_packet(block), 400)


def test_s1_v3_content_length_twice(server):
    """S1/V3: CONTENT_LENGTH twice with one value frames the body; two values → 400."""
    base = [p for p in nginx_vars(method="POST", path="/echo") if p[0] != "CONTENT_LENGTH"]
    same = [*base, ("CONTENT_LENGTH", "3"), ("CONTENT_LENGTH", "3")]
    reply = Reply(talk(server.tcp, packet(same, b"abc"))[0])
    assert (reply.status, reply.body) == (200, b"abc")
    two = [*base, ("CONTENT_LENGTH", "3"), ("CONTENT_LENGTH", "2")]
    assert_refused(server, server.tcp, packet(two, b"abc"), 400, "CONTENT_LENGTH", "twice")


def test_s1_v4_default_limits(server):
    """S1/V4: REQUEST_URI over limit_request_line (4094) → 414; more than 100 HTTP_* vars →
    431; an HTTP_* var over 8190 bytes → 431; more than 1000 vars → 431."""
    data = packet([GET, ("PATH_INFO", "/hello"), ("REQUEST_URI", "/" + "a" * 4094)])
    assert_refused(server, server.tcp, data, 414, "limit_request_line")
    headers = [GET, ("PATH_INFO", "/hello")] + [(f"HTTP_X_H{i}", "v") for i in range(101)]
    assert_refused(server, server.tcp, packet(headers), 431, "limit_request_fields")
    data = packet([GET, ("PATH_INFO", "/hello"), ("HTTP_X_BIG", "v" * 9000)])
    assert_refused(server, server.tcp, data, 431, "limit_request_field_size")
    many = [GET, ("PATH_INFO", "/hello")] + [(f"V{i}", "") for i in range(999)]
    assert_refused(server, server.tcp, packet(many), 431, "1000")


@pytest.mark.parametrize("value", V5_BAD)
def test_s1_v5_bad_content_length_is_400(server, value):
    """S1/V5: CONTENT_LENGTH that is not 1-19 ASCII digits → 400."""
    pairs = [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", value.encode())]
    assert_refused(server, server.tcp, packet(pairs, b"12345"), 400, "CONTENT_LENGTH")


def test_s1_v5_content_length_beyond_any_body_is_413(server):
    """S1/V5/X1: 19 nines → 413."""
    pairs = [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", "9" * 19)]
    assert_refused(server, server.tcp, packet(pairs), 413, "CONTENT_LENGTH")


def test_s1_v6_no_request_method_is_a_get_warned_once(server, address):
    """S1/V6: no REQUEST_METHOD: served as GET; one WARNING per worker naming the include."""
    for _ in range(3):
        s = ask_scope(address, [("PATH_INFO", "/scope")])
        assert s["method"] == "GET"
        assert s["http_version"] == "1.1"
    warned = [
        line
        for line in server.log().splitlines()
        if "[WARNING]" in line and "sent no REQUEST_METHOD" in line
    ]
    assert len(warned) == 1, warned
    assert "include uwsgi_params;" in warned[0]


@pytest.mark.parametrize("method", ["", "G ET", "GET\x01", "(GET)", "G\xe9T"])
def test_s1_v6_request_method_must_be_a_token(server, method):
    """S1/V6: a REQUEST_METHOD that is not a token → 400."""
    data = packet([("REQUEST_METHOD", method.encode("latin-1")), ("PATH_INFO", "/hello")])
    assert_refused(server, server.tcp, data, 400, "REQUEST_METHOD")


def test_s1_v7_magic_uwsgi_vars_are_inert(server, tmp_path):
    """S1/V7: UWSGI_SCRIPT/FILE/CHDIR/SETENV/... import, run and change nothing."""
    marker, magic = magic_uwsgi_vars(tmp_path)
    s = ask_scope(server.tcp, [*nginx_vars(path="/scope"), *magic.items()])
    assert (s["cwd"], s["E2E_FOO"], s["e2e_marker_imported"]) == (str(TESTS), None, False)
    s = scope_for(server.tcp)
    assert (s["cwd"], s["E2E_FOO"], s["e2e_marker_imported"]) == (str(TESTS), None, False)
    assert not marker.exists()


def test_s1_x3_peer_hangs_up_mid_response(server, address):
    """S1/X3: the peer resetting while a large response is written: debug noise only."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    for _ in range(3):
        with connect(address) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(request_packet(path="/big", query="30000000"))
            assert s.recv(100).startswith(b"HTTP/1.1 200")
    good_request(address)
    no_high_level_lines(mark)
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


def test_s1_x3_peer_hangs_up_mid_head(server, address):
    """S1/X3: EOF inside the header or the vars: no answer, nothing above debug."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    data = request_packet(path="/hello")
    for cut in (2, 4, 20, len(data) - 1):
        raw, _ = talk(address, data[:cut], shut_write=True)
        assert raw == b""
    good_request(address)
    no_high_level_lines(mark)
    assert server.live_worker_pids() == pids


def test_s1_x1_x4_flood_of_bad_packets_keeps_the_worker(server):
    """S1/X1/X4: 150 bad packets of every kind: an error status or a close each, no
    traceback, no ERROR, the worker is never restarted."""
    rng = random.Random(4321)
    pids = server.live_worker_pids()
    mark = LogMark(server)
    good = request_packet(method="POST", path="/echo", body=b"abc")
    statuses = []
    for i in range(150):
        kind = i % 5
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(4, 200)))
        elif kind == 1:
            buf = bytearray(good)
            for _ in range(3):
                buf[rng.randrange(4, len(buf))] = rng.randrange(256)
            data = bytes(buf)
        elif kind == 2:
            data = raw_packet(F3_BAD_BLOCKS[sorted(F3_BAD_BLOCKS)[i % len(F3_BAD_BLOCKS)]])
        elif kind == 3:
            data = F7_FOREIGN["http_get"]
        else:
            data = header(0, rng.randrange(1, 65536)) + os.urandom(rng.randrange(0, 300))
        raw, _ = talk(server.tcp, data, shut_write=True)
        if raw:
            statuses.append(Reply(raw).status)
    good_request(server.tcp)
    assert len(statuses) > 90
    assert set(statuses) <= {200, 400, 404, 413, 414, 431, 501}, set(statuses)
    assert "Traceback" not in mark.new()
    assert not mark.lines("ERROR") and not mark.lines("CRITICAL"), mark.new()
    assert server.live_worker_pids() == pids


def test_s1_x4_random_vars_blocks_never_crash(server):
    """S1/X4: random well-framed vars: always a well-formed answer (the scope, or 400),
    never a crash or a traceback."""
    rng = random.Random(77)
    pids = server.live_worker_pids()
    mark = LogMark(server)
    alphabet = b"ABCHTP_ \r\n\x00\xffwsgi.\x01/%-"
    for _ in range(60):
        pairs: list[Pair] = [GET, ("PATH_INFO", "/scope")]
        for _ in range(rng.randrange(0, 8)):
            key = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 10)))
            value = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 10)))
            pairs.append((key, value))
        rng.shuffle(pairs)
        reply = Reply(talk(server.tcp, packet(pairs))[0])
        assert reply.status in (200, 400), reply
        if reply.status == 200:
            json.loads(reply.body)
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


def test_s1_x4_worker_survives_the_module(server):
    """S1/X4: after everything above, the first worker still serves."""
    assert len(server.worker_pids()) == 1
    good_request(server.tcp)


# -- settings of their own ------------------------------------------------------------------


class TestSettings:
    """--timeout 4 (read timeout 2 s), --worker-connections 4, --root-path /mnt,
    --asgi-lifespan off, --asgi-disconnect-grace-period 1."""

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory) -> Iterator[Gunicorn]:
        tmp = tmp_path_factory.mktemp("asgi-settings")
        args = [
            "--timeout",
            "4",
            "--worker-connections",
            "4",
            "--root-path",
            "/mnt",
            "--asgi-disconnect-grace-period",
            "1",
        ]
        if _gunicorn_has("asgi_lifespan"):
            args += ["--asgi-lifespan", "off"]
        g = asgi_server(tmp, args=args).start()
        yield g
        g.stop()

    def test_s6_worker_connections_holds_the_excess(self, server):
        """S6: 12 slow requests at once with --worker-connections 4: never more than 4 in the
        app at once, and the others are held (accepting pauses), not refused: all complete."""

        def one(i: int) -> Reply:
            address = server.unix if i % 2 else server.tcp
            return Reply(talk(address, request_packet(path="/sleep", query="0.5"), timeout=30)[0])

        with ThreadPoolExecutor(max_workers=12) as pool:
            replies = list(pool.map(one, range(12)))
        assert [r.status for r in replies] == [200] * 12
        inflight = [r.json()["inflight"] for r in replies]
        assert max(inflight) <= 4, inflight
        assert max(inflight) >= 2, inflight

    def test_s6_heartbeat_runs_while_the_app_waits(self, server):
        """S6/G2: a request that waits 6 s (> --timeout 4) on I/O does not get the worker
        killed: the loop keeps the heartbeat going."""
        pids = server.live_worker_pids()
        reply = Reply(talk(server.tcp, request_packet(path="/sleep", query="6"), timeout=20)[0])
        assert reply.status == 200
        assert "WORKER TIMEOUT" not in server.log()
        assert server.live_worker_pids() == pids

    def test_s6_disconnect_grace_period_then_cancel(self, server):
        """S6: an app that never calls receive() and whose peer left is cancelled once
        asgi_disconnect_grace_period (1 s) has passed, as gunicorn defines it."""
        name = new_name()
        with connect(server.tcp) as s:
            s.sendall(request_packet(path="/ignore-disconnect", query=name))
            assert wait_until(lambda: (markers(server) / name).exists(), timeout=10)
        assert wait_until(
            lambda: json.loads((markers(server) / name).read_text())["state"] == "cancelled",
            timeout=10,
        ), (markers(server) / name).read_text()

    def test_s2_root_path_setting(self, server):
        """S2: no SCRIPT_NAME var: root_path is gunicorn's root_path setting and path the
        full path; a SCRIPT_NAME var wins over the setting."""
        s = ask_scope(server.tcp, [GET, ("PATH_INFO", "/x")])
        assert (s["root_path"], s["path"]) == ("/mnt", "/mnt/x")
        s = ask_scope(server.tcp, [GET, ("PATH_INFO", "/app/x"), ("SCRIPT_NAME", "/app")])
        assert (s["root_path"], s["path"]) == ("/app", "/app/x")

    def test_s5_lifespan_off_runs_no_startup(self, server):
        """S5: --asgi-lifespan off: the app's lifespan is never called, no state."""
        if not _gunicorn_has("asgi_lifespan"):
            pytest.skip("this gunicorn has no asgi_lifespan setting")
        s = ask_scope(server.tcp, [GET, ("PATH_INFO", "/scope")])
        assert not (s["state"] or {}).get("started")
        assert events(server) == [] or all(not e.startswith("startup") for e in events(server))

    @pytest.mark.parametrize("where", ["header", "vars", "body"])
    def test_s1_f8_stalled_peer_is_dropped(self, server, where):
        """S1/F8: a peer that stalls in the header, vars or body is dropped after the read
        timeout, before the arbiter would kill the worker."""
        pids = server.live_worker_pids()
        mark = LogMark(server)
        data = request_packet(method="POST", path="/echo", body=b"b" * 100)
        cut = {"header": 2, "vars": 30, "body": len(data) - 50}[where]
        raw, peer, elapsed = trickle(server.tcp, [data[:cut]], 1.5)
        line = mark.wait_for(r"\[WARNING\].*" + re.escape(peer))
        assert "dropped" in line, line
        assert raw == b""
        assert 1.5 < elapsed < 8, elapsed
        good_request(server.tcp)
        time.sleep(0.5)
        assert "WORKER TIMEOUT" not in server.log()
        assert "Traceback" not in mark.new()
        assert server.live_worker_pids() == pids


class TestAllowList:
    """S1/A: --uwsgi-allow-from 10.0.0.0/8: loopback TCP peers are refused."""

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory) -> Iterator[Gunicorn]:
        tmp = tmp_path_factory.mktemp("asgi-allow")
        g = asgi_server(tmp, args=["--uwsgi-allow-from", "10.0.0.0/8"], ipv6=ipv6_available())
        g.start()
        yield g
        g.stop()

    @pytest.mark.parametrize("transport", TRANSPORTS)
    def test_s1_a1_a3_a4_refused_peer_is_403(self, server, transport):
        """S1/A1/A4: 127.0.0.1 and ::1 are not in 10.0.0.0/8: 403 with Content-Length, one
        WARNING naming the peer and the setting, no traceback; A3: a unix-socket peer is
        always allowed."""
        address = address_of(server, transport)
        if transport == "unix":
            good_request(address)
            return
        pids = server.live_worker_pids()
        mark = LogMark(server)
        raw, peer = talk(address, request_packet(path="/hello"))
        reply = Reply(raw)
        assert reply.status == 403
        assert reply.header("Content-Length") == str(len(reply.body))
        line = mark.wait_for(r"\[WARNING\].*" + re.escape(peer))
        assert "uwsgi_allow_ips" in line and "--uwsgi-allow-from" in line, line
        assert len(mark.lines("WARNING")) == 1, mark.new()
        assert "Traceback" not in mark.new()
        assert server.live_worker_pids() == pids
        good_request(server.unix)

    def test_s1_a4_refused_before_a_byte_is_read(self, server):
        """S1/A4: the 403 comes right after accept, without the peer sending anything."""
        with connect(server.tcp, timeout=5) as s:
            started = time.monotonic()
            raw = read_all(s)
        assert Reply(raw).status == 403
        assert time.monotonic() - started < 2


def test_g1_g2_config_file_and_max_requests(tmp_path):
    """S1/G1: worker_class in the user's config file, no --protocol; G2: max_requests = 5:
    after five requests a new worker serves, and its lifespan startup ran again."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"worker_class = {ASGI!r}\nmax_requests = 5\n")
    g = asgi_server(tmp_path)
    i = g.cmd.index("--worker-class")
    del g.cmd[i : i + 2]
    g.cmd += ["-c", str(conf)]
    with g:
        first = g.live_worker_pids()
        assert len(first) == 1
        for _ in range(5):
            good_request(g.tcp)
        assert wait_until(lambda: g.live_worker_pids() and g.live_worker_pids() != first)
        g.wait_ready(workers=2)
        s = scope_for(g.tcp)
        assert s["pid"] != first[0]
        assert s["pid"] in g.live_worker_pids()
        assert s["state"] == {"started": True, "pid": s["pid"]}


# -- behind a real nginx --------------------------------------------------------------------


def _locations(upstream: str, https_port: int) -> tuple[str, str]:
    """The extra ``location`` blocks of the plain server, and a second server that sets
    ``uwsgi_param HTTPS on`` as a TLS-terminating nginx would."""

    def passing(extra: str = "") -> str:
        return f"include uwsgi_params; {extra} uwsgi_pass {upstream};"

    locations = f"""
        location /prefix/ {{ {passing("uwsgi_param SCRIPT_NAME /prefix; uwsgi_modifier1 30;")} }}
        location /whole/ {{ {passing("uwsgi_param SCRIPT_NAME /whole;")} }}
        location /stream {{ {passing("uwsgi_buffering off;")} }}
        location /astream/ {{ {passing("uwsgi_buffering off;")} }}
    """
    https_server = f"""
    server {{
        listen 127.0.0.1:{https_port};
        server_name localhost;
        location / {{ {passing("uwsgi_param HTTPS on;")} }}
    }}
    """
    return locations, https_server


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    local_port: int

    def json(self) -> Any:
        assert self.status == 200, (self.status, self.body[:500])
        return json.loads(self.body)


@dataclass
class Front:
    """nginx (plain on ``port``, HTTPS on on ``https_port``) in front of ``gunicorn``."""

    gunicorn: Gunicorn
    nginx: Nginx
    https_port: int
    name: str = ""

    @property
    def port(self) -> int:
        return self.nginx.port

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        https: bool = False,
        source: str | None = None,
    ) -> Response:
        port = self.https_port if https else self.port
        conn = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=30, source_address=(source, 0) if source else None
        )
        try:
            conn.connect()
            local = conn.sock.getsockname()[1]
            conn.request(method, target, body=body, headers={"Host": HOST, **(headers or {})})
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read(), local)
        finally:
            conn.close()

    def raw(self, data: bytes, method: str = "GET") -> Response:
        """Sends a whole HTTP request as bytes (repeated headers, raw UTF-8 targets)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            local = s.getsockname()[1]
            s.sendall(data)
            raw = read_all(s)
        resp = http.client.HTTPResponse(_BytesSocket(raw), method=method)  # type: ignore[arg-type]
        resp.begin()
        return Response(resp.status, resp.headers, resp.read(), local)


class _BytesSocket:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, *_a: Any, **_k: Any) -> Any:
        return io.BytesIO(self.data)


def http_bytes(
    target: bytes, headers: Sequence[tuple[str, str]] = (), version: str = "HTTP/1.1"
) -> bytes:
    lines = [f"Host: {HOST}", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return b"GET " + target + f" {version}\r\n".encode() + "\r\n".join(lines).encode() + b"\r\n\r\n"


def front_of(g: Gunicorn, tmp: Path) -> Nginx:
    """nginx in front of ``g``'s unix socket (the stock ``include uwsgi_params;``)."""
    https_port = free_port()
    locations, https_server = _locations(f"unix:{g.unix}", https_port)
    n = Nginx(tmp, f"unix:{g.unix}", locations=locations, http_extra=https_server)
    n.https_port = https_port  # type: ignore[attr-defined]
    return n


@pytest.fixture(scope="module")
def proxy(server: Gunicorn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """nginx in front of the shared server, over its unix socket."""
    tmp = tmp_path_factory.mktemp(f"nginx-asgi-{server.loop}")  # type: ignore[attr-defined]
    n = front_of(server, tmp)
    with n:
        yield Front(server, n, n.https_port)  # type: ignore[attr-defined]


@pytest.mark.nginx
def test_nginx_s2_scope(proxy):
    """S2/E4/E5: through nginx: http_version, method, scheme, path, raw_path, query_string,
    the client's headers (a repeated one kept), no empty content-type/length on a GET, client
    = the real client (127.0.0.2, its port, an int), server = nginx's name and port."""
    conn_headers = {"X-Trace": "t1", "Accept": "text/plain"}
    r = proxy.request(
        "GET", "/scope/q?a=1&b=two%20words", headers=conn_headers, source=OTHER_CLIENT
    )
    s = r.json()
    assert s["http_version"] == "1.1"
    assert s["method"] == "GET"
    assert s["scheme"] == "http"
    assert s["path"] == "/scope/q"
    assert s["raw_path"] == "/scope/q"
    assert s["query_string"] == "a=1&b=two%20words"
    assert s["root_path"] == ""
    assert header_values(s, "host") == [HOST]
    assert header_values(s, "x-trace") == ["t1"]
    assert header_values(s, "content-type") == [] and header_values(s, "content-length") == []
    assert s["client"] == [OTHER_CLIENT, r.local_port] and s["client_port_is_int"]
    assert s["server"] == ["localhost", proxy.port]
    assert s["state"]["started"] is True


@pytest.mark.nginx
def test_nginx_s2_repeated_client_header(proxy):
    """S2/V3: a header the client sends twice reaches the app whole (nginx < 1.23 sends two
    vars, later versions one joined value)."""
    s = proxy.raw(http_bytes(b"/scope", [("X-Multi", "a"), ("X-Multi", "b")])).json()
    assert ", ".join(header_values(s, "x-multi")) == "a, b"


@pytest.mark.nginx
def test_nginx_s2_http_1_0(proxy):
    """S2: an HTTP/1.0 client: http_version "1.0" (nginx's SERVER_PROTOCOL)."""
    s = proxy.raw(http_bytes(b"/scope", version="HTTP/1.0")).json()
    assert s["http_version"] == "1.0"


@pytest.mark.nginx
@pytest.mark.parametrize(
    ("target", "path", "raw_path"),
    [
        (b"/caf%C3%A9", "/caf\u00e9", "/caf%C3%A9"),
        (b"/caf\xc3\xa9", "/caf\u00e9", "/caf\xc3\xa9"),
        (b"/a%2520b", "/a%20b", "/a%2520b"),
    ],
    ids=["percent-utf8", "raw-utf8", "percent-25"],
)
def test_nginx_s2_path_decoded_once(proxy, target, path, raw_path):
    """S2/E2: /café (percent-encoded or raw UTF-8 from the client) is "/café", not mojibake;
    /a%2520b is /a%20b (nginx decoded it once, never again); raw_path is the client's
    target."""
    s = proxy.raw(http_bytes(target)).json()
    assert s["path"] == path
    assert s["raw_path"] == raw_path


@pytest.mark.nginx
@pytest.mark.parametrize("prefix", ["/prefix", "/whole"])
def test_nginx_s2_script_name_mount(proxy, prefix):
    """S2/F4: mounted with `uwsgi_param SCRIPT_NAME` (with and without uwsgi_modifier1 30):
    root_path is the mount, path the full path."""
    s = proxy.request("GET", f"{prefix}/scope?x=1").json()
    assert (s["root_path"], s["path"], s["raw_path"]) == (
        prefix,
        f"{prefix}/scope",
        f"{prefix}/scope",
    )


@pytest.mark.nginx
def test_nginx_s2_https_on(proxy):
    """S2/E7: `uwsgi_param HTTPS on` (the TLS-terminating setup): scheme https."""
    assert proxy.request("GET", "/scope", https=True).json()["scheme"] == "https"
    assert proxy.request("GET", "/scope").json()["scheme"] == "http"


@pytest.mark.nginx
def test_nginx_s2_post_has_one_content_type_and_length(proxy):
    """S2/V3: a POST through nginx (which also sends HTTP_CONTENT_TYPE/HTTP_CONTENT_LENGTH):
    one content-type, one content-length."""
    body = json.dumps({"k": "v"}).encode()
    s = proxy.request(
        "POST", "/scope", body=body, headers={"Content-Type": "application/json"}
    ).json()
    assert s["body"] == body.decode()
    assert header_values(s, "content-type") == ["application/json"]
    assert header_values(s, "content-length") == [str(len(body))]


@pytest.mark.nginx
def test_nginx_s3_chunked_upload_is_dechunked(proxy):
    """S3/V5: a chunked client body, de-chunked by nginx: the app gets the bytes, framed by
    CONTENT_LENGTH (one content-length header)."""
    chunks = [os.urandom(40_000) for _ in range(5)]
    s = proxy.request("POST", "/scope", body=iter(chunks)).json()
    data = b"".join(chunks)
    assert s["body_len"] == len(data)
    assert s["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert header_values(s, "content-length") == [str(len(data))]


@pytest.mark.nginx
def test_nginx_s3_10mib_multipart_upload(proxy):
    """S3: a 10 MiB multipart upload through nginx arrives whole, in several http.request
    events: the size and SHA-256 the app computes match."""
    data = os.urandom(1 << 20) * 10
    body, content_type = _multipart({"note": "ten mebibytes"}, "blob.bin", data)
    s = proxy.request(
        "POST", "/upload-scope", body=body, headers={"Content-Type": content_type}
    ).json()
    assert s["body_len"] == len(body)
    assert s["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert s["events"] > 1
    assert s["more_body"][-1] is False and all(s["more_body"][:-1])
    assert header_values(s, "content-type") == [content_type]


@pytest.mark.nginx
def test_nginx_s3_unbuffered_upload_streams_with_flat_memory(server, tmp_path):
    """S3: with ``uwsgi_request_buffering off`` nginx forwards a 48 MiB upload as it arrives;
    the application gets it in events of at most 64 KiB while the worker's memory stays flat
    (never the whole body in memory)."""
    data = os.urandom(1 << 20) * 48
    location = f"""
        location /hash-stream {{
            uwsgi_pass unix:{server.unix};
            include uwsgi_params;
            uwsgi_request_buffering off;
        }}
    """
    pid = server.worker_pids()[0]
    with Nginx(tmp_path, f"unix:{server.unix}", locations=location) as n:
        rss_before = rss_kib(pid)
        peak = [rss_before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak.append(rss_kib(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            status, _, body = n.request("POST", "/hash-stream", body=data)
        finally:
            done.set()
            sampler.join()
    assert status == 200, body
    out = json.loads(body)
    assert out["len"] == len(data)
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert out["events"] > 48 and out["largest"] <= 65536
    grew = max(peak) - rss_before
    assert grew < 16 * 1024, f"the worker grew by {grew} KiB during a 48 MiB upload"


@pytest.mark.nginx
def test_nginx_s4_responses(proxy, blob):
    """S4: through nginx: a streamed response, HEAD without a body, 204, pathsend, a 500 for
    an exception before the start."""
    r = proxy.request("GET", "/stream")
    assert (r.status, r.body) == (200, b"".join(b"chunk %d\n" % i for i in range(5)))
    r = proxy.request("HEAD", "/head")
    assert (r.status, r.body, r.headers["Content-Length"]) == (200, b"", "11")
    r = proxy.request("GET", "/status?204")
    assert (r.status, r.body) == (204, b"")
    r = proxy.request("GET", "/pathsend?" + quote(str(blob)))
    assert (r.status, r.body) == (200, blob.read_bytes())
    r = proxy.request("GET", "/raise")
    assert r.status == 500


# -- Starlette, FastAPI, Django behind nginx ------------------------------------------------


@dataclass
class Site(Front):
    tmp: Path = Path()

    def route(self, name: str) -> str:
        """Starlette/FastAPI routes are ``/name``, Django's ``/name/``."""
        return f"/{name}/" if self.name == "django" else f"/{name}"

    def only(self, *frameworks: str) -> None:
        if self.name not in frameworks:
            pytest.skip(f"no such route in the {self.name} test app")


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    framework = request.param
    require_module(framework)
    if framework == "fastapi":
        require_module("multipart")  # python-multipart, for forms and uploads
    tmp = tmp_path_factory.mktemp(f"asgi-{framework}")
    g = asgi_server(tmp, app=FRAMEWORKS[framework])
    with g:
        n = front_of(g, tmp)
        with n:
            yield Site(g, n, n.https_port, framework, tmp)  # type: ignore[attr-defined]


@pytest.mark.nginx
def test_fw_s5_lifespan_state(site):
    """S5: Starlette/FastAPI lifespan ran before the first request: its state is in
    request.state and app.state; Django, which has no lifespan support, is served under
    asgi_lifespan auto without an error logged."""
    if site.name == "django":
        r = site.request("GET", "/done/")
        assert (r.status, r.body) == (200, b"done")
        assert "[ERROR]" not in site.gunicorn.log(), site.gunicorn.log()[-3000:]
        return
    got = site.request("GET", "/state").json()
    assert got["request_state_started"] is True
    assert got["app_state_started"] is True
    assert got["lifespan_pid"] == got["pid"]


@pytest.mark.nginx
def test_fw_path_and_query_params(site):
    """S2: path parameters from path, query parameters (repeated ones too) from
    query_string."""
    site.only("starlette", "fastapi")
    got = site.request("GET", "/items/42?q=caf%C3%A9&tag=a&tag=b").json()
    assert got == {"item_id": 42, "q": "caf\u00e9", "tags": ["a", "b"], "path": "/items/42"}


@pytest.mark.nginx
def test_fw_json_body(site):
    """S3: a JSON body read by the framework."""
    site.only("starlette", "fastapi")
    order = {"name": "Zo\u00eb", "quantity": 3, "tags": ["x", "y"]}
    got = site.request(
        "POST",
        "/json",
        body=json.dumps(order).encode(),
        headers={"Content-Type": "application/json"},
    ).json()
    assert got == {"received": order}


@pytest.mark.nginx
def test_fw_form_post(site):
    """S3: an urlencoded form reaches the framework's form parser whole."""
    body = urlencode([("name", "Zo\u00eb & co"), ("tag", "a"), ("tag", "b")]).encode()
    got = site.request(
        "POST",
        site.route("form"),
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ).json()
    assert got == {"name": "Zo\u00eb & co", "tags": ["a", "b"]}


@pytest.mark.nginx
def test_fw_multipart_upload_10mib(site):
    """S3: a 10 MiB multipart upload: the size and SHA-256 the framework computes match."""
    data = os.urandom(1 << 20) * 10
    body, content_type = _multipart({"note": "ten mebibytes"}, "blob.bin", data)
    got = site.request(
        "POST", site.route("upload"), body=body, headers={"Content-Type": content_type}
    ).json()
    assert got == {
        "filename": "blob.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "ten mebibytes",
    }


@pytest.mark.nginx
def test_fw_django_meta_content_length(site):
    """S2/V3: Django builds CONTENT_LENGTH from the scope's content-length headers: exactly
    the body's size (two headers would make it "N,N")."""
    site.only("django")
    body = b"a=1&b=2"
    got = site.request(
        "POST", "/meta/", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    ).json()
    assert got["CONTENT_LENGTH"] == str(len(body))
    assert got["CONTENT_TYPE"] == "application/x-www-form-urlencoded"


@pytest.mark.nginx
def test_fw_streaming_response(site):
    """S4/R3: StreamingResponse (Django: an async StreamingHttpResponse) reaches the client
    as it is produced: the first chunk arrives while the app still waits to produce the
    rest (a gate file), and the body ends at close."""
    gate = site.tmp / f"gate-{new_name()}"
    path = "/astream/" if site.name == "django" else "/stream"
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    try:
        conn.request("GET", f"{path}?gate={gate}", headers={"Host": HOST})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Length") is None
        started = time.monotonic()
        first = resp.read1(64)
        assert first == b"first\n"
        assert time.monotonic() - started < 5
        gate.touch()
        rest = resp.read()
    finally:
        conn.close()
    assert first + rest == b"first\nsecond\nthird\n"


@pytest.mark.nginx
def test_fw_file_response(site, blob):
    """S4: FileResponse (Starlette uses http.response.pathsend when the scope offers it)
    sends the whole file; a Range request gets its 206 slice."""
    site.only("starlette", "fastapi")
    data = blob.read_bytes()
    r = site.request("GET", "/file?path=" + quote(str(blob)))
    assert r.status == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert r.body == data
    r = site.request("GET", "/file?path=" + quote(str(blob)), headers={"Range": "bytes=10-19"})
    assert (r.status, r.body) == (206, data[10:20])
    r = site.request("HEAD", "/file?path=" + quote(str(blob)))
    assert (r.status, r.body) == (200, b"")


@pytest.mark.nginx
def test_fw_background_task(site):
    """S4: a BackgroundTask/BackgroundTasks runs after the response: its marker appears."""
    site.only("starlette", "fastapi")
    name = new_name()
    r = site.request("GET", f"/background?marker={name}")
    assert (r.status, r.body) == (200, b"scheduled")
    marker = site.tmp / "markers" / name
    assert wait_until(marker.exists, timeout=10)
    assert marker.read_text() == "background ran"


@pytest.mark.nginx
def test_fw_client_is_the_real_client(site):
    """S2/E4: request.client (Django: REMOTE_ADDR) is the client nginx saw (127.0.0.2 and
    its port), not nginx."""
    if site.name == "django":
        got = site.request("GET", "/client/", source=OTHER_CLIENT).json()
        assert got == {"remote_addr": OTHER_CLIENT}
        return
    r = site.request("GET", "/client", source=OTHER_CLIENT)
    assert r.json() == {"host": OTHER_CLIENT, "port": r.local_port}


def _url_expectations(site: Site, scheme: str, prefix: str = "") -> dict[str, Any]:
    url = site.route("url")
    if site.name == "django":
        return {
            "external": f"{scheme}://{HOST}{prefix}{url}",
            "path": prefix + url,
            "scheme": scheme,
            "host": HOST,
            "is_secure": scheme == "https",
            "script_name": prefix,
        }
    return {
        "external": f"{scheme}://{HOST}{prefix}{url}",
        "path": prefix + url,
        "scheme": scheme,
        "host": HOST,
        "root_path": prefix,
        "base_url": f"{scheme}://{HOST}{prefix}/",
    }


def _check_url(got: dict, expected: dict) -> None:
    assert {k: got.get(k) for k in expected} == expected, got


@pytest.mark.nginx
def test_fw_absolute_urls_http(site):
    """S2/E7: without HTTPS on, url_for / build_absolute_uri give http:// with the Host the
    client asked for."""
    got = site.request("GET", site.route("url")).json()
    _check_url(got, _url_expectations(site, "http"))


@pytest.mark.nginx
def test_fw_absolute_urls_https_on(site):
    """S2/E7: `uwsgi_param HTTPS on`: https:// absolute URLs."""
    got = site.request("GET", site.route("url"), https=True).json()
    _check_url(got, _url_expectations(site, "https"))


@pytest.mark.nginx
def test_fw_script_name_mount(site):
    """S2: mounted under /prefix (`uwsgi_param SCRIPT_NAME /prefix; uwsgi_modifier1 30;`):
    the app routes on the path below the mount, and builds prefixed URLs."""
    got = site.request("GET", "/prefix" + site.route("url") + "?q=1").json()
    _check_url(got, _url_expectations(site, "http", "/prefix"))
    assert got["full_url"] == f"http://{HOST}/prefix{site.route('url')}?q=1"


@pytest.mark.nginx
def test_fw_redirects(site):
    """S2/E7: a redirect to an absolute URL built by the framework: https with HTTPS on,
    prefixed under the mount."""
    done = site.route("done")
    r = site.request("GET", site.route("redirect"), https=True)
    assert (r.status, r.headers["Location"]) == (302, f"https://{HOST}{done}")
    r = site.request("GET", site.route("redirect"))
    assert (r.status, r.headers["Location"]) == (302, f"http://{HOST}{done}")
    r = site.request("GET", "/prefix" + site.route("redirect"))
    assert (r.status, r.headers["Location"]) == (302, f"http://{HOST}/prefix{done}")
    r = site.request("GET", done)
    assert (r.status, r.body) == (200, b"done")
