"""``gunicorn_uwsgi.parser.UWSGIParser`` in-process: the four nginx vectors, every segmentation,
the allow list, limits from gunicorn's settings, and the request object's attributes (G3).
Each test names the behaviour ids of /work/shared/spec/behaviour.md it covers."""

from __future__ import annotations

import os
import random
import socket

import pytest
from gunicorn.config import Config

from gunicorn_uwsgi import UWSGIParser, errors, wsgi
from gunicorn_uwsgi.message import UWSGIRequest
from support import packet, request_packet, vector

PEER = ("127.0.0.1", 51000)

BROWSER_HEADERS = [
    ("HOST", "127.0.0.1"),
    ("USER-AGENT", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("ACCEPT", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("ACCEPT-LANGUAGE", "en-US,en;q=0.5"),
    ("ACCEPT-ENCODING", "gzip, deflate, br"),
    ("COOKIE", "sessionid=abc123def456; csrftoken=XyZ789"),
    ("X-FORWARDED-FOR", "203.0.113.7"),
]

#: What each captured nginx packet decodes to (see tests/vectors/README.md).
EXPECTED = {
    "nginx-get-browser.bin": {
        "method": "GET",
        "path": "/hello/w\xc3\xb6rld",
        "query": "x=1&y=two",
        "uri": "/hello/w%C3%B6rld?x=1&y=two",
        "version": (1, 1),
        "remote_addr": ("127.0.0.1", 58630),
        "headers": BROWSER_HEADERS,
        "body": b"",
        "nvars": 20,
        "vars": {
            "CONTENT_TYPE": "",
            "CONTENT_LENGTH": "",
            "DOCUMENT_ROOT": "/var/www/html",
            "SERVER_PORT": "18080",
            "SERVER_NAME": "localhost",
            "REQUEST_SCHEME": "http",
        },
    },
    "nginx-post-form.bin": {
        "method": "POST",
        "path": "/submit",
        "query": "",
        "uri": "/submit",
        "version": (1, 1),
        "remote_addr": ("127.0.0.1", 58632),
        "headers": [
            ("CONTENT-TYPE", "application/x-www-form-urlencoded"),
            ("CONTENT-LENGTH", "25"),
            ("HOST", "127.0.0.1"),
            ("USER-AGENT", "curl-capture/1.0"),
            ("ACCEPT", "*/*"),
            ("CONTENT-TYPE", "application/x-www-form-urlencoded"),
            ("CONTENT-LENGTH", "25"),
        ],
        "body": b"name=gunicorn&proto=uwsgi",
        "nvars": 18,
        "vars": {
            "CONTENT_LENGTH": "25",
            "HTTP_CONTENT_LENGTH": "25",
            "HTTP_CONTENT_TYPE": "application/x-www-form-urlencoded",
        },
    },
    "nginx-get-encoded-path.bin": {
        "method": "GET",
        "path": "/cap/a b",
        "query": "x=1",
        "uri": "/cap/a%20b?x=1",
        "version": (1, 1),
        "remote_addr": ("127.0.0.1", 50598),
        "headers": [("HOST", "127.0.0.1"), ("ACCEPT", "*/*"), ("USER-AGENT", "t")],
        "body": b"",
        "nvars": 16,
        "vars": {"SERVER_NAME": "", "SERVER_PORT": "28480"},
    },
    "nginx-post-chunked.bin": {
        "method": "POST",
        "path": "/cap/up",
        "query": "",
        "uri": "/cap/up",
        "version": (1, 1),
        "remote_addr": ("127.0.0.1", 33436),
        "headers": [
            ("CONTENT-LENGTH", "3"),
            ("HOST", "example.org"),
            ("USER-AGENT", "t"),
            ("TRANSFER-ENCODING", "chunked"),
            ("CONNECTION", "close"),
        ],
        "body": b"abc",
        "nvars": 17,
        "vars": {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "3"},
    },
}
VECTORS = sorted(EXPECTED)


def cfg(**settings) -> Config:
    c = Config()
    for name, value in settings.items():
        c.set(name, value)
    return c


def parse_one(source, peer=PEER, config=None) -> UWSGIRequest:
    parser = UWSGIParser(config or cfg(), source, peer)
    req = next(parser)
    assert isinstance(req, UWSGIRequest)
    return req


def summary(req: UWSGIRequest) -> tuple:
    return (
        req.method,
        req.path,
        req.query,
        req.uri,
        req.version,
        list(req.headers),
        dict(req.uwsgi_vars),
        req.remote_addr,
        req.body.read(),
        req.body.read(),
    )


# -- the vectors (F1-F3, V1, G3) -------------------------------------------------------------


@pytest.mark.parametrize("name", VECTORS)
def test_g3_v1_vector_request_attributes(name):
    want = EXPECTED[name]
    req = parse_one([vector(name)])
    assert req.method == want["method"]
    assert req.path == want["path"]
    assert req.query == want["query"]
    assert req.uri == want["uri"]
    assert req.version == want["version"]
    assert req.headers == want["headers"]
    assert req.remote_addr == want["remote_addr"]
    assert len(req.uwsgi_vars) == want["nvars"]
    for key, value in want["vars"].items():
        assert req.uwsgi_vars[key] == value, key
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in req.uwsgi_vars.items())
    assert req.body.read() == want["body"]
    assert req.body.read() == b""
    assert req.should_close() is True


def test_v1_vector_path_is_latin1_of_the_utf8_bytes():
    req = parse_one([vector("nginx-get-browser.bin")])
    assert req.path.encode("latin-1") == b"/hello/w\xc3\xb6rld"
    assert req.raw_path == b"/hello/w%C3%B6rld"


# -- segmentation (F2, B1) -------------------------------------------------------------------


@pytest.mark.parametrize("name", VECTORS)
def test_f2_every_split_point_gives_the_same_request(name):
    data = vector(name)
    want = summary(parse_one([data]))
    for cut in range(1, len(data)):
        assert summary(parse_one([data[:cut], data[cut:]])) == want, cut


@pytest.mark.parametrize("name", VECTORS)
def test_f2_one_byte_per_segment(name):
    data = vector(name)
    want = summary(parse_one([data]))
    assert summary(parse_one(data[i : i + 1] for i in range(len(data)))) == want


@pytest.mark.parametrize("name", VECTORS)
def test_f2_random_segmentations(name):
    data = vector(name)
    want = summary(parse_one([data]))
    rng = random.Random(name)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
        bounds = [0, *cuts, len(data)]
        segments = [data[a:b] for a, b in zip(bounds, bounds[1:])]
        assert summary(parse_one(segments)) == want, cuts


@pytest.mark.parametrize("name", VECTORS)
def test_f2_every_split_over_a_socketpair(name):
    data = vector(name)
    want = summary(parse_one([data]))
    for cut in range(0, len(data), 7):
        a, b = socket.socketpair()
        with a, b:
            b.settimeout(5)
            a.sendall(data[:cut] or data)
            if cut:
                a.sendall(data[cut:])
            assert summary(parse_one(b)) == want, cut


def test_f2_b1_body_bytes_in_the_head_segment_are_the_body():
    body = b"0123456789"
    pkt = request_packet(method="POST", body=body)
    req = parse_one([pkt + b"\x00\x10\x00\x00TRAILING PACKET"])
    assert req.body.read() == body
    assert req.body.read() == b""


def test_f2_b1_trailing_bytes_on_a_socket_never_returned():
    body = b"form=1"
    pkt = request_packet(method="POST", body=body)
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        head_size = len(pkt) - len(body)
        a.sendall(pkt[:head_size])
        req = parse_one(b)
        a.sendall(body + b"GARBAGE AFTER THE BODY")
        assert req.body.read() == body
        assert req.body.read() == b""
        # The bytes after the body were left on the connection (F5).
        assert b.recv(100) == b"GARBAGE AFTER THE BODY"


@pytest.mark.parametrize("split", ["head|body+junk", "head+part|rest+junk"])
def test_f2_b1_trailing_bytes_in_a_later_iterable_segment_never_returned(split):
    data = vector("nginx-post-form.bin")
    body = b"name=gunicorn&proto=uwsgi"
    head_size = len(data) - len(body)
    if split == "head|body+junk":
        segments = [data[:head_size], body + b"JUNK"]
    else:
        segments = [data[: head_size + 5], data[head_size + 5 :] + b"JUNK"]
    req = parse_one(segments)
    assert req.body.read() == body


# -- one request per connection, EOF (F5, F6) -------------------------------------------------


def test_f5_only_one_request_per_connection():
    first = request_packet(path="/one")
    second = request_packet(path="/two")
    parser = UWSGIParser(cfg(), [first + second], PEER)
    reqs = list(parser)
    assert [r.path for r in reqs] == ["/one"]
    assert parser.req_count == 1
    with pytest.raises(StopIteration):
        next(parser)


def test_f5_second_packet_not_even_read_from_the_source():
    consumed = []

    def segments():
        for seg in (request_packet(path="/one"), request_packet(path="/two")):
            consumed.append(seg)
            yield seg

    assert [r.path for r in UWSGIParser(cfg(), segments(), PEER)] == ["/one"]
    assert len(consumed) == 1


def test_f6_eof_before_first_byte_is_no_request():
    parser = UWSGIParser(cfg(), [], PEER)
    assert list(parser) == []
    assert parser.mesg is None


def test_f6_eof_on_a_socket_is_no_request():
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        a.shutdown(socket.SHUT_WR)
        assert list(UWSGIParser(cfg(), b, PEER)) == []


def test_x3_eof_inside_the_head_is_client_disconnected():
    data = vector("nginx-get-browser.bin")
    for cut in (1, 3, 4, 100, len(data) - 1):
        with pytest.raises(errors.ClientDisconnected) as info:
            parse_one([data[:cut]])
        assert isinstance(info.value, OSError)
        assert "disconnected" in str(info.value)
        assert info.value.what == "head" and "head bytes" in str(info.value), info.value


def test_f8_stalled_peer_raises_peer_timeout():
    data = vector("nginx-get-browser.bin")
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(0.05)
        a.sendall(data[:10])
        with pytest.raises(errors.PeerTimeout) as info:
            parse_one(b)
        assert isinstance(info.value, TimeoutError)


def test_f8_nothing_sent_raises_peer_timeout():
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(0.05)
        with pytest.raises(errors.PeerTimeout):
            parse_one(b)


# -- laziness (B2) ---------------------------------------------------------------------------


def test_b2_parser_returns_before_the_body_arrives():
    body = b"x" * 1000
    pkt = request_packet(method="POST", body=body)
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        a.sendall(pkt[: len(pkt) - len(body)])
        req = parse_one(b)
        assert req.method == "POST"
        assert req.body.complete is False
        a.sendall(body)
        assert req.body.read() == body
        assert req.body.complete is True


# -- the allow list (A1-A4) ------------------------------------------------------------------


class Untouchable:
    """A source that fails the test if it is read."""

    def recv(self, size):
        raise AssertionError("the source was read before the allow check")


@pytest.mark.parametrize("peer", [("10.0.0.1", 1), ("203.0.113.9", 80), ("::2", 1, 0, 0)])
def test_a1_a4_default_allow_list_refuses_before_reading(peer):
    with pytest.raises(errors.ForbiddenUWSGIRequest) as info:
        next(UWSGIParser(cfg(), Untouchable(), peer))
    assert info.value.code == 403
    assert peer[0] in str(info.value)
    assert "uwsgi_allow_ips" in str(info.value)


@pytest.mark.parametrize(
    "peer", [("127.0.0.1", 1), ("::1", 1, 0, 0), ("::ffff:127.0.0.1", 1, 0, 0)]
)
def test_a1_a2_default_allow_list_allows_loopback(peer):
    assert parse_one([request_packet()], peer=peer).method == "GET"


def test_a1_uwsgi_allow_ips_setting_with_cidr():
    config = cfg(uwsgi_allow_ips="10.0.0.0/24,192.0.2.7")
    assert parse_one([request_packet()], ("10.0.0.200", 1), config).method == "GET"
    assert parse_one([request_packet()], ("192.0.2.7", 1), config).method == "GET"
    assert parse_one([request_packet()], ("::ffff:10.0.0.5", 1, 0, 0), config).method == "GET"
    with pytest.raises(errors.ForbiddenUWSGIRequest):
        parse_one([request_packet()], ("10.0.1.1", 1), config)
    with pytest.raises(errors.ForbiddenUWSGIRequest):
        parse_one([request_packet()], ("127.0.0.1", 1), config)


def test_a1_uwsgi_allow_ips_star():
    config = cfg(uwsgi_allow_ips="*")
    assert parse_one([request_packet()], ("198.51.100.1", 1), config).method == "GET"


@pytest.mark.parametrize("peer", ["", "/tmp/gunicorn.sock"])
def test_a3_unix_peer_always_allowed(peer):
    config = cfg(uwsgi_allow_ips="10.0.0.1")
    req = parse_one([packet([("REQUEST_METHOD", "GET")])], peer, config)
    assert req.method == "GET"
    # No REMOTE_ADDR var: the request's remote_addr is the socket peer (E4, G3).
    assert req.remote_addr == peer


# -- limits from gunicorn's settings (V4) ----------------------------------------------------


def test_v4_limit_request_line_setting():
    pkt = request_packet(path="/" + "a" * 150)
    with pytest.raises(errors.LimitRequestLine) as info:
        parse_one([pkt], config=cfg(limit_request_line=100))
    assert info.value.code == 414
    assert parse_one([pkt], config=cfg(limit_request_line=200)).path == "/" + "a" * 150
    assert parse_one([pkt], config=cfg(limit_request_line=0)).path == "/" + "a" * 150


def test_v4_limit_request_fields_setting():
    pkt = request_packet(headers=[("X-A", "1"), ("X-B", "2"), ("X-C", "3")])  # + HOST = 4
    with pytest.raises(errors.LimitRequestHeaders) as info:
        parse_one([pkt], config=cfg(limit_request_fields=3))
    assert info.value.code == 431
    assert len(parse_one([pkt], config=cfg(limit_request_fields=4)).headers) == 4


def test_v4_limit_request_field_size_setting():
    pkt = request_packet(headers=[("X-Big", "v" * 300)])
    with pytest.raises(errors.LimitRequestHeaders):
        parse_one([pkt], config=cfg(limit_request_field_size=200))
    assert parse_one([pkt], config=cfg(limit_request_field_size=0)).method == "GET"
    assert parse_one([pkt], config=cfg(limit_request_field_size=400)).method == "GET"


# -- errors through the parser (F3, F4, F7, V2-V6) -------------------------------------------


@pytest.mark.parametrize(
    ("data", "exc", "code"),
    [
        (packet([("REQUEST_METHOD", "GET")], modifier1=9), errors.UnsupportedModifier, 501),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", errors.ForeignProtocol, 400),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00", errors.ForeignProtocol, 400),
        (
            packet([("REQUEST_METHOD", "GET"), ("CONTENT_LENGTH", "1"), ("CONTENT_LENGTH", "2")]),
            errors.InvalidUWSGIHeader,
            400,
        ),
        (
            packet([("REQUEST_METHOD", "GET"), ("HTTP_X", "a\r\nInjected: 1")]),
            errors.InvalidUWSGIHeader,
            400,
        ),
        (
            packet([("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "-5")]),
            errors.InvalidUWSGIHeader,
            400,
        ),
    ],
)
def test_x1_protocol_errors_through_the_parser(data, exc, code):
    with pytest.raises(exc) as info:
        parse_one([data])
    assert info.value.code == code
    assert isinstance(info.value, errors.UWSGIError)


def test_f7_http_detected_without_waiting_for_more_bytes():
    # Only the first four bytes ever arrive: the parser must not wait for 21573 more.
    with pytest.raises(errors.ForeignProtocol):
        parse_one([b"GET "])


def test_f4_modifier1_30_is_a_wsgi_request():
    req = parse_one([packet([("REQUEST_METHOD", "GET")], modifier1=30, modifier2=3)])
    assert req.modifier1 == 30
    assert req.modifier2 == 3


# -- request attributes (G3, V3) -------------------------------------------------------------


def test_g3_version_from_server_protocol():
    for proto, version in [("HTTP/1.0", (1, 0)), ("HTTP/2.0", (2, 0)), ("HTTP/2", (2, 0))]:
        req = parse_one([packet([("REQUEST_METHOD", "GET"), ("SERVER_PROTOCOL", proto)])])
        assert req.version == version, proto
    assert parse_one([packet([("REQUEST_METHOD", "GET")])]).version == (1, 1)


def test_g3_uri_without_request_uri():
    req = parse_one(
        [packet([("REQUEST_METHOD", "GET"), ("PATH_INFO", "/p"), ("QUERY_STRING", "a=1")])]
    )
    assert req.uri == "/p?a=1"
    req = parse_one([packet([("REQUEST_METHOD", "GET"), ("PATH_INFO", "/p")])])
    assert (req.uri, req.path, req.query) == ("/p", "/p", "")


def test_g3_remote_addr_from_vars():
    req = parse_one([request_packet()], peer=("127.0.0.1", 9))
    assert req.remote_addr == ("203.0.113.9", 40000)


def test_g3_remote_addr_falls_back_to_peer():
    req = parse_one([packet([("REQUEST_METHOD", "GET")])], peer=("127.0.0.1", 9))
    assert req.remote_addr == ("127.0.0.1", 9)


def test_v3_repeated_header_vars_as_nginx_1_22_sends_them():
    pkt = request_packet(
        headers=[("Accept", "a"), ("Cookie", "x=1"), ("Accept", "b"), ("Cookie", "y=2")]
    )
    req = parse_one([pkt])
    assert req.uwsgi_vars["HTTP_ACCEPT"] == "a, b"
    assert req.uwsgi_vars["HTTP_COOKIE"] == "x=1; y=2"
    assert [v for k, v in req.headers if k == "ACCEPT"] == ["a", "b"]


def test_v7_magic_vars_reach_python_as_strings_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    req = parse_one(
        [
            request_packet(
                UWSGI_CHDIR="/",
                UWSGI_SCRIPT="os:system",
                UWSGI_SETENV="GUNICORN_UWSGI_EVIL=1",
                UWSGI_FILE=str(tmp_path / "x.py"),
            )
        ]
    )
    assert req.uwsgi_vars["UWSGI_CHDIR"] == "/"
    assert os.getcwd() == str(tmp_path)
    assert "GUNICORN_UWSGI_EVIL" not in os.environ


@pytest.mark.parametrize("kind", ["list", "tuple", "generator", "iterator"])
def test_g3_every_kind_of_iterable_source(kind):
    """G3, F2: the parser reads from a list, a tuple, a generator or an iterator alike: a
    packet whole in its first string, and one split over several strings (the head and the
    body each cut in two)."""
    whole = request_packet(method="POST", path="/kinds", body=b"0123456789")
    cut = [whole[:3], whole[3:20], whole[20:-4], whole[-4:]]

    def source(chunks):
        if kind == "list":
            return list(chunks)
        if kind == "tuple":
            return tuple(chunks)
        if kind == "generator":
            return (c for c in chunks)
        return iter(list(chunks))

    for chunks in ([whole], cut):
        req = parse_one(source(chunks))
        assert (req.method, req.path) == ("POST", "/kinds")
        assert req.body.read() == b"0123456789"


def test_g3_a_source_that_is_neither_a_socket_nor_iterable_is_a_type_error():
    with pytest.raises(TypeError):
        UWSGIParser(cfg(), 42, PEER)


# -- the drop-in for gunicorn's parser (G3, E7, X3) --------------------------------------------

GET = ("REQUEST_METHOD", "GET")


def sources(data: bytes) -> dict:
    """The ways a request reaches the parser: one string (the native fast path), split in
    two (through ``read_request``), and a socket."""
    return {"whole": [data], "split": [data[:7], data[7:]], "socket": data}


def parse_from(kind: str, data: bytes, peer=PEER, config=None) -> UWSGIRequest:
    if kind != "socket":
        return parse_one(sources(data)[kind], peer, config)
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        return parse_one(b, peer, config)


@pytest.mark.parametrize("kind", ["whole", "split", "socket"])
@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], "http"),
        ([("HTTPS", "on")], "https"),
        ([("HTTPS", "YES")], "https"),
        ([("HTTPS", "off")], "http"),
        ([("UWSGI_SCHEME", "https")], "https"),
        ([("REQUEST_SCHEME", "https")], "https"),
        ([("UWSGI_SCHEME", "http"), ("HTTPS", "on")], "http"),
        ([("HTTP_X_FORWARDED_PROTO", "https")], "https"),  # from a trusted peer
        # E1: a peer cannot set server keys (gunicorn's own parser takes this one).
        ([("wsgi.url_scheme", "https")], "http"),
    ],
)
def test_e7_g3_scheme_is_set_at_parse_time(kind, pairs, expected):
    """E7, G3: ``req.scheme`` is right as soon as the request is parsed, as in gunicorn, so a
    ``pre_request`` hook sees ``https`` behind ``uwsgi_param HTTPS on``; it is the scheme the
    environ then gets."""
    req = parse_from(kind, packet([GET, ("PATH_INFO", "/"), *pairs]))
    assert req.scheme == expected
    _, env = wsgi.create(req, None, PEER, ("127.0.0.1", 8000), cfg())
    assert env["wsgi.url_scheme"] == req.scheme == expected


@pytest.mark.parametrize("kind", ["whole", "socket"])
def test_e7_secure_header_from_an_untrusted_peer_is_ignored_at_parse_time(kind):
    peer = ("10.0.0.9", 4000)
    config = cfg(uwsgi_allow_ips="*")
    data = packet([GET, ("HTTP_X_FORWARDED_PROTO", "https")])
    assert parse_from(kind, data, peer, config).scheme == "http"
    assert parse_from(
        kind, data, peer, cfg(uwsgi_allow_ips="*", forwarded_allow_ips="*")
    ).scheme == ("https")


def test_g3_parser_has_gunicorns_mesg_class():
    """G3: gunicorn's parsers name their request class ``mesg_class``."""
    assert UWSGIParser.mesg_class is UWSGIRequest
    assert isinstance(parse_one([request_packet()]), UWSGIParser.mesg_class)


def test_g3_partial_config_object_as_gunicorns_parser_takes():
    """G3: gunicorn's parser works with a config object that has only the settings it reads
    (its own tests pass one with ``is_ssl`` and ``uwsgi_allow_ips``); so does ours, with
    gunicorn's defaults for the rest."""

    class PartialConfig:
        is_ssl = False
        uwsgi_allow_ips = ["127.0.0.1"]

    req = parse_one([request_packet(path="/p", HTTPS="on")], config=PartialConfig())
    assert (req.method, req.path, req.scheme) == ("GET", "/p", "https")
    with pytest.raises(errors.ForbiddenUWSGIRequest):
        parse_one([request_packet()], ("10.0.0.1", 1), PartialConfig())


@pytest.mark.parametrize(
    ("cut", "msg"),
    [(1, "incomplete header"), (3, "incomplete header"), (4, "incomplete vars block")],
)
@pytest.mark.parametrize("kind", ["whole", "socket"])
def test_x3_head_cut_short_is_caught_as_gunicorns_invalid_uwsgi_header(kind, cut, msg):
    """X3 and the drop-in rule: a packet cut short inside the header or the vars raises one
    error that ``except InvalidUWSGIHeader`` (ours and gunicorn's, as gunicorn's parser
    raises it there) and ``except ClientDisconnected`` both catch."""
    data = vector("nginx-get-browser.bin")
    cut = cut if cut < 4 else len(data) // 2
    with pytest.raises(errors.InvalidUWSGIHeader) as info:
        parse_from(kind, data[:cut])
    e = info.value
    assert isinstance(e, errors.ClientDisconnected) and isinstance(e, errors.IncompleteHead)
    assert isinstance(e, errors.UWSGIError) and isinstance(e, OSError)
    assert (e.code, e.msg, e.what, e.received) == (400, msg, "head", cut)
    assert msg in str(e) and "disconnected" in str(e) and "head bytes" in str(e)
    gunicorn_uwsgi = pytest.importorskip("gunicorn.uwsgi")  # gunicorn >= 24
    assert isinstance(e, gunicorn_uwsgi.InvalidUWSGIHeader)
    assert isinstance(e, gunicorn_uwsgi.UWSGIParseException)


def test_f3_var_cut_short_says_truncated():
    """F3: a block ending inside a var's key size: the message says so, as gunicorn's."""
    with pytest.raises(errors.InvalidUWSGIHeader) as info:
        parse_one([b"\x00\x01\x00\x00X"])
    assert "truncated" in str(info.value) and "1 stray byte(s)" in str(info.value)


def test_a5_host_bits_through_the_parser_api_points_at_the_network():
    """A5: a config object gunicorn did not validate (the parser API; gunicorn >= 24 refuses
    such an entry itself before a worker starts): our message names the network meant."""

    class PartialConfig:
        uwsgi_allow_ips = ["10.0.0.1/8"]

    with pytest.raises(ValueError) as info:
        UWSGIParser(PartialConfig(), [request_packet()], PEER)
    assert "10.0.0.1/8" in str(info.value) and "did you mean 10.0.0.0/8" in str(info.value)
