"""End to end: a real nginx (``uwsgi_pass`` + the stock ``uwsgi_params``) in front of a real
gunicorn arbiter, over TCP and over a unix socket, once per worker class (``SyncWorker``,
``ThreadWorker`` with 4 threads, ``GeventWorker``).

Each test names the behaviours of ``../shared/spec/behaviour.md`` it covers.

One gunicorn per worker class (serving ``apps.proxied``: the echo app plus an ``X-Inspect`` route
that returns the environ and the body as JSON for any path) and one nginx per transport in front
of it are shared by the module.
nginx writes a second access log, the *probe log*, with what the upstream actually sent
(``$upstream_status``, ``$upstream_bytes_received``, ``$upstream_http_*``): nginx hides or fixes
several things on the way to the client (hop-by-hop headers, bodies of HEAD and 204), and the probe
log lets those tests fail when gunicorn gets them wrong.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import (
    WORKERS,
    Gunicorn,
    Nginx,
    is_multithread,
    require_worker,
    wait_until,
    worker_args,
    worker_id,
)

PROBE_FIELDS = (
    "probe",
    "status",
    "upstream_status",
    "upstream_bytes_received",
    "upstream_http_content_length",
    "upstream_http_connection",
    "upstream_http_transfer_encoding",
    "upstream_http_keep_alive",
    "upstream_http_upgrade",
    "upstream_http_server",
    "upstream_http_date",
    "upstream_http_link",
)
PROBE_FORMAT = "|".join("$http_x_probe" if f == "probe" else "$" + f for f in PROBE_FIELDS)

#: A second loopback address for the client, so that the real client (nginx's ``$remote_addr``)
#: differs from the peer gunicorn sees on TCP (nginx itself, 127.0.0.1).
OTHER_CLIENT = "127.0.0.2"


@dataclass
class Proxy:
    transport: str
    gunicorn: Gunicorn
    nginx: Nginx
    probe_log: Path
    access_log: Path

    @property
    def port(self) -> int:
        return self.nginx.port


def _locations(upstream: str, probe_log: Path) -> str:
    def passing(extra: str) -> str:
        return f"include uwsgi_params; {extra} uwsgi_pass {upstream};"

    return f"""
        access_log {probe_log} probe;
        location /admin {{ return 403; }}
        location /secure/ {{ {passing("uwsgi_param HTTPS on;")} }}
        location /app/ {{ {passing("uwsgi_param SCRIPT_NAME /app; uwsgi_modifier1 30;")} }}
        location /appx/ {{ {passing("uwsgi_param SCRIPT_NAME /app; uwsgi_modifier1 30;")} }}
        location /whole/ {{ {passing("uwsgi_param SCRIPT_NAME /whole;")} }}
    """


@pytest.fixture(scope="module", params=WORKERS, ids=worker_id)
def gunicorn(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    worker = request.param
    require_worker(worker)
    tmp = tmp_path_factory.mktemp(f"gunicorn-{worker_id(worker)}")
    args = ["--access-logfile", str(tmp / "access.log"), *worker_args(worker)]
    with Gunicorn(tmp, app="apps.proxied:app", worker=worker, args=args) as g:
        yield g


@pytest.fixture(scope="module", params=["tcp", "unix"])
def proxy(
    request: pytest.FixtureRequest,
    gunicorn: Gunicorn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:
    """nginx in front of the shared gunicorn, over TCP 127.0.0.1 or the unix socket."""
    transport = request.param
    if transport == "tcp":
        upstream = f"127.0.0.1:{gunicorn.tcp[1]}"
    else:
        upstream = f"unix:{gunicorn.unix}"
    tmp = tmp_path_factory.mktemp(f"nginx-{worker_id(gunicorn.worker)}-{transport}")
    probe_log = tmp / "probe.log"
    nginx = Nginx(
        tmp,
        upstream,
        locations=_locations(upstream, probe_log),
        http_extra=f"log_format probe '{PROBE_FORMAT}';",
    )
    with nginx:
        yield Proxy(transport, gunicorn, nginx, probe_log, gunicorn.tmp / "access.log")


# -- helpers ---------------------------------------------------------------------------------


def new_id() -> str:
    return uuid.uuid4().hex


def inspect(
    proxy: Proxy,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], bytes]:
    """A request through nginx to the X-Inspect route: (status, environ, request body)."""
    status, _headers, data = proxy.nginx.request(
        method, path, body=body, headers={"X-Inspect": "1", **(headers or {})}
    )
    assert status == 200, (status, data[:300], proxy.nginx.error_log()[-2000:])
    payload = json.loads(data)
    return status, payload["environ"], payload["body"].encode("latin-1")


@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    raw: bytes
    local_port: int


def raw_http(
    proxy: Proxy, data: bytes, method: str = "GET", source: str | None = None
) -> RawResponse:
    """Sends ``data`` (a whole HTTP request, ``Connection: close``) to nginx from ``source``
    (a local address to bind the client socket to), returns the parsed response and the raw bytes
    until nginx closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", proxy.port))
        local_port = s.getsockname()[1]
        s.sendall(data)
        raw = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    raw = bytes(raw)
    return RawResponse(*_parse(raw, method), raw, local_port)


class _BytesSocket:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, *_a: Any, **_k: Any) -> Any:
        return io.BytesIO(self.data)


def _parse(raw: bytes, method: str) -> tuple[int, http.client.HTTPMessage, bytes]:
    resp = http.client.HTTPResponse(_BytesSocket(raw), method=method)  # type: ignore[arg-type]
    resp.begin()
    return resp.status, resp.headers, resp.read()


def request_bytes(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    lines = [f"{method} {target} {version}", "Host: localhost", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def probe(proxy: Proxy, probe_id: str) -> dict[str, str]:
    """The probe-log line nginx wrote for the request carrying ``X-Probe: probe_id``."""
    found: dict[str, str] = {}

    def look() -> bool:
        if not proxy.probe_log.exists():
            return False
        for line in proxy.probe_log.read_text(errors="replace").splitlines():
            values = line.split("|")
            if values[0] == probe_id:
                found.update(zip(PROBE_FIELDS, values))
                return True
        return False

    assert wait_until(look, timeout=10), f"no probe line for {probe_id}"
    return found


def access_log_line(proxy: Proxy, needle: str) -> str:
    lines: list[str] = []

    def look() -> bool:
        if proxy.access_log.exists():
            lines[:] = [
                ln
                for ln in proxy.access_log.read_text(errors="replace").splitlines()
                if needle in ln
            ]
        return bool(lines)

    assert wait_until(look, timeout=10), (
        f"no access log line with {needle}:\n{proxy.gunicorn.log()[-2000:]}"
    )
    return lines[0]


# -- request side ----------------------------------------------------------------------------


def test_get_with_query_string_E1_E6_E8(proxy: Proxy) -> None:
    """E1: every var nginx sends lands in the environ; a GET's query string is kept raw."""
    _, env, body = inspect(proxy, "GET", "/environ/q?a=1&b=two%20words&c=%2F")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ/q"
    assert env["QUERY_STRING"] == "a=1&b=two%20words&c=%2F"
    assert env["REQUEST_URI"] == "/environ/q?a=1&b=two%20words&c=%2F"
    assert env["DOCUMENT_ROOT"]  # a var nginx sends that gunicorn knows nothing about
    assert env["REQUEST_SCHEME"] == "http"
    assert env.get("CONTENT_LENGTH", "") in ("", "0")
    assert env["HTTP_X_INSPECT"] == "1"
    assert body == b""
    # E8, R6: the usual keys, and wsgi.early_hints a callable
    assert env["wsgi.early_hints"] is True
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.multithread"] is is_multithread(proxy.gunicorn.worker)


def test_post_urlencoded_form_E1_B1(proxy: Proxy) -> None:
    """B1, E1: the form body arrives exactly; CONTENT_TYPE/CONTENT_LENGTH are the vars and
    nginx's HTTP_CONTENT_TYPE/HTTP_CONTENT_LENGTH copies are left out."""
    form = b"name=caf%C3%A9&x=a+b&empty=&z=%26"
    _, env, body = inspect(
        proxy,
        "POST",
        "/form",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert body == form
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == str(len(form))
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_post_json_echo_B1(proxy: Proxy) -> None:
    """B1: a JSON body is echoed back byte for byte."""
    doc = json.dumps({"name": "café", "list": list(range(50)), "nested": {"a": None}}).encode()
    status, headers, body = proxy.nginx.request(
        "POST", "/echo", body=doc, headers={"Content-Type": "application/json"}
    )
    assert status == 200
    assert body == doc
    assert headers["X-Length"] == str(len(doc))


def test_one_mib_upload_round_trip_B1(proxy: Proxy) -> None:
    """B1: 1 MiB of random bytes (nginx buffers it to a temp file) round-trips exactly."""
    data = os.urandom(1 << 20)
    status, headers, body = proxy.nginx.request(
        "POST", "/echo", body=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 200
    assert headers["X-Length"] == str(len(data))
    assert body == data


def test_chunked_client_body_is_dechunked_E1_B1(proxy: Proxy) -> None:
    """E1: a chunked client body (http.client, iterable body) reaches the app de-chunked, framed
    by CONTENT_LENGTH, with no HTTP_TRANSFER_ENCODING in the environ although nginx sends it."""
    parts = [b"first,", os.urandom(3000), b"\r\n0\r\n\r\n", b"last"]
    _, env, body = inspect(proxy, "POST", "/upload", body=iter(parts))
    expected = b"".join(parts)
    assert body == expected
    assert env["CONTENT_LENGTH"] == str(len(expected))
    assert "HTTP_TRANSFER_ENCODING" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_chunked_client_body_raw_E1_B1(proxy: Proxy) -> None:
    """E1: the same with hand-written chunked framing on the wire."""
    data = request_bytes(
        "POST",
        "/upload",
        [("X-Inspect", "1"), ("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    resp = raw_http(proxy, data, "POST")
    assert resp.status == 200, resp.raw[:300]
    payload = json.loads(resp.body)
    assert payload["body"] == "hello world"
    assert payload["environ"]["CONTENT_LENGTH"] == "11"
    assert "HTTP_TRANSFER_ENCODING" not in payload["environ"]


def test_large_header_block_all_arrive_E1_F1(proxy: Proxy) -> None:
    """F1, E1: a ~50 KiB vars block (50 headers of ~1 KiB, within gunicorn's default
    limit_request_fields and limit_request_field_size) arrives whole."""
    headers = {f"X-Header-{n}": f"{n:03d}-" + "v" * 1020 for n in range(50)}
    _, env, _ = inspect(proxy, "GET", "/environ/big-headers", headers=headers)
    for n in range(50):
        assert env[f"HTTP_X_HEADER_{n}"] == f"{n:03d}-" + "v" * 1020
    assert sum(len(v) for k, v in env.items() if k.startswith("HTTP_X_HEADER_")) > 50_000


def test_utf8_path_is_latin1_of_the_bytes_V1_E2(proxy: Proxy) -> None:
    """V1, E2: nginx decodes /caf%C3%A9 to UTF-8 bytes; PATH_INFO is their latin-1 decoding."""
    _, env, _ = inspect(proxy, "GET", "/caf%C3%A9")
    assert env["PATH_INFO"] == "/caf\xc3\xa9"
    assert env["REQUEST_URI"] == "/caf%C3%A9"


def test_percent_2520_is_not_decoded_twice_E2(proxy: Proxy) -> None:
    """E2: /a%2520b is decoded once by nginx to /a%20b and must stay so."""
    _, env, _ = inspect(proxy, "GET", "/a%2520b")
    assert env["PATH_INFO"] == "/a%20b"
    assert env["REQUEST_URI"] == "/a%2520b"


def test_nginx_location_cannot_be_bypassed_E2(proxy: Proxy) -> None:
    """E2: nginx blocks /admin; /%2561dmin passes nginx as /%61dmin, and the app must see
    exactly that, never /admin (a second decoding would hand the blocked path to the app)."""
    assert proxy.nginx.request("GET", "/admin")[0] == 403
    assert proxy.nginx.request("GET", "/%61dmin")[0] == 403
    _, env, _ = inspect(proxy, "GET", "/%2561dmin")
    assert env["PATH_INFO"] == "/%61dmin"
    # and without the inspect route: the echo app answers 404 naming the path it saw
    status, _, body = proxy.nginx.request("GET", "/%2561dmin")
    assert status == 404
    assert body == b"not found: /%61dmin\n"


def test_https_on_sets_url_scheme_E7(proxy: Proxy) -> None:
    """E7: `uwsgi_param HTTPS on;` gives wsgi.url_scheme https; without it, http."""
    _, env, _ = inspect(proxy, "GET", "/secure/page")
    assert env["HTTPS"] == "on"
    assert env["wsgi.url_scheme"] == "https"
    _, env, _ = inspect(proxy, "GET", "/plain/page")
    assert "HTTPS" not in env
    assert env["wsgi.url_scheme"] == "http"


def test_script_name_with_modifier1_30_strips_path_F4_E3(proxy: Proxy) -> None:
    """F4, E3: SCRIPT_NAME /app with uwsgi_modifier1 30: PATH_INFO has the prefix removed."""
    _, env, _ = inspect(proxy, "GET", "/app/environ/x?q=1")
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/environ/x"
    assert env["QUERY_STRING"] == "q=1"
    assert env["REQUEST_URI"] == "/app/environ/x?q=1"


def test_script_name_modifier1_30_needs_slash_boundary_F4(proxy: Proxy) -> None:
    """F4: /app is a prefix of /appx/y but not on a '/' boundary: PATH_INFO is left alone."""
    _, env, _ = inspect(proxy, "GET", "/appx/y")
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/appx/y"


def test_script_name_without_modifier1_keeps_path_whole_F4_E3(proxy: Proxy) -> None:
    """F4, E3: SCRIPT_NAME from a uwsgi_param with modifier1 0: PATH_INFO left whole."""
    _, env, _ = inspect(proxy, "GET", "/whole/y")
    assert env["SCRIPT_NAME"] == "/whole"
    assert env["PATH_INFO"] == "/whole/y"


def test_no_script_name_is_empty_E3(proxy: Proxy) -> None:
    """E3: with no SCRIPT_NAME var (and none in gunicorn's environment), SCRIPT_NAME is ''."""
    _, env, _ = inspect(proxy, "GET", "/environ")
    assert env.get("SCRIPT_NAME", "") == ""
    assert env["PATH_INFO"] == "/environ"


def test_remote_addr_and_port_are_the_real_client_E4(proxy: Proxy) -> None:
    """E4: REMOTE_ADDR/REMOTE_PORT are nginx's client, not the upstream peer (nginx)."""
    data = request_bytes("GET", "/environ", [("X-Inspect", "1")])
    resp = raw_http(proxy, data, source="127.0.0.1")
    env = json.loads(resp.body)["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(resp.local_port)

    resp = raw_http(proxy, data, source=OTHER_CLIENT)
    env = json.loads(resp.body)["environ"]
    assert env["REMOTE_ADDR"] == OTHER_CLIENT
    assert env["REMOTE_PORT"] == str(resp.local_port)


def test_server_name_port_protocol_from_nginx_E5(proxy: Proxy) -> None:
    """E5: SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL are nginx's view of the request."""
    _, env, _ = inspect(proxy, "GET", "/environ")
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == str(proxy.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"

    data = request_bytes("GET", "/environ", [("X-Inspect", "1")], version="HTTP/1.0")
    resp = raw_http(proxy, data)
    env = json.loads(resp.body)["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["SERVER_PORT"] == str(proxy.port)


def test_request_uri_and_raw_uri_E6(proxy: Proxy) -> None:
    """E6: REQUEST_URI is the raw request target and RAW_URI equals it."""
    target = "/environ/a%20b/%2Fc?x=%41&y=1+2"
    _, env, _ = inspect(proxy, "GET", target)
    assert env["REQUEST_URI"] == target
    assert env["RAW_URI"] == target
    assert env["QUERY_STRING"] == "x=%41&y=1+2"


def test_repeated_headers_are_joined_V3(proxy: Proxy) -> None:
    """V3: nginx 1.22 sends repeated request headers as repeated vars; they are joined with
    ', ', and Cookie with '; '."""
    data = request_bytes(
        "GET",
        "/environ",
        [
            ("X-Inspect", "1"),
            ("X-Multi", "one"),
            ("Cookie", "a=1"),
            ("X-Multi", "two"),
            ("Cookie", "b=2; c=3"),
            ("X-Multi", "three"),
        ],
    )
    resp = raw_http(proxy, data)
    assert resp.status == 200, resp.raw[:300]
    env = json.loads(resp.body)["environ"]
    assert env["HTTP_X_MULTI"] == "one, two, three"
    assert env["HTTP_COOKIE"] == "a=1; b=2; c=3"


# -- response side ---------------------------------------------------------------------------


def test_head_keeps_content_length_and_sends_no_body_R4(proxy: Proxy) -> None:
    """R4: HEAD gets Content-Length and no body. nginx would drop a body on its own, so the
    probe log checks what gunicorn sent: exactly the GET response minus its 12 body bytes."""
    get_id, head_id = new_id(), new_id()
    status, headers, body = proxy.nginx.request("GET", "/hello", headers={"X-Probe": get_id})
    assert (status, body) == (200, b"Hello world\n")
    status, headers, body = proxy.nginx.request("HEAD", "/hello", headers={"X-Probe": head_id})
    assert status == 200
    assert headers["Content-Length"] == "12"
    assert body == b""
    got, head = probe(proxy, get_id), probe(proxy, head_id)
    assert head["upstream_http_content_length"] == "12"
    assert int(head["upstream_bytes_received"]) == int(got["upstream_bytes_received"]) - 12


def test_204_has_no_body_and_no_content_length_R4(proxy: Proxy) -> None:
    """R4: the app's 204 with Content-Length: 5 and a body: gunicorn sends neither, and
    (R2) no header of its own: the whole upstream response is the bare status line."""
    probe_id = new_id()
    data = request_bytes("GET", "/nocontent", [("X-Probe", probe_id)])
    resp = raw_http(proxy, data)
    assert resp.status == 204
    assert resp.body == b""
    assert resp.raw.endswith(b"\r\n\r\n")
    seen = probe(proxy, probe_id)
    assert seen["upstream_status"] == "204"
    assert seen["upstream_http_content_length"] == "-"
    assert int(seen["upstream_bytes_received"]) == len(b"HTTP/1.1 204 No Content\r\n\r\n")


def test_one_mib_response_exact_R3(proxy: Proxy) -> None:
    """R3: a 1 MiB response with Content-Length arrives exactly."""
    size = 1 << 20
    probe_id = new_id()
    status, headers, body = proxy.nginx.request(
        "GET", f"/big?{size}", headers={"X-Probe": probe_id}
    )
    assert status == 200
    assert headers["Content-Length"] == str(size)
    assert len(body) == size
    assert body == b"x" * size
    seen = probe(proxy, probe_id)
    assert seen["upstream_http_content_length"] == str(size)
    assert seen["upstream_http_transfer_encoding"] == "-"


def test_stream_without_content_length_ends_at_close_R3(proxy: Proxy) -> None:
    """R3: no Content-Length: the body ends when gunicorn closes, with no chunk markers (nginx
    passes chunked framing from a uwsgi upstream through as body bytes). HTTP/1.0 so that nginx
    itself reads to EOF and writes the body as is."""
    probe_id = new_id()
    data = request_bytes("GET", "/stream", [("X-Probe", probe_id)], version="HTTP/1.0")
    resp = raw_http(proxy, data)
    assert resp.status == 200
    expected = b"".join(b"chunk %d\n" % i for i in range(5))
    assert resp.raw.split(b"\r\n\r\n", 1)[1] == expected
    assert resp.headers["Content-Length"] is None
    seen = probe(proxy, probe_id)
    assert seen["upstream_http_transfer_encoding"] == "-"
    assert seen["upstream_http_content_length"] == "-"

    # And over HTTP/1.1, where nginx chunks it for the client.
    status, _, body = proxy.nginx.request("GET", "/stream")
    assert (status, body) == (200, expected)


def test_hop_by_hop_headers_are_stripped_R2_R3(proxy: Proxy) -> None:
    """R2, R3: the app's Connection, Transfer-Encoding, Keep-Alive and Upgrade never leave
    gunicorn (the probe log shows what nginx received), the body carries no chunk markers, and
    gunicorn adds no Server or Date header of its own."""
    probe_id = new_id()
    data = request_bytes("GET", "/hop", [("X-Probe", probe_id)], version="HTTP/1.0")
    resp = raw_http(proxy, data)
    assert resp.status == 200
    assert resp.headers["X-Kept"] == "yes"
    assert resp.raw.split(b"\r\n\r\n", 1)[1] == b"hop"
    assert resp.headers["Upgrade"] is None
    seen = probe(proxy, probe_id)
    for name in ("connection", "transfer_encoding", "keep_alive", "upgrade", "server", "date"):
        assert seen[f"upstream_http_{name}"] == "-", (name, seen)


def test_app_exception_gives_500_and_worker_keeps_serving_X2(proxy: Proxy) -> None:
    """X2: an exception in the app is a 500 from gunicorn (not a 502 from nginx), logged with
    its traceback, and the same worker answers the next request."""
    _, before, _ = inspect(proxy, "GET", "/environ")
    probe_id = new_id()
    status, _, _ = proxy.nginx.request("GET", "/raise", headers={"X-Probe": probe_id})
    assert status == 500
    assert probe(proxy, probe_id)["upstream_status"] == "500"
    status, _, body = proxy.nginx.request("GET", "/hello")
    assert (status, body) == (200, b"Hello world\n")
    _, after, _ = inspect(proxy, "GET", "/environ")
    assert after["pid"] == before["pid"]
    assert wait_until(lambda: "boom from the test app" in proxy.gunicorn.log(), timeout=10)
    assert "Traceback" in proxy.gunicorn.log()


def test_early_hints_send_no_103_R6_E8(proxy: Proxy) -> None:
    """R6, E8: wsgi.early_hints is a no-op. nginx has no 1xx support and would pass a 103 on as
    the final response; the client must get the 200."""
    probe_id = new_id()
    status, headers, body = proxy.nginx.request("GET", "/hints", headers={"X-Probe": probe_id})
    assert status == 200
    assert body == b"after hints"
    assert headers["Link"] is None
    seen = probe(proxy, probe_id)
    assert seen["upstream_status"] == "200"
    assert seen["upstream_http_link"] == "-"


def test_expect_100_continue_post_R6(proxy: Proxy) -> None:
    """R6: nginx answers `Expect: 100-continue` itself and forwards HTTP_EXPECT; gunicorn must
    not send its own 100 (nginx would take it as the final response)."""
    probe_id = new_id()
    body = b"payload after the interim response"
    head = request_bytes(
        "POST",
        "/echo",
        [
            ("X-Probe", probe_id),
            ("Expect", "100-continue"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/octet-stream"),
        ],
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
        s.sendall(head)
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = s.recv(1)
            assert chunk, interim
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        s.sendall(body)
        raw = bytearray()
        while chunk := s.recv(65536):
            raw += chunk
    status, headers, echoed = _parse(bytes(raw), "POST")
    assert status == 200, raw[:300]
    assert echoed == body
    assert headers["X-Length"] == str(len(body))
    assert probe(proxy, probe_id)["upstream_status"] == "200"


def test_access_log_shows_real_client_G4(proxy: Proxy) -> None:
    """G4: gunicorn's access log %(h)s is REMOTE_ADDR (the client nginx saw, 127.0.0.2 here),
    not the upstream peer (nginx on 127.0.0.1, or a unix socket)."""
    marker = new_id()
    data = request_bytes("GET", f"/hello?{marker}")
    resp = raw_http(proxy, data, source=OTHER_CLIENT)
    assert resp.status == 200
    line = access_log_line(proxy, marker)
    assert line.startswith(OTHER_CLIENT + " "), line
    assert f'"GET /hello?{marker} HTTP/1.1" 200 12' in line


def test_file_wrapper_response_exact_R5(proxy: Proxy) -> None:
    """R5: a wsgi.file_wrapper response (sendfile when there is a real descriptor) arrives
    exactly, with its Content-Length."""
    expected = (Path(__file__).parent / "apps" / "echo.py").read_bytes()
    probe_id = new_id()
    status, headers, body = proxy.nginx.request("GET", "/file", headers={"X-Probe": probe_id})
    assert status == 200
    assert headers["Content-Length"] == str(len(expected))
    assert body == expected
    assert probe(proxy, probe_id)["upstream_http_content_length"] == str(len(expected))
