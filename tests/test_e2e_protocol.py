"""End-to-end protocol tests: raw uwsgi packets to a real gunicorn arbiter, over TCP/IPv4,
TCP/IPv6 and a unix socket, once per worker class (``SyncWorker``, ``ThreadWorker`` with 4
threads, ``GeventWorker``).

Every test names the behaviour of the spec (``behaviour.md``: F1, V3, ...) it checks. One
server per worker class serves the whole module; tests that need other settings are in
``test_e2e_settings.py``.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import (
    F3_BAD_BLOCKS,
    F7_FOREIGN,
    PROBE_APP,
    TRANSPORTS,
    V2_BAD,
    V5_BAD,
    LogMark,
    address_of,
    assert_refused,
    good_request,
    magic_uwsgi_vars,
    talk,
    var,
)

from support import (
    CONTROL_VARS,
    TESTS,
    WORKERS,
    Gunicorn,
    Reply,
    connect,
    header,
    ipv6_available,
    is_multithread,
    nginx_vars,
    packet,
    raw_packet,
    read_all,
    request_packet,
    require_worker,
    vars_block,
    worker_args,
    worker_id,
)

GET = ("REQUEST_METHOD", "GET")


@pytest.fixture(scope="module", params=WORKERS, ids=worker_id)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    worker = request.param
    require_worker(worker)
    tmp = tmp_path_factory.mktemp(f"e2e-protocol-{worker_id(worker)}")
    args = worker_args(worker)
    with Gunicorn(tmp, app=PROBE_APP, worker=worker, ipv6=ipv6_available(), args=args) as g:
        yield g


@pytest.fixture(params=TRANSPORTS)
def address(request: pytest.FixtureRequest, server: Gunicorn):
    return address_of(server, request.param)


def ask_env(address, pairs, body=b"", modifier1=0, **kw) -> dict:
    reply = Reply(talk(address, packet(pairs, body, modifier1=modifier1), **kw)[0])
    assert reply.status == 200, reply
    return reply.json()


def env_for(address, **kw) -> dict:
    return ask_env(address, nginx_vars(**{"path": "/environ", **kw}))


def no_high_level_lines(mark: LogMark) -> None:
    for level in ("INFO", "WARNING", "ERROR", "CRITICAL"):
        assert not mark.lines(level), mark.new()


# -- a good request on every transport (G5) ----------------------------------------------------


def test_g5_good_request_on_every_transport(server, address):
    """G5/R1: the same server answers on 127.0.0.1, ::1 and a unix socket."""
    mark = LogMark(server)
    raw, _ = talk(address, request_packet(path="/hello"))
    assert raw == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello world\n"
    )
    no_high_level_lines(mark)


# -- F. Framing ---------------------------------------------------------------------------------


def test_f1_header_is_little_endian_and_modifier2_ignored(server):
    """F1: bytes 1-2 are the vars size, little-endian; modifier2 is ignored."""
    pairs = [*nginx_vars(path="/environ"), ("X_PAD", "p" * 300)]  # size > 255: both bytes used
    block = vars_block(pairs)
    assert len(block) > 256 and len(block) % 256 != len(block) // 256
    for modifier2 in (0, 7, 255):
        reply = Reply(talk(server.tcp, struct.pack("<BHB", 0, len(block), modifier2) + block)[0])
        assert reply.status == 200
        assert reply.json()["X_PAD"] == "p" * 300


@pytest.mark.parametrize("size", [60 * 1024, 65535])
def test_f1_vars_block_up_to_65535_bytes(server, address, size):
    """F1: any vars size up to 65535 is accepted: no 4 KiB cap."""
    pairs = nginx_vars(path="/environ")
    base = len(vars_block([*pairs, ("X_PAD", "")]))
    pairs.append(("X_PAD", "x" * (size - base)))
    block = vars_block(pairs)
    assert len(block) == size
    env = ask_env(address, pairs)
    assert len(env["X_PAD"]) == size - base


def test_f1_empty_block_with_size_zero_is_not_a_hang(server):
    """F1/V6: size 0 is a legal header; the empty block is answered at once, not waited on:
    a GET of the empty path."""
    reply = Reply(talk(server.tcp, header(0, 0))[0])
    assert reply.status == 404, reply


def test_f2_one_byte_per_segment(server, address):
    """F2: the vars block and body are read exactly when every byte comes in its own segment."""
    body = b"0123456789"
    data = packet(
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", "10")], body
    )
    reply = Reply(talk(address, [data[i : i + 1] for i in range(len(data))], delay=0.003)[0])
    assert reply.status == 200
    assert reply.body == body
    assert reply.header("X-Length") == "10"


def test_f2_header_vars_and_body_in_one_segment(server, address):
    """F2: header + vars + body in one send: the bytes after the block are the body."""
    body = b"\x00\x01\x02uwsgi-looking body" + header(0, 5)
    reply = Reply(talk(address, request_packet(method="POST", path="/echo", body=body))[0])
    assert reply.status == 200
    assert reply.body == body


def test_f2_split_at_every_boundary(server):
    """F2: split inside the header, at the header/vars boundary, inside a var, at the body."""
    body = b"body!"
    data = request_packet(method="POST", path="/echo", body=body)
    head = len(data) - len(body)
    for cuts in ([1, 3], [4], [4, 20], [head - 1], [head], [head + 2]):
        parts, last = [], 0
        for c in [*cuts, len(data)]:
            parts.append(data[last:c])
            last = c
        reply = Reply(talk(server.tcp, parts, delay=0.02)[0])
        assert reply.body == body, cuts


@pytest.mark.parametrize("case", sorted(F3_BAD_BLOCKS))
def test_f3_malformed_vars_block_is_400(server, case):
    """F3: a zero-length key, a size that overruns the block, stray trailing bytes → 400."""
    block = F3_BAD_BLOCKS[case]
    assert_refused(server, server.tcp, raw_packet(block), 400, "vars block")


def test_f3_zero_length_value_is_allowed(server):
    """F3: a value of size 0 is legal."""
    env = ask_env(server.tcp, [*nginx_vars(path="/environ"), ("X_EMPTY", "")])
    assert env["X_EMPTY"] == ""


def test_f3_protocol_error_on_every_transport(server, address):
    """F3/X1: a protocol error is answered and logged the same way on every transport."""
    assert_refused(
        server, address, raw_packet(F3_BAD_BLOCKS["zero_length_key"]), 400, "zero-length key"
    )


def test_f4_modifier1_30_strips_script_name(server, address):
    """F4: modifier1 30 removes SCRIPT_NAME from PATH_INFO on a / boundary."""
    pairs = [GET, ("SCRIPT_NAME", "/app"), ("PATH_INFO", "/app/environ/x")]
    env = ask_env(address, pairs, modifier1=30)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ/x")
    env = ask_env(
        address, [GET, ("SCRIPT_NAME", "/app/"), ("PATH_INFO", "/app/environ")], modifier1=30
    )
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")


def test_f4_modifier1_30_leaves_non_boundary_prefix_alone(server):
    """F4: /env is a prefix of /environ but not on a / boundary: PATH_INFO stays."""
    env = ask_env(
        server.tcp, [GET, ("SCRIPT_NAME", "/env"), ("PATH_INFO", "/environ")], modifier1=30
    )
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/env", "/environ")


def test_f4_modifier1_0_does_not_strip(server):
    """F4/E3: with modifier1 0 a SCRIPT_NAME var is taken as is and PATH_INFO is not touched."""
    env = ask_env(server.tcp, [GET, ("SCRIPT_NAME", "/environ"), ("PATH_INFO", "/environ/x")])
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/environ", "/environ/x")


@pytest.mark.parametrize("modifier1", [1, 5, 17, 29, 31, 255])
def test_f4_other_modifier1_is_501(server, modifier1):
    """F4: any modifier1 other than 0 and 30 → 501."""
    data = packet(nginx_vars(path="/hello"), modifier1=modifier1)
    assert_refused(server, server.tcp, data, 501, f"modifier1 {modifier1}")


def test_f5_smuggled_packet_after_body_is_never_parsed(server, address):
    """F5: a second packet after the body is not parsed: one response, the second app route
    (/raise) never runs."""
    mark = LogMark(server)
    smuggled = request_packet(path="/raise")
    data = request_packet(method="POST", path="/echo", body=b"hello") + smuggled
    raw, _ = talk(address, data)
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    reply = Reply(raw)
    assert reply.body == b"hello"
    good_request(address)
    assert "boom from the test app" not in mark.new()


def test_f5_pipelined_request_without_body_is_never_parsed(server):
    """F5: two GETs back to back on one connection: one response, then close."""
    mark = LogMark(server)
    data = request_packet(path="/hello") + request_packet(path="/raise")
    raw, _ = talk(server.tcp, data)
    assert raw.count(b"HTTP/1.1 ") == 1
    assert Reply(raw).body == b"Hello world\n"
    good_request(server.tcp)
    assert "boom" not in mark.new()


def test_f5_connection_closed_after_response(server, address):
    """F5: the server closes after its response, without waiting for the peer."""
    with connect(address, timeout=5) as s:
        s.sendall(request_packet(path="/hello"))
        started = time.monotonic()
        raw = read_all(s)  # returns at EOF; a kept-alive connection would hit the timeout
    assert Reply(raw).status == 200
    assert time.monotonic() - started < 3


def test_f6_connect_and_close_logs_nothing_above_debug(server, address):
    """F6: EOF before the first byte: nothing written, nothing logged above debug."""
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
def test_f7_http_or_tls_is_answered_at_once(server, case):
    """F7: HTTP or TLS bytes get a plain HTTP/1.1 400 at once (the peer keeps its side open,
    so waiting for more bytes would hang until the read timeout), with a warning that names
    uwsgi_pass."""
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
    assert len(mark.lines("WARNING")) == 1
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


# -- V. Vars ------------------------------------------------------------------------------------


def test_v1_keys_and_values_are_latin1(server, address):
    """V1: values reach Python decoded latin-1, never UTF-8."""
    pairs = [
        GET,
        ("PATH_INFO", "/environ/wörld".encode()),
        ("HTTP_X_LATIN", b"caf\xe9 \xff"),
        ("X_RAW", b"\x80\x81"),
    ]
    env = ask_env(address, pairs)
    assert env["PATH_INFO"] == "/environ/w\xc3\xb6rld"
    assert env["HTTP_X_LATIN"] == "caf\xe9 \xff"
    assert env["X_RAW"] == "\x80\x81"


@pytest.mark.parametrize("case", sorted(V2_BAD))
def test_v2_bad_names_and_values_are_400(server, case):
    """V2: names must be printable ASCII without spaces; request and HTTP_* values must not
    hold CR, LF or NUL."""
    key, value = V2_BAD[case]
    block = var(b"REQUEST_METHOD", b"GET") + var(key, value)
    assert_refused(server, server.tcp, raw_packet(block), 400)


def test_v3_repeated_http_vars_are_joined(server, address):
    """V3: repeated HTTP_* vars are joined with ", ", HTTP_COOKIE with "; "."""
    pairs = [
        *nginx_vars(path="/environ"),
        ("HTTP_ACCEPT", "text/html"),
        ("HTTP_X_MULTI", "a"),
        ("HTTP_COOKIE", "a=1"),
        ("HTTP_ACCEPT", "application/json"),
        ("HTTP_X_MULTI", "b"),
        ("HTTP_COOKIE", "b=2"),
        ("HTTP_X_MULTI", "c"),
    ]
    env = ask_env(address, pairs)
    assert env["HTTP_ACCEPT"] == "text/html, application/json"
    assert env["HTTP_X_MULTI"] == "a, b, c"
    assert env["HTTP_COOKIE"] == "a=1; b=2"


#: A value nginx's params send for each control var, and the override a user writes after
#: the include, as the environ shows it.
OVERRIDES = {
    "REQUEST_METHOD": ("GET", "POST"),
    "CONTENT_TYPE": ("", "text/plain"),
    "PATH_INFO": ("/hello", "/environ"),
    "SCRIPT_NAME": ("", "/mount"),
    "QUERY_STRING": ("a=1", "b=2"),
    "REQUEST_URI": ("/hello?a=1", "/environ?b=2"),
    "REMOTE_ADDR": ("127.0.0.1", "198.51.100.7"),
    "REMOTE_PORT": ("4000", "5000"),
    "HTTPS": ("", "on"),
    "UWSGI_SCHEME": ("http", "https"),
    "SERVER_PROTOCOL": ("HTTP/1.0", "HTTP/1.1"),
    "SERVER_NAME": ("localhost", "example.com"),
    "SERVER_PORT": ("80", "8443"),
}


@pytest.mark.parametrize("name", [n for n in CONTROL_VARS if n != "CONTENT_LENGTH"])
def test_v3_repeated_control_var_last_one_wins(server, name):
    """V3: `include uwsgi_params;` then `uwsgi_param NAME value;`: the last value is served,
    and the decisions follow it (the method, the path routed, the scheme)."""
    first, last = OVERRIDES[name]
    pairs = [p for p in nginx_vars(path="/environ") if p[0] != name]
    pairs += [(name, first), ("X_BETWEEN", "1"), (name, last)]
    env = ask_env(server.tcp, pairs)
    assert env[name] == last
    if name in ("HTTPS", "UWSGI_SCHEME"):
        assert env["wsgi.url_scheme"] == "https"
    if name == "REMOTE_ADDR":
        assert env["REMOTE_ADDR"] == "198.51.100.7"


def test_v3_repeated_content_length(server):
    """V3: CONTENT_LENGTH twice with one value frames the body; with two values → 400."""
    same = [*nginx_vars(method="POST", path="/echo"), ("CONTENT_LENGTH", "3")]
    same = [p for p in same if p[0] != "CONTENT_LENGTH"] + [("CONTENT_LENGTH", "3")] * 2
    reply = Reply(talk(server.tcp, packet(same, b"abc"))[0])
    assert (reply.status, reply.body) == (200, b"abc")
    two = [p for p in same if p[0] != "CONTENT_LENGTH"]
    two += [("CONTENT_LENGTH", "3"), ("CONTENT_LENGTH", "2")]
    assert_refused(server, server.tcp, packet(two, b"abc"), 400, "CONTENT_LENGTH", "twice")


def test_v3_other_repeated_var_last_wins(server):
    """V3: a repeated var that is neither HTTP_* nor control: the last one wins."""
    pairs = [
        *nginx_vars(path="/environ"),
        ("DOCUMENT_ROOT", "/second"),
        ("X_CUSTOM", "1"),
        ("X_CUSTOM", "2"),
    ]
    env = ask_env(server.tcp, pairs)
    assert env["DOCUMENT_ROOT"] == "/second"
    assert env["X_CUSTOM"] == "2"


def test_v4_default_limit_request_line_is_414(server):
    """V4: REQUEST_URI over gunicorn's default limit_request_line (4094) → 414."""
    ok = ask_env(
        server.tcp,
        [
            *nginx_vars(path="/environ")[:4],
            ("REQUEST_URI", "/" + "a" * 4093),
            ("PATH_INFO", "/environ"),
        ],
    )
    assert len(ok["REQUEST_URI"]) == 4094
    data = packet([GET, ("PATH_INFO", "/hello"), ("REQUEST_URI", "/" + "a" * 4094)])
    assert_refused(server, server.tcp, data, 414, "limit_request_line")


def test_v4_default_limit_request_fields_is_431(server):
    """V4: more HTTP_* vars than limit_request_fields (default 100) → 431; non-HTTP vars do
    not count."""
    many_other = [GET, ("PATH_INFO", "/environ")] + [(f"X_V{i}", "v") for i in range(150)]
    assert ask_env(server.tcp, many_other)["X_V149"] == "v"
    headers = [GET, ("PATH_INFO", "/environ")] + [(f"HTTP_X_H{i}", "v") for i in range(100)]
    assert ask_env(server.tcp, headers)["HTTP_X_H99"] == "v"
    headers.append(("HTTP_X_ONE_MORE", "v"))
    assert_refused(server, server.tcp, packet(headers), 431, "limit_request_fields")


def test_v4_default_limit_request_field_size_is_431(server):
    """V4: one HTTP_* var over limit_request_field_size (default 8190) → 431."""
    env = ask_env(server.tcp, [GET, ("PATH_INFO", "/environ"), ("HTTP_X_BIG", "v" * 8000)])
    assert len(env["HTTP_X_BIG"]) == 8000
    data = packet([GET, ("PATH_INFO", "/hello"), ("HTTP_X_BIG", "v" * 9000)])
    assert_refused(server, server.tcp, data, 431, "limit_request_field_size")


def test_v4_at_most_1000_vars(server):
    """V4: more than 1000 vars in total → 431."""
    pairs = [GET, ("PATH_INFO", "/environ")] + [(f"V{i}", "") for i in range(998)]
    assert ask_env(server.tcp, pairs)["V997"] == ""
    pairs.append(("V_ONE_MORE", ""))
    assert_refused(server, server.tcp, packet(pairs), 431, "1000")


def test_v5_content_length_absent_or_empty_is_zero(server, address):
    """V5: CONTENT_LENGTH absent or empty: no body; bytes that follow are not the body."""
    for pairs in (
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo")],
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", "")],
    ):
        reply = Reply(talk(address, packet(pairs, b"not a body"))[0])
        assert reply.status == 200
        assert reply.body == b""
        assert reply.header("X-Length") == "0"


def test_v5_content_length_digits(server):
    """V5: 1-19 ASCII digits, leading zeros allowed."""
    pairs = [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", "0005")]
    assert Reply(talk(server.tcp, packet(pairs, b"12345"))[0]).body == b"12345"


@pytest.mark.parametrize("value", V5_BAD)
def test_v5_bad_content_length_is_400(server, value):
    """V5: anything but 1-19 ASCII digits → 400."""
    pairs = [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", value.encode())]
    assert_refused(server, server.tcp, packet(pairs, b"12345"), 400, "CONTENT_LENGTH")


def test_v5_content_length_beyond_any_body_is_413(server):
    """V5/X1: 19 digits over the largest body that can be framed (2**63-1) → 413."""
    pairs = [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", "9" * 19)]
    assert_refused(server, server.tcp, packet(pairs), 413, "CONTENT_LENGTH")


def test_v5_content_length_alone_frames_the_body(server, address):
    """V5/E1: HTTP_TRANSFER_ENCODING: chunked (nginx forwards it after de-chunking) does not
    frame the body: CONTENT_LENGTH does."""
    pairs = [
        ("REQUEST_METHOD", "POST"),
        ("PATH_INFO", "/echo"),
        ("CONTENT_LENGTH", "5"),
        ("HTTP_TRANSFER_ENCODING", "chunked"),
        ("HTTP_CONTENT_LENGTH", "3"),
    ]
    reply = Reply(talk(address, packet(pairs, b"hello0\r\n\r\n"))[0])
    assert reply.body == b"hello"


def test_v6_no_request_method_is_a_get_warned_once_per_worker(server, address):
    """V6: no REQUEST_METHOD (nginx without `include uwsgi_params;`) is served as GET with the
    PEP 3333 keys filled; the worker logs one WARNING naming the include, however many such
    requests it serves."""
    for _ in range(3):
        env = ask_env(address, [("PATH_INFO", "/environ"), ("QUERY_STRING", "")])
        assert env["REQUEST_METHOD"] == "GET"
        for key in ("SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SCRIPT_NAME"):
            assert isinstance(env[key], str), key
        assert env["wsgi.url_scheme"] == "http"
    warned = [
        line
        for line in server.log().splitlines()
        if "[WARNING]" in line and "sent no REQUEST_METHOD" in line
    ]
    assert len(warned) == 1, warned
    assert "served as GET" in warned[0]
    assert "include uwsgi_params;" in warned[0]


@pytest.mark.parametrize("method", ["", "G ET", "GET\x01", "(GET)", "GE/T", "G\xe9T"])
def test_v6_request_method_must_be_a_token(server, method):
    """V6: REQUEST_METHOD must be an HTTP token."""
    data = packet([("REQUEST_METHOD", method.encode("latin-1")), ("PATH_INFO", "/hello")])
    assert_refused(server, server.tcp, data, 400, "REQUEST_METHOD")


def test_v6_any_token_method_is_served(server):
    """V6: an extension method that is a token is passed to the app."""
    env = ask_env(server.tcp, [("REQUEST_METHOD", "PROPFIND"), ("PATH_INFO", "/environ")])
    assert env["REQUEST_METHOD"] == "PROPFIND"


def test_v7_magic_uwsgi_vars_are_inert(server, tmp_path):
    """V7: UWSGI_SCRIPT/FILE/CHDIR/SETENV/PYHOME/... are plain strings: nothing is imported,
    run, changed."""
    marker, magic = magic_uwsgi_vars(tmp_path)
    before = ask_env(server.tcp, [GET, ("PATH_INFO", "/probe/cwd")])
    env = ask_env(server.tcp, [*nginx_vars(path="/environ"), *magic.items()])
    for key, value in magic.items():
        assert env[key] == value
    after = ask_env(server.tcp, [GET, ("PATH_INFO", "/probe/cwd")])
    assert after == before == {"cwd": str(TESTS), "FOO": None, "modules": False}
    assert not marker.exists()


# -- E. The WSGI environ ------------------------------------------------------------------------


def test_e1_every_var_under_its_own_name(server, address):
    """E1: each var lands under its name; HTTP_CONTENT_TYPE/LENGTH/TRANSFER_ENCODING and
    wsgi./gunicorn. names do not."""
    pairs = [
        *nginx_vars(path="/environ", content_type="text/plain"),
        ("HTTP_X_FOO", "foo"),
        ("X_CUSTOM_VAR", "custom"),
        ("lower_case.var", "ok"),
        ("HTTP_CONTENT_TYPE", "text/evil"),
        ("HTTP_CONTENT_LENGTH", "99"),
        ("HTTP_TRANSFER_ENCODING", "chunked"),
        ("wsgi.url_scheme", "https"),
        ("wsgi.multithread", "yes"),
        ("wsgi.input_terminated", "no"),
        ("gunicorn.socket", "fake"),
    ]
    env = ask_env(address, pairs)
    for key, value in pairs:
        if key.startswith(("wsgi.", "gunicorn.", "HTTP_CONTENT_", "HTTP_TRANSFER")):
            continue
        assert env[key] == value, key
    for key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"):
        assert key not in env
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is is_multithread(server.worker)
    assert env["wsgi.input_terminated"] is True
    keys = ask_env(address, [GET, ("PATH_INFO", "/probe/keys"), ("gunicorn.socket", "fake")])
    assert keys["gunicorn.socket.fileno"] is True


def test_e2_path_info_is_never_decoded_again(server, address):
    """E2: PATH_INFO is the var as sent: /a%20b (from a client's /a%2520b) stays."""
    env = env_for(address, path="/environ/a%20b/%2F/%ZZ")
    assert env["PATH_INFO"] == "/environ/a%20b/%2F/%ZZ"


def test_e2_missing_path_info_is_empty(server):
    """E2: no PATH_INFO var → '' (the app's 404 shows the path it saw)."""
    reply = Reply(talk(server.tcp, packet([GET, ("REQUEST_URI", "/environ")]))[0])
    assert reply.status == 404
    assert reply.body == b"not found: \n"


def test_e3_script_name_var_or_empty(server, address):
    """E3: SCRIPT_NAME is the var when present, else '' (no SCRIPT_NAME environment)."""
    assert env_for(address)["SCRIPT_NAME"] == ""
    assert env_for(address, SCRIPT_NAME="/mount")["SCRIPT_NAME"] == "/mount"


def test_e4_remote_addr_from_vars(server, address):
    """E4: REMOTE_ADDR/REMOTE_PORT are the real client nginx saw."""
    env = env_for(address)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.9", "40000")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_e4_remote_addr_falls_back_to_the_socket_peer(server, transport):
    """E4: without the vars, the socket peer; '' port on a unix socket."""
    address = address_of(server, transport)
    pairs = [p for p in nginx_vars(path="/environ") if p[0] not in ("REMOTE_ADDR", "REMOTE_PORT")]
    with connect(address) as s:
        s.sendall(packet(pairs))
        local = s.getsockname()
        env = Reply(read_all(s)).json()
    if transport == "unix":
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("", "")
    else:
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == (local[0], str(local[1]))


def test_e5_server_vars_from_nginx(server, address):
    """E5: SERVER_NAME/PORT/PROTOCOL come from the vars: nginx's view, HTTP/2.0 included."""
    pairs = [*nginx_vars(path="/environ")]
    pairs = [(k, "HTTP/2.0" if k == "SERVER_PROTOCOL" else v) for k, v in pairs]
    env = ask_env(address, pairs)
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["SERVER_PROTOCOL"]) == (
        "example.test",
        "8080",
        "HTTP/2.0",
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_e5_server_vars_fall_back_as_gunicorn_does(server, transport):
    """E5: without the vars: the listening address on TCP; on a unix socket the Host header
    (port 80 when it has none), else the socket path as gunicorn has it; HTTP/1.1."""
    address = address_of(server, transport)
    env = ask_env(address, [GET, ("PATH_INFO", "/environ")])
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    if transport == "unix":
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (address, "")
        env = ask_env(address, [GET, ("PATH_INFO", "/environ"), ("HTTP_HOST", "h.test:81")])
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("h.test", "81")
        env = ask_env(address, [GET, ("PATH_INFO", "/environ"), ("HTTP_HOST", "h.test")])
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("h.test", "80")
    else:
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (address[0], str(address[1]))


def test_e6_request_uri_and_raw_uri(server, address):
    """E6: REQUEST_URI kept; RAW_URI = REQUEST_URI, else PATH_INFO?QUERY_STRING."""
    env = env_for(address, query="a=1&b=%20")
    assert env["REQUEST_URI"] == env["RAW_URI"] == "/environ?a=1&b=%20"
    env = ask_env(address, [GET, ("PATH_INFO", "/environ/p"), ("QUERY_STRING", "q=1")])
    assert "REQUEST_URI" not in env
    assert env["RAW_URI"] == "/environ/p?q=1"
    env = ask_env(address, [GET, ("PATH_INFO", "/environ/p"), ("QUERY_STRING", "")])
    assert env["RAW_URI"] == "/environ/p"


E7_CASES = [
    ({}, "http"),
    ({"UWSGI_SCHEME": "https"}, "https"),
    ({"UWSGI_SCHEME": "HTTPS"}, "https"),
    ({"HTTPS": "on"}, "https"),
    ({"HTTPS": "1"}, "https"),
    ({"HTTPS": "TRUE"}, "https"),
    ({"HTTPS": "Yes"}, "https"),
    ({"HTTPS": "off"}, "http"),
    ({"HTTPS": ""}, "http"),
    ({"REQUEST_SCHEME": "https"}, "https"),
    ({"REQUEST_SCHEME": "ftp"}, "http"),
    ({"UWSGI_SCHEME": "http", "HTTPS": "on"}, "http"),
    ({"UWSGI_SCHEME": "http", "REQUEST_SCHEME": "https"}, "http"),
    ({"UWSGI_SCHEME": "gopher"}, "http"),
    ({"HTTP_X_FORWARDED_PROTO": "https"}, "https"),
    ({"HTTP_X_FORWARDED_SSL": "on"}, "https"),
    ({"HTTP_X_FORWARDED_PROTO": "http"}, "http"),
]


@pytest.mark.parametrize(("extra", "scheme"), E7_CASES, ids=[str(c[0]) for c in E7_CASES])
def test_e7_url_scheme(server, extra, scheme):
    """E7: https from UWSGI_SCHEME, HTTPS flags, a trusted peer's secure_scheme_headers
    (127.0.0.1 is in the default forwarded_allow_ips) or REQUEST_SCHEME; UWSGI_SCHEME=http
    forces http."""
    pairs = [p for p in nginx_vars(path="/environ") if p[0] != "REQUEST_SCHEME"]
    env = ask_env(server.tcp, [*pairs, *extra.items()])
    assert env["wsgi.url_scheme"] == scheme


def test_e8_usual_keys(server, address):
    """E8: wsgi.version, input, errors, file_wrapper, run_once, multithread (False for the sync
    worker only), multiprocess (one worker), input_terminated, SERVER_SOFTWARE,
    gunicorn.socket, early_hints."""
    keys = ask_env(address, [GET, ("PATH_INFO", "/probe/keys")])
    assert keys == {
        "wsgi.version": [1, 0],
        "wsgi.run_once": False,
        "wsgi.multiprocess": False,
        "wsgi.multithread": is_multithread(server.worker),
        "wsgi.input_terminated": True,
        "wsgi.errors.write": True,
        "wsgi.input.read": True,
        "wsgi.file_wrapper": True,
        "wsgi.early_hints": "None",
        "gunicorn.socket.fileno": True,
        "SERVER_SOFTWARE": keys["SERVER_SOFTWARE"],
    }
    assert keys["SERVER_SOFTWARE"].startswith("gunicorn")


# -- B. Request body ----------------------------------------------------------------------------


def test_b1_body_split_on_the_wire(server, address):
    """B1: exactly CONTENT_LENGTH bytes, whatever the segmentation."""
    body = bytes(range(256)) * 4
    data = request_packet(method="POST", path="/echo", body=body)
    head = len(data) - len(body)
    parts = [data[:head], data[head : head + 1], data[head + 1 : head + 500], data[head + 500 :]]
    reply = Reply(talk(address, parts, delay=0.05)[0])
    assert reply.body == body


def test_b1_body_followed_by_garbage(server, address):
    """B1: the body ends at CONTENT_LENGTH whatever follows it."""
    data = request_packet(method="POST", path="/echo", body=b"exact") + b"GARBAGE" * 1000
    reply = Reply(talk(address, data)[0])
    assert reply.body == b"exact"
    assert reply.header("X-Length") == "5"


def test_b1_large_body(server, address):
    """B1: a body much larger than one receive."""
    body = os.urandom(700_000)
    reply = Reply(talk(address, request_packet(method="POST", path="/echo", body=body))[0])
    assert reply.body == body


def test_b2_lines_iteration(server, address):
    """B2: iteration yields the lines, split on the wire or not."""
    body = b"one\ntwo two\n\nlast without newline"
    data = request_packet(method="POST", path="/lines", body=body)
    reply = Reply(talk(address, [data[:-20], data[-20:-5], data[-5:]], delay=0.02)[0])
    assert reply.json() == [4, 8, 1, 20]


B2_CASES = {
    "read:3,read:-1": ["one", "\ntwo\nthree\n"],
    "read:0,read:100,read:1": ["", "one\ntwo\nthree\n", ""],
    "readnone": ["one\ntwo\nthree\n"],
    "read": ["one\ntwo\nthree\n"],
    "readline,readline:2,readline:-1,readline,readline": ["one\n", "tw", "o\n", "three\n", ""],
    "readline:0,readline:100": ["", "one\n"],
    "readlines": [["one\n", "two\n", "three\n"]],
    "read:2,iter": ["on", ["e\n", "two\n", "three\n"]],
}


@pytest.mark.parametrize("ops", sorted(B2_CASES))
def test_b2_input_methods(server, ops):
    """B2: read(), read(n), read(-1), read(None), readline(), readline(n), readlines(),
    iteration."""
    body = b"one\ntwo\nthree\n"
    data = packet(
        [
            ("REQUEST_METHOD", "POST"),
            ("PATH_INFO", "/probe/body"),
            ("QUERY_STRING", ops),
            ("CONTENT_LENGTH", "14"),
        ],
        body,
    )
    head = len(data) - len(body)
    reply = Reply(talk(server.tcp, [data[: head + 2], data[head + 2 :]], delay=0.05)[0])
    assert reply.json() == B2_CASES[ops]


def test_b2_body_is_read_lazily(server, address):
    """B2: an app that never reads the body is answered at once, before the body arrives."""
    with connect(address, timeout=10) as s:
        s.sendall(request_packet(method="POST", path="/noread", body=b"x" * 1_000_000)[:-900_000])
        started = time.monotonic()
        s.settimeout(5)
        first = s.recv(65536)
        assert time.monotonic() - started < 2
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    good_request(address)


def test_b3_truncated_upload_is_an_oserror_for_the_app(server, address):
    """B3: EOF before CONTENT_LENGTH bytes: the app's read raises an OSError saying the
    client disconnected, never a short body."""
    data = packet(
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/probe/truncated"), ("CONTENT_LENGTH", "100")],
        b"only ten!!",
    )
    reply = Reply(talk(address, data, shut_write=True)[0])
    got = reply.json()
    assert got["oserror"] is True
    assert "disconnected" in got["msg"] and "10 of 100" in got["msg"]


def test_b3_x3_truncated_upload_logs_no_error(server, address):
    """B3/X3: when the app lets the disconnect error escape, only a debug line: no
    traceback, no ERROR, no answer, same worker."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    data = request_packet(method="POST", path="/echo", body=b"x" * 100)[:-60]
    raw, _ = talk(address, data, shut_write=True)
    assert raw == b""
    good_request(address)
    mark.wait_for(r"\[DEBUG\].*went away")
    no_high_level_lines(mark)
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


# -- R. Response --------------------------------------------------------------------------------


def test_r1_exact_bytes(server, address):
    """R1/R2: status line, headers as the app gave them, blank line, body; no Server, Date or
    Connection header."""
    raw, _ = talk(address, request_packet(path="/stream"))
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"".join(
        b"chunk %d\n" % i for i in range(5)
    )


@pytest.mark.parametrize(
    ("route", "query"),
    [
        ("status", "20 OK"),
        ("status", "2000 OK"),
        ("status", "200OK"),
        ("status", "abc OK"),
        ("status", "200 OK%0D%0AX-Evil: 1"),
        ("header-name", "Bad Name"),
        ("header-name", "X-Evil:"),
        ("header-name", ""),
    ],
)
def test_r1_malformed_status_or_header_is_500(server, route, query):
    """R1/X2: a malformed status or header name: the app gets an error, the peer a 500,
    nothing malformed reaches the wire."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    reply = Reply(
        talk(server.tcp, packet([GET, ("PATH_INFO", f"/probe/{route}"), ("QUERY_STRING", query)]))[
            0
        ]
    )
    assert reply.status == 500
    assert b"Evil" not in reply.raw and b"never sent" not in reply.raw
    mark.wait_for(r"\[ERROR\] Error handling request")
    assert "Traceback" in mark.new()
    good_request(server.tcp)
    assert server.live_worker_pids() == pids


def test_r1_header_value_injection_is_500(server):
    """R1: a header value with CR/LF (/badheader) never reaches the wire."""
    reply = Reply(talk(server.tcp, request_packet(path="/badheader"))[0])
    assert reply.status == 500
    assert b"pwned" not in reply.raw


@pytest.mark.parametrize("route", ["/hop", "/probe/hop-all"])
def test_r2_hop_by_hop_headers_stripped(server, address, route):
    """R2: Connection, Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade, Proxy-Connection
    from the app are dropped; the server adds no Server/Date/Connection."""
    reply = Reply(talk(address, request_packet(path=route))[0])
    assert reply.status == 200
    assert reply.header_names() == ["x-kept"]
    assert reply.body in (b"hop", b"hop-all")


def test_r3_never_chunked_body_ends_at_close(server, address):
    """R3: no Content-Length: no chunk markers, the body ends at close."""
    reply = Reply(talk(address, request_packet(path="/stream"))[0])
    assert reply.header("Transfer-Encoding") is None
    assert reply.body == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"


def test_r3_content_length_truncates(server, address):
    """R3: never more than Content-Length bytes."""
    reply = Reply(talk(address, request_packet(path="/long"))[0])
    assert reply.header("Content-Length") == "4"
    assert reply.body == b"0123"


def test_r3_short_body_warns_and_closes(server, address):
    """R3: the app wrote fewer bytes than its Content-Length: warning, close."""
    mark = LogMark(server)
    reply = Reply(talk(address, request_packet(path="/short"))[0])
    assert reply.header("Content-Length") == "100"
    assert reply.body == b"only this"
    line = mark.wait_for(r"\[WARNING\]")
    assert "Content-Length 100" in line and "sent 9" in line


NO_BODY_WARNING = "sent body bytes on a response without a body"


def test_r4_head_has_no_body_but_keeps_content_length(server, address):
    """R4: HEAD: no body bytes, Content-Length kept; the app's body is dropped silently
    (PEP 3333: that is the server's job, as in gunicorn), on every worker class. A 204 with
    a body, sent last, still warns: once its warning is in the log, the HEADs' would be too."""
    mark = LogMark(server)
    raw, _ = talk(address, request_packet(method="HEAD", path="/hello"))
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
    reply = Reply(talk(address, request_packet(method="HEAD", path="/big", query="200000"))[0])
    assert reply.header("Content-Length") == "200000"
    assert reply.body == b""
    reply = Reply(talk(address, request_packet(method="HEAD", path="/file"))[0])
    assert reply.body == b"" and reply.header("Content-Length") is not None
    talk(address, request_packet(path="/nocontent"))
    mark.wait_for(r"\[WARNING\].*" + NO_BODY_WARNING + r".*status 204")
    assert [line for line in mark.lines() if NO_BODY_WARNING in line and "status 200" in line] == []


@pytest.mark.parametrize(
    ("status", "length"),
    [
        ("204 No Content", None),
        ("304 Not Modified", "10"),
        ("100 Continue", None),
        ("199 Odd", None),
    ],
)
def test_r4_bodiless_statuses(server, status, length):
    """R4: 1xx, 204, 304: no body bytes; Content-Length kept for 304, dropped for 204/1xx."""
    reply = Reply(
        talk(
            server.tcp, packet([GET, ("PATH_INFO", "/probe/status-body"), ("QUERY_STRING", status)])
        )[0]
    )
    assert reply.status_line == "HTTP/1.1 " + status
    assert reply.body == b""
    assert reply.header("Content-Length") == length


def test_r4_204_from_echo_app(server):
    """R4: /nocontent (204 with a Content-Length and a body): neither reaches the wire, and
    the app's body is reported: a 204 with a body is the app's mistake."""
    mark = LogMark(server)
    raw, _ = talk(server.tcp, request_packet(path="/nocontent"))
    assert raw == b"HTTP/1.1 204 No Content\r\n\r\n"
    mark.wait_for(r"\[WARNING\].*" + NO_BODY_WARNING + r" \(status 204\)")


def test_r5_file_wrapper_sends_the_file(server, address):
    """R5: wsgi.file_wrapper (sendfile) sends the whole file."""
    reply = Reply(talk(address, request_packet(path="/file"))[0])
    expected = (TESTS / "apps" / "echo.py").read_bytes()
    assert reply.header("Content-Length") == str(len(expected))
    assert reply.body == expected


def test_r5_head_with_file_wrapper(server):
    """R4/R5: HEAD on a file_wrapper response: no body bytes."""
    reply = Reply(talk(server.tcp, request_packet(method="HEAD", path="/file"))[0])
    assert reply.body == b""


def test_r6_no_interim_responses(server, address):
    """R6: wsgi.early_hints is a no-op, HTTP_EXPECT is ignored: never a 1xx."""
    raw, _ = talk(address, request_packet(path="/hints"))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.count(b"HTTP/1.1") == 1
    assert Reply(raw).body == b"after hints"
    data = request_packet(
        method="POST", path="/echo", body=b"expected", headers=[("Expect", "100-continue")]
    )
    raw, _ = talk(address, data)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.count(b"HTTP/1.1") == 1
    assert Reply(raw).body == b"expected"


def test_r7_exc_info_replaces_the_response(server, address):
    """R7: start_response with exc_info before anything was sent replaces status and headers."""
    reply = Reply(talk(address, request_packet(path="/exc-info"))[0])
    assert reply.status_line == "HTTP/1.1 500 Oops"
    assert reply.header("X-Replaced") == "1"
    assert reply.body == b"replaced"


def test_r7_exc_info_after_headers_sent_closes(server):
    """R7/X2: exc_info after the head went out re-raises: no second head, the connection
    ends; the exception is logged."""
    mark = LogMark(server)
    raw, _ = talk(server.tcp, packet([GET, ("PATH_INFO", "/probe/exc-late")]))
    assert raw == b"HTTP/1.1 200 OK\r\n\r\nalready sent"
    mark.wait_for(r"\[ERROR\]")
    assert "too late" in mark.new()


def test_r7_start_response_twice_without_exc_info_is_500(server):
    """R7: a second start_response without exc_info is an error."""
    reply = Reply(talk(server.tcp, packet([GET, ("PATH_INFO", "/probe/twice")]))[0])
    assert reply.status == 500


def test_r7_bare_bytes(server, address):
    """R7: a bare bytes return value is sent as is (not byte by byte)."""
    raw, _ = talk(address, request_packet(path="/bytes"))
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbare bytes"


@pytest.mark.parametrize("fail", [False, True])
def test_r7_iterable_close_always_called(server, tmp_path, fail):
    """R7: the app iterable's close() is called, also when iterating it fails."""
    marker = tmp_path / "closed"
    route = "/probe/close-fail" if fail else "/probe/close"
    raw, _ = talk(server.tcp, packet([GET, ("PATH_INFO", route), ("QUERY_STRING", str(marker))]))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"first " if fail else b"first second")
    good_request(server.tcp)
    assert marker.read_text() == "closed"


# -- X. Errors and logging ----------------------------------------------------------------------


def test_x2_app_exception_is_500_with_traceback(server, address):
    """X2: an exception from the app: 500, logged with its traceback; the worker keeps
    serving."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    reply = Reply(talk(address, request_packet(path="/raise"))[0])
    assert reply.status == 500
    assert reply.header("Content-Length") == str(len(reply.body))
    mark.wait_for(r"\[ERROR\] Error handling request")
    assert "Traceback" in mark.new() and "boom from the test app" in mark.new()
    good_request(address)
    assert server.live_worker_pids() == pids


def test_x2_late_app_exception_just_closes(server):
    """X2: an exception after the head went out: no 500 appended, just close; the exception
    is logged (on the sync worker's fast path, after the close)."""
    mark = LogMark(server)
    raw, _ = talk(server.tcp, request_packet(path="/raise-late"))
    assert raw == b"HTTP/1.1 200 OK\r\n\r\npartial"
    mark.wait_for(r"\[ERROR\] Error handling request GET /raise-late")


def test_x3_peer_hangs_up_mid_response(server, address):
    """X3: the peer closing while a large response is written is debug noise only."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    for _ in range(3):
        with connect(address) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(request_packet(path="/big", query="30000000"))
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        # closed with a reset while the server is still writing
    good_request(address)
    no_high_level_lines(mark)
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


def test_x3_peer_hangs_up_mid_head(server, address):
    """X3: EOF in the middle of the header or the vars: no answer, nothing above debug."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    data = request_packet(path="/hello")
    for cut in (2, 4, 20, len(data) - 1):
        raw, _ = talk(address, data[:cut], shut_write=True)
        assert raw == b""
    good_request(address)
    no_high_level_lines(mark)
    assert server.live_worker_pids() == pids


def test_x1_x4_flood_of_bad_packets_keeps_the_worker(server):
    """X1/X4: 300 bad packets of every kind: each answered with an error status (or closed),
    one warning each, no traceback, the worker is never restarted."""
    rng = random.Random(1234)
    pids = server.live_worker_pids()
    mark = LogMark(server)
    good = request_packet(method="POST", path="/echo", body=b"abc")
    statuses = []
    for i in range(300):
        kind = i % 6
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(4, 200)))
        elif kind == 1:  # flip bytes of a good packet
            data = bytearray(good)
            for _ in range(3):
                data[rng.randrange(4, len(data))] = rng.randrange(256)
            data = bytes(data)
        elif kind == 2:
            data = raw_packet(F3_BAD_BLOCKS[sorted(F3_BAD_BLOCKS)[i % len(F3_BAD_BLOCKS)]])
        elif kind == 3:
            data = F7_FOREIGN["http_get"]
        elif kind == 4:
            data = packet(nginx_vars(), modifier1=rng.choice([1, 2, 3, 99, 200]))
        else:
            data = header(0, rng.randrange(1, 65536)) + os.urandom(rng.randrange(0, 300))
        raw, _ = talk(server.tcp, data, shut_write=True)
        if raw:
            statuses.append(Reply(raw).status)
    good_request(server.tcp)
    assert len(statuses) > 200
    assert set(statuses) <= {200, 400, 404, 413, 414, 431, 501}, set(statuses)
    assert "Traceback" not in mark.new()
    assert not mark.lines("ERROR") and not mark.lines("CRITICAL")
    assert server.live_worker_pids() == pids


def test_x4_random_vars_blocks_never_crash(server):
    """X4: random well-framed vars blocks with random keys and values: always a well-formed
    HTTP answer, never a crash or a traceback."""
    rng = random.Random(99)
    pids = server.live_worker_pids()
    mark = LogMark(server)
    alphabet = b"ABCHTP_ \r\n\x00\xffwsgi.\x01/%"
    for _ in range(100):
        pairs = [GET, ("PATH_INFO", "/environ")]
        for _ in range(rng.randrange(0, 8)):
            key = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 10)))
            value = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 10)))
            pairs.append((key, value))
        rng.shuffle(pairs)
        raw, _ = talk(server.tcp, packet(pairs))
        reply = Reply(raw)
        assert reply.status in (200, 400, 404), reply
        if reply.status == 200:
            json.loads(reply.body)
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


def test_x4_server_survives_whole_module(server):
    """X4: after everything above the first worker still serves."""
    assert len(server.worker_pids()) == 1
    good_request(server.tcp)


def test_tests_dir_is_gunicorn_cwd(server):
    """Sanity check of the V7 test: the worker's cwd is the tests folder."""
    pid = server.live_worker_pids()[0]
    assert Path(os.readlink(f"/proc/{pid}/cwd")) == TESTS
