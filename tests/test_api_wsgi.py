"""``gunicorn_uwsgi.wsgi``: the environ from ``create(req, sock, client, server, cfg)`` (E1-E8) and
the ``Response`` writer over a real socketpair (R1-R7). Each test names the behaviour ids of
/work/shared/spec/behaviour.md it covers."""

from __future__ import annotations

import io
import logging
import random
import socket
import sys
import threading
from collections.abc import Iterator

import pytest
from gunicorn import SERVER_SOFTWARE
from gunicorn.config import Config
from gunicorn.http.wsgi import FileWrapper

from gunicorn_uwsgi import UWSGIParser, errors, wsgi
from gunicorn_uwsgi.message import UWSGIRequest
from support import Reply, packet, request_packet, vector

CLIENT = ("127.0.0.1", 5000)  # the socket peer: nginx
SERVER = ("127.0.0.1", 8000)  # the listening address


def config(**settings) -> Config:
    c = Config()
    for name, value in settings.items():
        c.set(name, value)
    return c


def request(data, peer=CLIENT, cfg=None) -> UWSGIRequest:
    if not isinstance(data, bytes):
        data = packet(data)
    return next(UWSGIParser(cfg or config(), [data], peer))


def environ(data, client=CLIENT, server=SERVER, cfg=None, sock=None) -> dict:
    cfg = cfg or config()
    req = request(data, peer=client, cfg=cfg)
    resp, env = wsgi.create(req, sock, client, server, cfg)
    assert isinstance(resp, wsgi.Response)
    # Every key has its value: none is left as the empty slot of the prepared dict.
    unset = [
        k for k, v in env.items() if v is None and not (k == "gunicorn.socket" and sock is None)
    ]
    assert not unset, unset
    return env


def get(**extra) -> list:
    """A minimal request's vars plus ``extra``."""
    return [("REQUEST_METHOD", "GET"), *extra.items()]


# -- the vectors (E1-E6) ---------------------------------------------------------------------


def test_e1_e2_e6_browser_vector_environ():
    env = environ(vector("nginx-get-browser.bin"))
    expected = {
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "x=1&y=two",
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
        "REQUEST_URI": "/hello/w%C3%B6rld?x=1&y=two",
        "RAW_URI": "/hello/w%C3%B6rld?x=1&y=two",
        "PATH_INFO": "/hello/w\xc3\xb6rld",
        "SCRIPT_NAME": "",
        "DOCUMENT_ROOT": "/var/www/html",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "58630",
        "SERVER_PORT": "18080",
        "SERVER_NAME": "localhost",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.5",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate, br",
        "HTTP_COOKIE": "sessionid=abc123def456; csrftoken=XyZ789",
        "HTTP_X_FORWARDED_FOR": "203.0.113.7",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "wsgi.url_scheme": "http",
    }
    cgi = {k: v for k, v in env.items() if not k.startswith(("wsgi.", "gunicorn."))}
    cgi["wsgi.url_scheme"] = env["wsgi.url_scheme"]
    assert cgi == expected


def test_e1_post_form_vector_leaves_out_http_content_headers():
    env = environ(vector("nginx-post-form.bin"))
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "25"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["REQUEST_METHOD"] == "POST"
    assert env["wsgi.input"].read() == b"name=gunicorn&proto=uwsgi"


def test_e1_chunked_vector_leaves_out_transfer_encoding():
    env = environ(vector("nginx-post-chunked.bin"))
    assert "HTTP_TRANSFER_ENCODING" not in env
    assert env["CONTENT_LENGTH"] == "3"
    assert env["HTTP_CONNECTION"] == "close"
    assert env["wsgi.input"].read() == b"abc"
    assert env["wsgi.input"].read() == b""


def test_e2_e6_encoded_path_vector():
    env = environ(vector("nginx-get-encoded-path.bin"))
    assert env["PATH_INFO"] == "/cap/a b"
    assert env["REQUEST_URI"] == env["RAW_URI"] == "/cap/a%20b?x=1"
    assert env["QUERY_STRING"] == "x=1"
    # nginx sent SERVER_NAME empty: it is kept as sent (E5).
    assert env["SERVER_NAME"] == ""
    assert env["SERVER_PORT"] == "28480"


@pytest.mark.parametrize(
    "name",
    [
        "nginx-get-browser.bin",
        "nginx-post-form.bin",
        "nginx-get-encoded-path.bin",
        "nginx-post-chunked.bin",
    ],
)
def test_e1_every_var_lands_under_its_own_name(name):
    req = request(vector(name))
    env = wsgi.create(req, None, CLIENT, SERVER, config())[1]
    hidden = {"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"}
    for key, value in req.uwsgi_vars.items():
        if key in hidden:
            assert key not in env
        else:
            assert env[key] == value, key
    assert all(type(v) is str for k, v in env.items() if k.isupper())


# -- E1: server keys a peer cannot set --------------------------------------------------------


def test_e1_peer_cannot_override_wsgi_or_gunicorn_keys():
    sock = object()
    pairs = get(
        **{
            "wsgi.input": "evil",
            "wsgi.errors": "evil",
            "wsgi.version": "evil",
            "wsgi.url_scheme": "https",
            "wsgi.multithread": "1",
            "wsgi.multiprocess": "1",
            "wsgi.run_once": "1",
            "wsgi.file_wrapper": "evil",
            "wsgi.input_terminated": "0",
            "wsgi.early_hints": "evil",
            "wsgi.custom": "evil",
            "gunicorn.socket": "evil",
            "gunicorn.custom": "evil",
        }
    )
    env = environ(pairs, sock=sock)
    assert env["wsgi.input"].read() == b""
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.file_wrapper"] is FileWrapper
    assert env["wsgi.input_terminated"] is True
    assert callable(env["wsgi.early_hints"])
    assert env["gunicorn.socket"] is sock
    assert env["wsgi.errors"] != "evil"
    assert "wsgi.custom" not in env
    assert "gunicorn.custom" not in env


def test_e1_other_vars_kept_and_repeated_headers_joined():
    env = environ(
        [
            *get(DOCUMENT_ROOT="/srv", UWSGI_SCRIPT="x:y", HTTP_X_CUSTOM="1"),
            ("HTTP_ACCEPT", "a"),
            ("HTTP_ACCEPT", "b"),
            ("HTTP_COOKIE", "a=1"),
            ("HTTP_COOKIE", "b=2"),
        ]
    )
    assert env["DOCUMENT_ROOT"] == "/srv"
    assert env["UWSGI_SCRIPT"] == "x:y"
    assert env["HTTP_X_CUSTOM"] == "1"
    assert env["HTTP_ACCEPT"] == "a, b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"


# -- E2: PATH_INFO ---------------------------------------------------------------------------


def test_e2_path_info_never_percent_decoded_again():
    # The client sent /a%2520b; nginx decoded it once to /a%20b.
    env = environ(get(PATH_INFO="/a%20b", REQUEST_URI="/a%2520b"))
    assert env["PATH_INFO"] == "/a%20b"
    assert env["RAW_URI"] == "/a%2520b"


def test_e2_path_info_latin1_never_utf8():
    env = environ(get(PATH_INFO=b"/caf\xc3\xa9/\xff"))
    assert env["PATH_INFO"] == "/caf\xc3\xa9/\xff"
    assert env["PATH_INFO"].encode("latin-1") == b"/caf\xc3\xa9/\xff"


def test_e2_missing_path_info_is_empty():
    env = environ(get())
    assert env["PATH_INFO"] == ""
    assert env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == ""


# -- E3: SCRIPT_NAME -------------------------------------------------------------------------


@pytest.fixture
def no_script_name(monkeypatch):
    monkeypatch.delenv("SCRIPT_NAME", raising=False)
    return monkeypatch


def test_e3_script_name_var_used_as_sent(no_script_name):
    env = environ(get(SCRIPT_NAME="/app", PATH_INFO="/app/x"))
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/app/x"


def test_e3_script_name_environment_variable(no_script_name):
    no_script_name.setenv("SCRIPT_NAME", "/app")
    env = environ(get(PATH_INFO="/app/x/y", REQUEST_URI="/app/x/y"))
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/x/y"
    assert env["RAW_URI"] == "/app/x/y"


def test_e3_script_name_environment_variable_not_a_prefix(no_script_name):
    no_script_name.setenv("SCRIPT_NAME", "/app")
    with pytest.raises(errors.ConfigurationProblem) as info:
        environ(get(PATH_INFO="/other"))
    assert info.value.code == 500
    from gunicorn.http.errors import ConfigurationProblem

    assert isinstance(info.value, ConfigurationProblem)


def test_e3_script_name_var_beats_environment_variable(no_script_name):
    no_script_name.setenv("SCRIPT_NAME", "/env")
    env = environ(get(SCRIPT_NAME="/var", PATH_INFO="/other"))
    assert env["SCRIPT_NAME"] == "/var"
    assert env["PATH_INFO"] == "/other"


@pytest.mark.parametrize(
    ("script", "path", "want_script", "want_path"),
    [
        ("/app", "/app/x", "/app", "/x"),
        ("/app/", "/app/x", "/app", "/x"),
        ("/app", "/app", "/app", ""),
        ("/app", "/app/", "/app", "/"),
        ("/app", "/application", "/app", "/application"),  # not on a / boundary: left alone
        ("/app", "/other/x", "/app", "/other/x"),
    ],
)
def test_f4_e3_modifier1_30_strips_script_name(
    no_script_name, script, path, want_script, want_path
):
    env = environ(packet(get(SCRIPT_NAME=script, PATH_INFO=path), modifier1=30))
    assert env["PATH_INFO"] == want_path
    assert env["SCRIPT_NAME"] == want_script


def test_f4_e3_modifier1_30_with_environment_variable(no_script_name):
    no_script_name.setenv("SCRIPT_NAME", "/app")
    env = environ(packet(get(PATH_INFO="/app/x"), modifier1=30))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/x")


def test_f4_modifier1_0_does_not_strip_script_name_var(no_script_name):
    env = environ(packet(get(SCRIPT_NAME="/app", PATH_INFO="/app/x"), modifier1=0))
    assert env["PATH_INFO"] == "/app/x"


# -- E4: REMOTE_ADDR / REMOTE_PORT -----------------------------------------------------------


def test_e4_remote_addr_from_vars():
    env = environ(request_packet(), client=("127.0.0.1", 5000))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.9", "40000")


def test_e4_remote_addr_falls_back_to_tcp_peer():
    env = environ(get(), client=("127.0.0.1", 5000))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", "5000")
    env = environ(get(), client=("::1", 6000, 0, 0))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("::1", "6000")


def test_e4_remote_addr_falls_back_to_unix_peer():
    env = environ(get(), client="", server="/run/gunicorn.sock")
    assert env["REMOTE_ADDR"] == ""
    assert env["REMOTE_PORT"] == ""


# -- E5: SERVER_* ----------------------------------------------------------------------------


def test_e5_server_vars_from_nginx():
    env = environ(get(SERVER_NAME="example.test", SERVER_PORT="443", SERVER_PROTOCOL="HTTP/2.0"))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.test", "443")
    assert env["SERVER_PROTOCOL"] == "HTTP/2.0"


def test_e5_server_fallback_tcp_listener():
    env = environ(get(), server=("127.0.0.1", 8000))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_e5_server_fallback_one_missing():
    env = environ(get(SERVER_NAME="example.test"), server=("127.0.0.1", 8000))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.test", "8000")


@pytest.mark.parametrize(
    ("host", "extra", "name", "port"),
    [
        ("example.test:8081", {}, "example.test", "8081"),
        ("example.test", {}, "example.test", "80"),
        ("example.test", {"HTTPS": "on"}, "example.test", "443"),
        ("[::1]:9000", {}, "[::1]", "9000"),
        ("[::1]", {}, "[::1]", "80"),
        # No Host: gunicorn's own fallback is the socket path and an empty port.
        (None, {}, "/run/gunicorn.sock", ""),
    ],
)
def test_e5_server_fallback_unix_listener_uses_host(host, extra, name, port):
    pairs = get(**extra)
    if host is not None:
        pairs.append(("HTTP_HOST", host))
    env = environ(pairs, client="", server="/run/gunicorn.sock")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (name, port)


# -- E6: REQUEST_URI / RAW_URI ---------------------------------------------------------------


def test_e6_raw_uri_without_request_uri():
    env = environ(get(PATH_INFO="/p", QUERY_STRING="a=1&b"))
    assert env["RAW_URI"] == "/p?a=1&b"
    assert "REQUEST_URI" not in env
    env = environ(get(PATH_INFO="/p", QUERY_STRING=""))
    assert env["RAW_URI"] == "/p"


def test_e6_request_uri_kept():
    env = environ(get(PATH_INFO="/p", REQUEST_URI="/p%3F?q"))
    assert env["REQUEST_URI"] == env["RAW_URI"] == "/p%3F?q"


# -- E7: wsgi.url_scheme ---------------------------------------------------------------------


def scheme(pairs, client=CLIENT, cfg=None) -> str:
    return environ(get() + list(pairs), client=client, cfg=cfg)["wsgi.url_scheme"]


def test_e7_default_is_http():
    assert scheme([]) == "http"
    assert scheme([("REQUEST_SCHEME", "http")]) == "http"


@pytest.mark.parametrize("value", ["https", "HTTPS", "Https"])
def test_e7_uwsgi_scheme_https(value):
    assert scheme([("UWSGI_SCHEME", value)]) == "https"


@pytest.mark.parametrize("value", ["on", "ON", "1", "true", "True", "yes", "YES"])
def test_e7_https_flag_true(value):
    assert scheme([("HTTPS", value)]) == "https"


@pytest.mark.parametrize("value", ["off", "0", "", "no", "false", "https"])
def test_e7_https_flag_other_values_are_http(value):
    assert scheme([("HTTPS", value)]) == "http"


def test_e7_request_scheme_https():
    assert scheme([("REQUEST_SCHEME", "https")]) == "https"


def test_e7_uwsgi_scheme_http_forces_http(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert scheme([("UWSGI_SCHEME", "http"), ("HTTPS", "on")]) == "http"
    assert scheme([("UWSGI_SCHEME", "http"), ("REQUEST_SCHEME", "https")]) == "http"
    assert scheme([("UWSGI_SCHEME", "http"), ("HTTP_X_FORWARDED_PROTO", "https")]) == "http"
    assert scheme([("UWSGI_SCHEME", "http")], cfg=config(certfile=str(cert))) == "http"


def test_e7_gunicorn_serving_tls_itself(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert scheme([], cfg=config(certfile=str(cert))) == "https"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("HTTP_X_FORWARDED_PROTO", "https"),
        ("HTTP_X_FORWARDED_SSL", "on"),
        ("HTTP_X_FORWARDED_PROTOCOL", "ssl"),
    ],
)
def test_e7_secure_scheme_headers_from_trusted_peer(header, value):
    assert scheme([(header, value)], client=("127.0.0.1", 1)) == "https"
    assert scheme([(header, value)], client=("::1", 1, 0, 0)) == "https"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("HTTP_X_FORWARDED_PROTO", "https"),
        ("HTTP_X_FORWARDED_SSL", "on"),
        ("HTTP_X_FORWARDED_PROTOCOL", "ssl"),
    ],
)
def test_e7_secure_scheme_headers_ignored_from_untrusted_peer(header, value):
    cfg = config(uwsgi_allow_ips="*")
    assert scheme([(header, value)], client=("10.0.0.7", 1), cfg=cfg) == "http"


def test_e7_secure_scheme_headers_wrong_value_is_http():
    assert scheme([("HTTP_X_FORWARDED_PROTO", "http")]) == "http"
    assert scheme([("HTTP_X_FORWARDED_SSL", "off")]) == "http"


def test_e7_forwarded_allow_ips_star_and_cidr():
    hdr = [("HTTP_X_FORWARDED_PROTO", "https")]
    peer = ("10.0.0.7", 1)
    cfg = config(uwsgi_allow_ips="*", forwarded_allow_ips="*")
    assert scheme(hdr, client=peer, cfg=cfg) == "https"
    cfg = config(uwsgi_allow_ips="*", forwarded_allow_ips="10.0.0.0/24")
    assert scheme(hdr, client=peer, cfg=cfg) == "https"
    assert scheme(hdr, client=("10.0.1.7", 1), cfg=cfg) == "http"
    cfg = config(uwsgi_allow_ips="*", forwarded_allow_ips="10.0.0.0/24")
    assert scheme(hdr, client=("::ffff:10.0.0.7", 1, 0, 0), cfg=cfg) == "https"


def test_e7_trust_is_decided_by_the_socket_peer_not_remote_addr():
    cfg = config(uwsgi_allow_ips="*", forwarded_allow_ips="203.0.113.9")
    pairs = [("REMOTE_ADDR", "203.0.113.9"), ("HTTP_X_FORWARDED_PROTO", "https")]
    assert scheme(pairs, client=("10.0.0.7", 1), cfg=cfg) == "http"
    assert scheme(pairs, client=("203.0.113.9", 1), cfg=cfg) == "https"


def test_e7_unix_peer_is_trusted_as_gunicorn_does():
    env = environ(get(HTTP_X_FORWARDED_PROTO="https"), client="", server="/run/g.sock")
    assert env["wsgi.url_scheme"] == "https"


def test_e7_custom_secure_scheme_headers():
    cfg = config(secure_scheme_headers={"X-SCHEME": "https"})
    assert scheme([("HTTP_X_SCHEME", "https")], cfg=cfg) == "https"
    cfg = config(secure_scheme_headers={"X-SCHEME": "https"})
    assert scheme([("HTTP_X_FORWARDED_PROTO", "https")], cfg=cfg) == "http"
    cfg = config(secure_scheme_headers={})
    assert scheme([("HTTP_X_FORWARDED_PROTO", "https")], cfg=cfg) == "http"


def test_e7_request_scheme_recorded_on_the_request():
    cfg = config()
    req = request(get(HTTPS="on"), cfg=cfg)
    wsgi.create(req, None, CLIENT, SERVER, cfg)
    assert req.scheme == "https"


# -- E8: the wsgi.* keys ---------------------------------------------------------------------


def test_e8_wsgi_keys():
    sock = object()
    cfg = config()
    req = request(request_packet(method="POST", body=b"abc"), cfg=cfg)
    _, env = wsgi.create(req, sock, CLIENT, SERVER, cfg)
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.input"] is req.body
    assert hasattr(env["wsgi.errors"], "write")
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.file_wrapper"] is FileWrapper
    assert env["wsgi.input_terminated"] is True
    assert env["SERVER_SOFTWARE"] == SERVER_SOFTWARE
    assert env["gunicorn.socket"] is sock
    assert env["wsgi.input"].read() == b"abc"


def test_e8_multiprocess_when_several_workers():
    assert environ(get(), cfg=config(workers=3))["wsgi.multiprocess"] is True
    assert environ(get(), cfg=config(workers=1))["wsgi.multiprocess"] is False


def test_e8_r6_early_hints_is_a_no_op():
    a, b = socket.socketpair()
    with a, b:
        env = environ(get(), sock=b)
        assert env["wsgi.early_hints"]([("Link", "</s.css>; rel=preload")]) is None
        b.close()
        assert a.recv(100) == b""


def test_r6_expect_header_ignored():
    a, b = socket.socketpair()
    with a, b:
        env = environ(
            request_packet(method="POST", body=b"x", headers=[("Expect", "100-continue")]),
            sock=b,
        )
        assert env["HTTP_EXPECT"] == "100-continue"
        b.close()
        assert a.recv(100) == b""


def test_e8_environ_is_a_fresh_dict_each_request():
    cfg = config()
    env1 = environ(get(PATH_INFO="/1"), cfg=cfg)
    env1["X_ADDED"] = "1"
    env2 = environ(get(PATH_INFO="/2"), cfg=cfg)
    assert "X_ADDED" not in env2
    assert env2["PATH_INFO"] == "/2"


# -- Response (R1-R7) ------------------------------------------------------------------------


class RecordingSocket:
    """Our socket, recording the writes the response makes (a double of our side only)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes: list[bytes] = []
        self.sendfiles: list[tuple[int, int]] = []

    def sendall(self, data) -> None:
        self.writes.append(bytes(data))
        self.sock.sendall(data)

    def sendfile(self, file, offset=0, count=None):
        self.sendfiles.append((offset, count))
        return self.sock.sendfile(file, offset, count)


class Wire:
    """A socketpair: the response writes to ``sock``; ``received()`` is what the peer got."""

    def __init__(self) -> None:
        self.peer, ours = socket.socketpair()
        self.peer.settimeout(10)
        self.ours = ours
        self.sock = RecordingSocket(ours)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            chunk = self.peer.recv(65536)
            if not chunk:
                return
            self._chunks.append(chunk)

    def received(self) -> bytes:
        self.ours.close()
        self._reader.join(10)
        self.peer.close()
        return b"".join(self._chunks)


@pytest.fixture
def wire() -> Iterator[Wire]:
    w = Wire()
    yield w
    w.ours.close()
    w._reader.join(10)
    w.peer.close()


def response(wire: Wire, method: str = "GET", sendfile: bool = True) -> wsgi.Response:
    cfg = config()
    req = request(request_packet(method=method), cfg=cfg)
    resp = wsgi.Response(req, wire.sock, cfg, sendfile)
    return resp


def test_r1_r5_simple_response_exact_bytes_one_write(wire):
    resp = response(wire)
    write = resp.start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    assert write == resp.write
    resp.write(b"hello")
    resp.close()
    assert wire.sock.writes == [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    ]
    assert wire.received() == wire.sock.writes[0]
    assert resp.status_code == 200
    assert resp.sent == 5


def test_r1_r2_no_server_date_connection_added_hop_by_hop_stripped(wire):
    resp = response(wire)
    resp.start_response(
        "200 OK",
        [
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("X-App", "1"),
        ],
    )
    resp.write(b"body")
    resp.close()
    reply = Reply(wire.received())
    assert reply.headers == [("X-App", "1")]
    assert reply.body == b"body"


def test_r3_no_content_length_never_chunked(wire):
    resp = response(wire)
    resp.start_response("200 OK", [("Content-Type", "text/plain")])
    for part in (b"ab", b"", b"cd", b"e" * 10):
        resp.write(part)
    resp.close()
    assert resp.chunked is False
    raw = wire.received()
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabcd" + b"e" * 10


def test_r3_large_body_no_chunked_framing(wire):
    resp = response(wire)
    resp.start_response("200 OK", [])
    big = bytes(range(256)) * 1024  # 256 KiB
    resp.write(big)
    resp.write(b"tail")
    resp.close()
    assert wire.received() == b"HTTP/1.1 200 OK\r\n\r\n" + big + b"tail"


def test_r3_content_length_truncates_extra_bytes(wire):
    resp = response(wire)
    resp.start_response("200 OK", [("Content-Length", "5")])
    resp.write(b"hel")
    resp.write(b"lo world")
    resp.write(b"more")
    resp.close()
    assert wire.received() == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert resp.sent == 5


def test_r3_fewer_bytes_than_content_length_warns(wire, caplog):
    resp = response(wire)
    resp.start_response("200 OK", [("Content-Length", "10")])
    resp.write(b"abc")
    with caplog.at_level(logging.WARNING, logger="gunicorn.error"):
        resp.close()
    assert any("10" in r.getMessage() and "3" in r.getMessage() for r in caplog.records)
    assert wire.received() == b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"


def test_r3_exact_content_length_does_not_warn(wire, caplog):
    resp = response(wire)
    resp.start_response("200 OK", [("Content-Length", "3")])
    resp.write(b"abc")
    with caplog.at_level(logging.WARNING, logger="gunicorn.error"):
        resp.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_r1_close_without_body_sends_the_head(wire):
    resp = response(wire)
    resp.start_response("404 Not Found", [("Content-Length", "0")])
    resp.write(b"")
    assert wire.sock.writes == []
    resp.close()
    assert wire.received() == b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("method", "status", "headers", "expected_head"),
    [
        (
            "HEAD",
            "200 OK",
            [("Content-Length", "5")],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        ),
        (
            "GET",
            "304 Not Modified",
            [("Content-Length", "5")],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        ),
        ("GET", "204 No Content", [("Content-Length", "5")], b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", "103 Early Hints", [("Content-Length", "5")], b"HTTP/1.1 103 Early Hints\r\n\r\n"),
    ],
)
def test_r4_no_body_bytes(wire, caplog, method, status, headers, expected_head):
    """R4: no body bytes. The body of a HEAD response is dropped silently (the server's job,
    PEP 3333); one on a 1xx/204/304 is the app's mistake and warns once."""
    resp = response(wire, method=method)
    resp.start_response(status, headers)
    with caplog.at_level(logging.WARNING, logger="gunicorn.error"):
        resp.write(b"hello")
        resp.write(b"more")
        resp.close()
    assert wire.received() == expected_head
    warned = [r for r in caplog.records if "without a body" in r.getMessage()]
    assert len(warned) == (0 if method == "HEAD" else 1), warned


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_r4_head_with_a_bodiless_status_still_warns(wire, caplog, status):
    """R4: a HEAD answered 204/304 with a body: the app would send that body on GET too."""
    resp = response(wire, method="HEAD")
    resp.start_response(status, [])
    with caplog.at_level(logging.WARNING, logger="gunicorn.error"):
        resp.write(b"hello")
        resp.close()
    assert [r for r in caplog.records if "without a body" in r.getMessage()]


def test_r7_start_response_twice_without_exc_info_is_an_error(wire):
    resp = response(wire)
    resp.start_response("200 OK", [])
    with pytest.raises(AssertionError):
        resp.start_response("500 Internal Server Error", [])


def test_r7_exc_info_before_headers_sent_replaces_the_response(wire):
    resp = response(wire)
    resp.start_response("200 OK", [("X-First", "1"), ("Content-Length", "2")])
    try:
        raise ValueError("app failed")
    except ValueError:
        resp.start_response("500 Internal Server Error", [("X-Second", "1")], sys.exc_info())
    resp.write(b"oops")
    resp.close()
    assert wire.received() == b"HTTP/1.1 500 Internal Server Error\r\nX-Second: 1\r\n\r\noops"


def test_r7_exc_info_after_headers_sent_reraises(wire):
    resp = response(wire)
    resp.start_response("200 OK", [])
    resp.write(b"partial")
    err = ValueError("app failed")
    try:
        raise err
    except ValueError:
        with pytest.raises(ValueError) as info:
            resp.start_response("500 Internal Server Error", [], sys.exc_info())
    assert info.value is err
    resp.close()
    assert wire.received() == b"HTTP/1.1 200 OK\r\n\r\npartial"


def test_r7_write_before_start_response_is_an_error(wire):
    resp = response(wire)
    with pytest.raises(AssertionError):
        resp.write(b"x")
    assert wire.sock.writes == []


def test_r7_write_accepts_bytes_like_only(wire):
    resp = response(wire)
    resp.start_response("200 OK", [])
    with pytest.raises(TypeError):
        resp.write("text")
    resp.write(bytearray(b"ab"))
    resp.write(memoryview(b"cd"))
    resp.close()
    assert wire.received() == b"HTTP/1.1 200 OK\r\n\r\nabcd"


@pytest.mark.parametrize(
    ("status", "headers", "exc"),
    [
        ("200", [], errors.InvalidResponseStatus),
        ("OK 200", [], errors.InvalidResponseStatus),
        ("200 OK\r\nX-Injected: 1", [], errors.InvalidResponseStatus),
        ("200 OK", [("Bad Name", "x")], errors.InvalidResponseHeaderName),
        ("200 OK", [("X-A", "a\r\nX-Injected: 1")], errors.InvalidResponseHeader),
        ("200 OK", [("X-A", "a\nb")], errors.InvalidResponseHeader),
        ("200 OK", [("X-A", "a\x00b")], errors.InvalidResponseHeader),
        ("200 OK", [("Content-Length", "x")], errors.InvalidResponseStatus),
    ],
)
def test_r1_malformed_head_raises_and_nothing_reaches_the_wire(wire, status, headers, exc):
    resp = response(wire)
    with pytest.raises(exc):
        resp.start_response(status, headers)
    assert resp.headers_sent is False
    with pytest.raises(AssertionError):
        resp.write(b"x")
    # The worker can still answer with a 500 (X2).
    resp.start_response("500 Internal Server Error", [("Content-Length", "0")])
    resp.close()
    assert wire.received() == b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"


def test_r5_small_body_goes_with_the_head_in_one_write(wire):
    resp = response(wire)
    resp.start_response("200 OK", [("Content-Type", "text/html")])
    resp.write(b"x" * 4000)
    resp.close()
    assert len(wire.sock.writes) == 1
    assert wire.sock.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert wire.sock.writes[0].endswith(b"\r\n\r\n" + b"x" * 4000)


def test_r5_file_wrapper_uses_sendfile(wire, tmp_path):
    content = bytes(range(256)) * 400
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    resp = response(wire)
    resp.start_response("200 OK", [("Content-Length", str(len(content)))])
    with open(path, "rb") as f:
        resp.write_file(FileWrapper(f))
    resp.close()
    assert wire.sock.sendfiles, "sendfile was not used"
    assert wire.received() == (
        f"HTTP/1.1 200 OK\r\nContent-Length: {len(content)}\r\n\r\n".encode() + content
    )


def test_r3_r5_sendfile_respects_content_length_and_file_offset(wire, tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"0123456789abcdef")
    resp = response(wire)
    resp.start_response("200 OK", [("Content-Length", "5")])
    with open(path, "rb") as f:
        f.seek(3)
        resp.write_file(FileWrapper(f))
    resp.close()
    assert wire.sock.sendfiles
    assert wire.received() == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n34567"


def test_r4_r5_sendfile_on_head_sends_no_body(wire, tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"content")
    resp = response(wire, method="HEAD")
    resp.start_response("200 OK", [("Content-Length", "7")])
    with open(path, "rb") as f:
        resp.write_file(FileWrapper(f))
    resp.close()
    assert wire.received() == b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"


def test_r5_file_wrapper_without_a_descriptor_is_iterated(wire):
    resp = response(wire)
    resp.start_response("200 OK", [])
    resp.write_file(FileWrapper(io.BytesIO(b"in memory"), 4))
    resp.close()
    assert wire.sock.sendfiles == []
    assert wire.received() == b"HTTP/1.1 200 OK\r\n\r\nin memory"


def test_r5_sendfile_off_iterates(wire, tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"content")
    resp = response(wire, sendfile=False)
    resp.start_response("200 OK", [])
    with open(path, "rb") as f:
        resp.write_file(FileWrapper(f))
    resp.close()
    assert wire.sock.sendfiles == []
    assert wire.received() == b"HTTP/1.1 200 OK\r\n\r\ncontent"


def test_f5_response_always_closes():
    cfg = config()
    req = request(request_packet(), cfg=cfg)
    resp, _ = wsgi.create(req, None, CLIENT, SERVER, cfg)
    assert resp.should_close() is True
    assert req.should_close() is True


def test_r1_create_pairs_response_with_the_request_socket(wire):
    cfg = config()
    req = request(request_packet(path="/x", method="HEAD"), cfg=cfg)
    resp, env = wsgi.create(req, wire.sock, CLIENT, SERVER, cfg)
    assert env["gunicorn.socket"] is wire.sock
    resp.start_response("200 OK", [("Content-Length", "3")])
    resp.write(b"abc")
    resp.close()
    assert wire.received() == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"


def test_x4_environ_from_any_accepted_packet(monkeypatch):
    """Every packet the parser accepts (mutations of the vectors) gives an environ of str
    values without raising (X4, V1, E1)."""
    monkeypatch.delenv("SCRIPT_NAME", raising=False)
    rng = random.Random(11)
    names = [
        "nginx-get-browser.bin",
        "nginx-post-form.bin",
        "nginx-get-encoded-path.bin",
        "nginx-post-chunked.bin",
    ]
    bases = [vector(n) for n in names]
    cfg = config(uwsgi_allow_ips="*", forwarded_allow_ips="*")
    accepted = 0
    for _ in range(1500):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(4, len(data))
            data[pos] = rng.choice((rng.getrandbits(8), 0x41, 0x5F, 0x2F, 0x80))
        try:
            req = next(UWSGIParser(cfg, [bytes(data)], CLIENT))
        except (errors.UWSGIError, errors.ClientDisconnected):
            continue
        accepted += 1
        _, env = wsgi.create(req, None, CLIENT, SERVER, cfg)
        for key, value in env.items():
            if key.isupper() or not key.startswith(("wsgi.", "gunicorn.")):
                assert type(value) is str, (key, value)
        assert env["wsgi.url_scheme"] in ("http", "https")
        assert "HTTP_CONTENT_LENGTH" not in env
        assert "HTTP_TRANSFER_ENCODING" not in env
    assert accepted > 100


def test_v1_repeated_values_are_decoded_afresh_when_they_change():
    """V1/E1: values that repeat from request to request (method, protocol, user agent, ...)
    are shared between environs; a changed value, a longer or shorter one, a non-ASCII one and
    one too long to share are each decoded for their own request."""
    rng = random.Random(7)
    agents = [b"curl/8.0", b"curl/8.0", b"Mozilla/5.0", b"", b"x" * 400, b"caf\xe9", b"curl/8"]
    agents += [
        bytes(rng.choice(b"abc\xe9 ") for _ in range(rng.randrange(0, 200))) for _ in range(50)
    ]
    for agent in agents:
        method = rng.choice([b"GET", b"POST", b"PUT", b"GETX"])
        env = environ(
            [
                ("REQUEST_METHOD", method),
                ("SERVER_NAME", agent[:20]),
                ("HTTP_USER_AGENT", agent),
                ("DOCUMENT_ROOT", agent[::-1]),
            ]
        )
        assert env["REQUEST_METHOD"] == method.decode("latin-1")
        assert env["HTTP_USER_AGENT"] == agent.decode("latin-1")
        assert env["SERVER_NAME"] == agent[:20].decode("latin-1")
        assert env["DOCUMENT_ROOT"] == agent[::-1].decode("latin-1")
