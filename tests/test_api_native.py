"""The ``gunicorn_uwsgi._native`` functions called directly: ``parse``, ``Limits``, ``AllowList``,
``response_head``, ``error_response``. Each test names the behaviour ids of
/work/shared/spec/behaviour.md it covers."""

from __future__ import annotations

import random
import struct

import pytest

from gunicorn_uwsgi import _native, errors
from support import CONTROL_VARS, nginx_vars, packet, vector

VECTORS = (
    "nginx-get-browser.bin",
    "nginx-post-form.bin",
    "nginx-get-encoded-path.bin",
    "nginx-post-chunked.bin",
)

LIMITS = _native.Limits()


def parse(data: bytes, limits: _native.Limits = LIMITS):
    return _native.parse(data, limits)


def head(pairs, **kw) -> _native.Head:
    result = parse(packet(pairs, **kw))
    assert not isinstance(result, int), result
    return result


# -- Limits (V4) -----------------------------------------------------------------------------


def test_v4_limits_defaults_are_gunicorns():
    limits = _native.Limits()
    assert (limits.request_line, limits.fields, limits.field_size) == (4094, 100, 8190)


def test_v4_limits_values_round_trip():
    limits = _native.Limits(10, 2, 30)
    assert (limits.request_line, limits.fields, limits.field_size) == (10, 2, 30)
    limits = _native.Limits(request_line=0, fields=0, field_size=0)
    assert (limits.request_line, limits.fields, limits.field_size) == (0, 0, 0)


def test_v4_limits_reject_negative():
    with pytest.raises(OverflowError):
        _native.Limits(-1, 1, 1)


def test_v4_request_line_limit_414():
    pairs = nginx_vars(path="/" + "a" * 20)
    assert isinstance(parse(packet(pairs), _native.Limits(21, 100, 8190)), _native.Head)
    with pytest.raises(errors.LimitRequestLine) as info:
        parse(packet(pairs), _native.Limits(20, 100, 8190))
    assert info.value.code == 414
    # 0 means unlimited.
    long = nginx_vars(path="/" + "a" * 30000)
    assert isinstance(parse(packet(long), _native.Limits(0, 100, 8190)), _native.Head)


def test_v4_fields_limit_431():
    pairs = nginx_vars(headers=[("X-A", "1"), ("X-B", "2")])  # HTTP_HOST + 2 = 3 headers
    assert isinstance(parse(packet(pairs), _native.Limits(4094, 3, 8190)), _native.Head)
    with pytest.raises(errors.LimitRequestHeaders) as info:
        parse(packet(pairs), _native.Limits(4094, 2, 8190))
    assert info.value.code == 431
    many = nginx_vars(headers=[(f"X-{i}", "v") for i in range(500)])
    assert isinstance(parse(packet(many), _native.Limits(4094, 0, 8190)), _native.Head)


def test_v4_field_size_limit_431():
    pairs = [("REQUEST_METHOD", "GET"), ("HTTP_X_BIG", "v" * 100)]
    # Measured as the header line "X_BIG: " + value would be: 5 + 2 + 100.
    assert isinstance(parse(packet(pairs), _native.Limits(4094, 100, 107)), _native.Head)
    with pytest.raises(errors.LimitRequestHeaders) as info:
        parse(packet(pairs), _native.Limits(4094, 100, 50))
    assert info.value.code == 431
    assert isinstance(parse(packet(pairs), _native.Limits(4094, 100, 0)), _native.Head)


def test_v4_field_size_does_not_bound_non_header_vars():
    pairs = [("REQUEST_METHOD", "GET"), ("DOCUMENT_ROOT", "/" * 500)]
    assert isinstance(parse(packet(pairs), _native.Limits(4094, 1, 10)), _native.Head)


def test_v4_at_most_1000_vars_431():
    ok = [("REQUEST_METHOD", "GET")] + [(f"V{i}", "") for i in range(999)]
    assert isinstance(parse(packet(ok), _native.Limits(0, 0, 0)), _native.Head)
    over = [("REQUEST_METHOD", "GET")] + [(f"V{i}", "") for i in range(1000)]
    with pytest.raises(errors.LimitRequestHeaders):
        parse(packet(over), _native.Limits(0, 0, 0))


# -- parse (F1-F4, V1-V7) --------------------------------------------------------------------


def test_f1_f2_parse_returns_needed_size_until_complete():
    data = vector("nginx-get-browser.bin")
    for cut in range(len(data)):
        assert parse(data[:cut]) == (4 if cut < 4 else len(data)), cut
    h = parse(data)
    assert isinstance(h, _native.Head)
    assert h.head_size == len(data)


def test_f1_header_fields_and_modifier2_ignored():
    pkt = packet([("REQUEST_METHOD", "GET")], modifier2=77)
    h = parse(pkt)
    assert (h.modifier1, h.modifier2, h.head_size) == (0, 77, len(pkt))


def test_f1_vars_block_of_65535_bytes_accepted():
    base = len(packet([("REQUEST_METHOD", "GET"), ("X", "")])) - 4
    pairs = [("REQUEST_METHOD", "GET"), ("X", "y" * (65535 - base))]
    pkt = packet(pairs)
    assert struct.unpack("<H", pkt[1:3])[0] == 65535
    h = parse(pkt, _native.Limits(0, 0, 0))
    assert h.head_size == 65539
    assert h.get("X") == "y" * (65535 - base)


def test_f2_body_bytes_after_head_are_not_part_of_it():
    data = vector("nginx-post-form.bin") + b"\x00\xff\xff\x00junk"
    h = parse(data)
    assert data[h.head_size :].startswith(b"name=gunicorn")
    assert h.content_length == 25


@pytest.mark.parametrize(
    "block",
    [
        b"\x00\x00\x01\x00x",  # zero-length key
        b"\x0e\x00REQUEST_METHOD\x03\x00GET\x05",  # one stray byte
        b"\x0e\x00REQUEST_METHOD\x03\x00GET\x01\x00",  # key size, no key
        b"\x0e\x00REQUEST_METHOD\x09\x00GET",  # value overruns the block
        b"\x40\x00REQUEST_METHOD",  # key overruns the block
    ],
)
def test_f3_malformed_block_is_400(block):
    pkt = struct.pack("<BHB", 0, len(block), 0) + block
    with pytest.raises(errors.InvalidUWSGIHeader) as info:
        parse(pkt)
    assert info.value.code == 400


def test_f3_empty_value_allowed():
    h = head([("REQUEST_METHOD", "GET"), ("QUERY_STRING", "")])
    assert h.get("QUERY_STRING") == ""


@pytest.mark.parametrize("modifier1", [1, 5, 29, 31, 255])
def test_f4_other_modifier1_is_501(modifier1):
    with pytest.raises(errors.UnsupportedModifier) as info:
        parse(packet([("REQUEST_METHOD", "GET")], modifier1=modifier1))
    assert info.value.code == 501
    assert info.value.modifier == modifier1


def test_f4_unsupported_modifier_refused_from_the_header_alone():
    with pytest.raises(errors.UnsupportedModifier):
        parse(b"\x05\xff\xff\x00")


def test_f4_modifier1_30_accepted():
    assert parse(packet([("REQUEST_METHOD", "GET")], modifier1=30)).modifier1 == 30


@pytest.mark.parametrize(
    "start", [b"GET ", b"POST /", b"GET / HTTP/1.1\r\n", b"DELETE /x", b"\x16\x03\x01\x02\x00"]
)
def test_f7_http_or_tls_detected_at_once(start):
    with pytest.raises(errors.ForeignProtocol) as info:
        parse(start)
    assert info.value.code == 400
    assert isinstance(info.value, errors.InvalidUWSGIHeader)
    text = str(info.value)
    assert "uwsgi_pass" in text
    assert ("HTTP" in text) or ("TLS" in text)


def test_v1_values_are_latin1_never_utf8():
    h = head([("REQUEST_METHOD", "GET"), ("PATH_INFO", b"/w\xc3\xb6\xff")])
    assert h.get("PATH_INFO") == "/w\xc3\xb6\xff"
    assert h.vars()["PATH_INFO"] == "/w\xc3\xb6\xff"


@pytest.mark.parametrize("key", [b"BAD KEY", b"BAD\x00", b"\x80X", b"X\x7f", b"A\tB"])
def test_v2_bad_key_is_400(key):
    with pytest.raises(errors.InvalidUWSGIHeader):
        parse(packet([("REQUEST_METHOD", "GET"), (key, "v")]))


@pytest.mark.parametrize("bad", [b"a\rb", b"a\nb", b"a\x00b"])
@pytest.mark.parametrize("key", ["PATH_INFO", "REQUEST_URI", "HTTP_X_A", "QUERY_STRING"])
def test_v2_cr_lf_nul_in_request_or_header_values_is_400(key, bad):
    with pytest.raises(errors.InvalidUWSGIHeader):
        parse(packet([("REQUEST_METHOD", "GET"), (key, bad)]))


def test_v3_repeated_headers_joined():
    h = head(
        [
            ("REQUEST_METHOD", "GET"),
            ("HTTP_ACCEPT", "a"),
            ("HTTP_COOKIE", "x=1"),
            ("HTTP_ACCEPT", "b"),
            ("HTTP_COOKIE", "y=2"),
            ("HTTP_ACCEPT", "c"),
        ]
    )
    assert h.vars()["HTTP_ACCEPT"] == "a, b, c"
    assert h.vars()["HTTP_COOKIE"] == "x=1; y=2"
    assert h.get("HTTP_ACCEPT") == "a, b, c"


@pytest.mark.parametrize("key", [k for k in CONTROL_VARS if k != "CONTENT_LENGTH"])
def test_v3_repeated_control_var_last_one_wins(key):
    """V3: `include uwsgi_params;` then `uwsgi_param NAME value;`: the last value counts, for
    the vars and for the decisions (the method here; the others in the environ tests)."""
    first, last = ("GET", "PUT") if key == "REQUEST_METHOD" else ("", "7")
    h = head([("REQUEST_METHOD", "GET"), (key, first), ("HTTP_X", "1"), (key, last)])
    assert h.get(key) == last
    assert h.vars()[key] == last
    if key == "REQUEST_METHOD":
        assert h.method == "PUT"


@pytest.mark.parametrize("key", CONTROL_VARS)
def test_v3_repeated_control_var_same_value_collapses(key):
    value = "GET" if key == "REQUEST_METHOD" else ("1" if key == "CONTENT_LENGTH" else "x")
    h = head([("REQUEST_METHOD", "GET"), (key, value), (key, value)])
    assert h.get(key) == value
    assert h.vars()[key] == value


def test_v3_content_length_with_two_values_is_400():
    for first, second in [("1", "2"), ("", "3"), ("10", "010")]:
        with pytest.raises(errors.InvalidUWSGIHeader) as info:
            parse(
                packet(
                    [
                        ("REQUEST_METHOD", "POST"),
                        ("CONTENT_LENGTH", first),
                        ("CONTENT_LENGTH", second),
                    ]
                )
            )
        assert info.value.code == 400
        assert "CONTENT_LENGTH" in str(info.value)


@pytest.mark.parametrize("key", ["HTTP_HOST", "HTTP_AUTHORIZATION", "HTTP_IF_MODIFIED_SINCE"])
def test_v3_headers_nginx_receives_once_last_one_wins(key):
    """V3: a header nginx refuses to receive twice can only repeat through an override."""
    h = head([("REQUEST_METHOD", "GET"), (key, "a"), (key, "b:8443")])
    assert h.vars()[key] == "b:8443"
    name = key[5:].replace("_", "-")
    assert [v for n, v in h.headers() if n == name] == ["b:8443"]


def test_v3_other_repeat_last_wins():
    h = head([("REQUEST_METHOD", "GET"), ("DOCUMENT_ROOT", "/a"), ("DOCUMENT_ROOT", "/b")])
    assert h.get("DOCUMENT_ROOT") == "/b"
    assert h.vars()["DOCUMENT_ROOT"] == "/b"


@pytest.mark.parametrize(
    ("value", "length"),
    [(None, 0), ("", 0), ("0", 0), ("7", 7), ("0012", 12), ("9" * 18, int("9" * 18))],
)
def test_v5_content_length_valid(value, length):
    pairs = [("REQUEST_METHOD", "POST")]
    if value is not None:
        pairs.append(("CONTENT_LENGTH", value))
    assert head(pairs).content_length == length


@pytest.mark.parametrize(
    "value", ["-1", "+1", " 1", "1 ", "1_0", "0x10", "1.0", b"\xd9\xa1", "1" * 20]
)
def test_v5_content_length_invalid_400(value):
    with pytest.raises(errors.InvalidUWSGIHeader) as info:
        parse(packet([("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", value)]))
    assert info.value.code == 400


def test_v5_content_length_too_large_for_a_body_is_413():
    with pytest.raises(errors.RequestBodyTooLarge) as info:
        parse(packet([("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "9" * 19)]))
    assert info.value.code == 413


def test_v6_empty_vars_block_is_a_get():
    h = parse(b"\x00\x00\x00\x00")
    assert isinstance(h, _native.Head)
    assert h.method == "GET"
    assert h.method_missing
    assert not h.is_head


def test_v6_missing_request_method_is_a_get():
    h = head([("PATH_INFO", "/")])
    assert (h.method, h.method_missing) == ("GET", True)
    assert head([("REQUEST_METHOD", "HEAD")]).method_missing is False


@pytest.mark.parametrize("method", ["", "GE T", "GET/", "G(T", "G\xe9T"])
def test_v6_request_method_must_be_token(method):
    with pytest.raises(errors.InvalidUWSGIHeader):
        parse(packet([("REQUEST_METHOD", method)]))


def test_v6_request_method_token_extension_methods_ok():
    assert head([("REQUEST_METHOD", "PROPFIND")]).method == "PROPFIND"
    assert head([("REQUEST_METHOD", "M-SEARCH")]).method == "M-SEARCH"


def test_v7_magic_vars_are_inert_strings(tmp_path):
    marker = tmp_path / "touched"
    h = head(
        [
            ("REQUEST_METHOD", "GET"),
            ("UWSGI_SCRIPT", "os:system"),
            ("UWSGI_FILE", str(marker)),
            ("UWSGI_CHDIR", str(tmp_path)),
            ("UWSGI_SETENV", "EVIL=1"),
            ("UWSGI_PYHOME", str(tmp_path)),
        ]
    )
    assert h.get("UWSGI_SETENV") == "EVIL=1"
    assert h.vars()["UWSGI_FILE"] == str(marker)
    assert not marker.exists()


def test_g3_head_headers_pairs():
    h = head(
        [
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", ""),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
            ("HTTP_ACCEPT", "a"),
            ("HTTP_ACCEPT", "b"),
            ("DOCUMENT_ROOT", "/x"),
        ]
    )
    assert h.headers() == [
        ("CONTENT-TYPE", "text/plain"),
        ("X-FORWARDED-FOR", "1.2.3.4"),
        ("ACCEPT", "a"),
        ("ACCEPT", "b"),
    ]
    assert h.method == "POST"
    assert h.get("NOPE") is None
    assert h.get("NOPE", "dflt") == "dflt"
    assert h.is_head is False
    assert head([("REQUEST_METHOD", "HEAD")]).is_head is True


@pytest.mark.parametrize("name", VECTORS)
def test_f1_f3_vectors_parse_in_one_call(name):
    data = vector(name)
    h = parse(data)
    assert isinstance(h, _native.Head)
    assert h.modifier1 == 0
    assert h.head_size == 4 + struct.unpack("<H", data[1:3])[0]
    assert len(data) - h.head_size == h.content_length


# -- X4: no input crashes the parser -----------------------------------------------------------


def _check_parse_outcome(data: bytes, limits: _native.Limits) -> None:
    try:
        result = _native.parse(data, limits)
    except errors.UWSGIError as e:
        assert e.code in (400, 413, 414, 431, 501), (data, e)
        assert isinstance(str(e), str)
        return
    assert type(result) is int or isinstance(result, _native.Head), (data, result)
    if type(result) is int:
        assert result > len(data) or (result == 4 and len(data) < 4), (data, result)
    else:
        # A complete head answers every query without raising.
        result.vars()
        result.headers()
        assert result.head_size <= len(data)


def test_x4_random_bytes_only_raise_protocol_errors():
    rng = random.Random(20240611)
    limits = [_native.Limits(), _native.Limits(0, 0, 0), _native.Limits(5, 1, 8)]
    for i in range(3000):
        size = rng.choice((0, 1, 2, 3, 4, 5, 8, 16, 64, 300))
        data = bytes(rng.getrandbits(8) for _ in range(size))
        if i % 3 == 0 and size >= 4:
            # Mostly-valid headers: modifier1 0/30 and a vars size inside the data.
            block = len(data) - 4
            data = bytes([rng.choice((0, 30))]) + struct.pack("<H", block) + data[3:]
        _check_parse_outcome(data, limits[i % 3])


def test_x4_mutated_vectors_only_raise_protocol_errors():
    rng = random.Random(7)
    bases = [vector(n) for n in VECTORS]
    limits = [_native.Limits(), _native.Limits(0, 0, 0), _native.Limits(5, 1, 8)]
    for i in range(3000):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data))
            if op == 0:
                data[pos] = rng.getrandbits(8)
            elif op == 1:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
            if not data:
                break
        _check_parse_outcome(bytes(data), limits[i % 3])


def test_x4_parse_rejects_non_bytes_with_type_error():
    with pytest.raises(TypeError):
        _native.parse("not bytes", LIMITS)
    with pytest.raises(TypeError):
        _native.parse(b"\x00\x00\x00\x00", "not limits")


# -- AllowList (A1-A3) -----------------------------------------------------------------------


def test_a1_addresses():
    allow = _native.AllowList(["127.0.0.1", "::1"])
    assert allow.allows(("127.0.0.1", 4000))
    assert allow.allows(("::1", 4000, 0, 0))
    assert not allow.allows(("127.0.0.2", 4000))
    assert not allow.allows(("10.0.0.1", 4000))
    assert not allow.allows(("::2", 4000, 0, 0))
    assert allow.allows_any is False


def test_a1_cidr_networks():
    allow = _native.AllowList(["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"])
    assert allow.allows(("10.255.1.2", 1))
    assert allow.allows(("192.168.1.77", 1))
    assert not allow.allows(("192.168.2.1", 1))
    assert not allow.allows(("11.0.0.1", 1))
    assert allow.allows(("2001:db8:1::5", 1, 0, 0))
    assert not allow.allows(("2001:db9::5", 1, 0, 0))


def test_a1_strict_cidr_host_bits_are_an_error():
    with pytest.raises(ValueError) as info:
        _native.AllowList(["192.168.1.1/24"])
    assert "host bits" in str(info.value)
    assert "192.168.1.0/24" in str(info.value)
    with pytest.raises(ValueError):
        _native.AllowList(["2001:db8::1/32"])


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.0/33", "300.1.1.1", "10.0.0.0/", "*/8"])
def test_a5_invalid_entry_is_an_error(entry):
    with pytest.raises(ValueError) as info:
        _native.AllowList([entry])
    assert entry in str(info.value)


def test_a1_star_allows_everyone():
    allow = _native.AllowList(["*"])
    assert allow.allows_any is True
    assert allow.allows(("203.0.113.9", 1))
    assert allow.allows(("2001:db8::1", 1, 0, 0))


def test_a1_blank_entries_ignored_and_whitespace_trimmed():
    allow = _native.AllowList([" 10.0.0.1 ", ""])
    assert allow.allows(("10.0.0.1", 1))
    assert not _native.AllowList([]).allows(("127.0.0.1", 1))


def test_a2_ipv4_mapped_peer_matches_ipv4_entry():
    allow = _native.AllowList(["10.0.0.0/24"])
    assert allow.allows(("::ffff:10.0.0.5", 1, 0, 0))
    assert not allow.allows(("::ffff:10.0.1.5", 1, 0, 0))
    assert _native.AllowList(["127.0.0.1"]).allows(("::ffff:127.0.0.1", 1, 0, 0))


def test_a2_ipv6_zone_id_ignored():
    assert _native.AllowList(["fe80::/10"]).allows(("fe80::1%eth0", 1, 0, 2))


def test_a1_unparsable_peer_host_refused():
    assert not _native.AllowList(["127.0.0.1"]).allows(("not-an-ip", 1))


@pytest.mark.parametrize("peer", ["", "/run/gunicorn.sock", b""])
def test_a3_unix_peers_always_allowed(peer):
    assert _native.AllowList(["127.0.0.1"]).allows(peer)
    assert _native.AllowList([]).allows(peer)


# -- response_head (R1-R4) -------------------------------------------------------------------


def rh(status, headers=(), is_head=False):
    return _native.response_head(status, list(headers), is_head)


def test_r1_serialises_status_and_headers():
    data, code, length, no_body = rh("200 OK", [("Content-Type", "text/plain"), ("X-A", "b")])
    assert data == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: b\r\n\r\n"
    assert (code, length, no_body) == (200, None, False)


def test_r1_latin1_reason_and_values():
    data, *_ = rh("200 \xe9t\xe9", [("X", "caf\xe9")])
    assert data == b"HTTP/1.1 200 \xe9t\xe9\r\nX: caf\xe9\r\n\r\n"


def test_r1_content_length_returned():
    data, code, length, no_body = rh("201 Created", [("Content-Length", "12")])
    assert (code, length, no_body) == (201, 12, False)
    assert b"Content-Length: 12\r\n" in data


@pytest.mark.parametrize(
    "status",
    [
        "200",
        "2000 OK",
        "20 OK",
        "abc OK",
        "200OK",
        "200 OK\r\nX: y",
        "200 OK\n",
        "099 Low",
        "",
        " 200 OK",
    ],
)
def test_r1_bad_status_rejected(status):
    with pytest.raises(errors.InvalidResponseStatus):
        rh(status)


def test_r1_status_must_be_str():
    with pytest.raises(TypeError):
        rh(b"200 OK")
    with pytest.raises(TypeError):
        rh("200 OK", [(b"X", "y")])


@pytest.mark.parametrize("name", ["Bad Name", "", "X:", "X\r\n", "Caf\xe9", "X\x00", "(x)", "a/b"])
def test_r1_bad_header_name_rejected(name):
    with pytest.raises(errors.InvalidResponseHeaderName):
        rh("200 OK", [(name, "v")])


@pytest.mark.parametrize(
    "value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\x00b", "a\x01b", "a\x7fb", "\u263a"]
)
def test_r1_bad_header_value_rejected(value):
    with pytest.raises(errors.InvalidResponseHeader) as info:
        rh("200 OK", [("X-Ok", value)])
    assert "\r" not in str(info.value) and "\n" not in str(info.value)


def test_r1_header_value_tab_and_empty_allowed():
    data, *_ = rh("200 OK", [("X-A", "a\tb"), ("X-B", "")])
    assert b"X-A: a\tb\r\n" in data
    assert b"X-B: \r\n" in data or b"X-B:\r\n" in data


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "0x10", "1" * 20])
def test_r1_bad_content_length_rejected(value):
    with pytest.raises(errors.InvalidResponseStatus):
        rh("200 OK", [("Content-Length", value)])


def test_r1_conflicting_content_lengths_rejected():
    with pytest.raises(errors.InvalidResponseStatus):
        rh("200 OK", [("Content-Length", "1"), ("content-length", "2")])
    data, _, length, _ = rh("200 OK", [("Content-Length", "3"), ("content-length", "3")])
    assert length == 3
    assert data.lower().count(b"content-length") == 1


def test_r2_hop_by_hop_stripped_nothing_added():
    hop = [
        ("Connection", "close"),
        ("keep-alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("TE", "trailers"),
        ("Trailer", "X"),
        ("UPGRADE", "h2c"),
        ("Proxy-Connection", "keep-alive"),
    ]
    data, *_ = rh("200 OK", [*hop, ("X-Kept", "1")])
    assert data == b"HTTP/1.1 200 OK\r\nX-Kept: 1\r\n\r\n"
    lower = data.lower()
    for name in (b"server:", b"date:", b"connection:"):
        assert name not in lower


@pytest.mark.parametrize("status", ["204 No Content", "100 Continue", "103 Early Hints", "199 X"])
def test_r4_204_and_1xx_drop_content_length(status):
    data, _code, length, no_body = rh(status, [("Content-Length", "5"), ("X", "y")])
    assert no_body is True
    assert length is None
    assert b"content-length" not in data.lower()
    assert b"X: y\r\n" in data


def test_r4_head_keeps_content_length_no_body():
    data, code, length, no_body = rh("200 OK", [("Content-Length", "5")], is_head=True)
    assert (code, length, no_body) == (200, 5, True)
    assert b"Content-Length: 5\r\n" in data


def test_r4_304_keeps_content_length_no_body():
    data, code, length, no_body = rh("304 Not Modified", [("Content-Length", "5")])
    assert (code, length, no_body) == (304, 5, True)
    assert b"Content-Length: 5\r\n" in data


@pytest.mark.parametrize("status", ["200 OK", "201 Created", "404 Not Found", "500 Oops"])
def test_r4_ordinary_statuses_have_a_body(status):
    assert rh(status)[3] is False


# -- error_response (X1) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "Bad Request"),
        (403, "Forbidden"),
        (413, "Content Too Large"),
        (414, "URI Too Long"),
        (431, "Request Header Fields Too Large"),
        (501, "Not Implemented"),
    ],
)
def test_x1_error_response(status, reason):
    data = _native.error_response(status, "the reason")
    head_bytes, sep, body = data.partition(b"\r\n\r\n")
    assert sep
    lines = head_bytes.split(b"\r\n")
    assert lines[0] == f"HTTP/1.1 {status} {reason}".encode()
    assert f"Content-Length: {len(body)}".encode() in lines
    assert any(line.lower().startswith(b"content-type: text/plain") for line in lines)
    assert b"the reason" in body
    for name in (b"server:", b"date:"):
        assert name not in head_bytes.lower()


def test_v4_default_limits_are_gunicorn_defaults():
    """V4: the limits a cfg without them gets are gunicorn's own defaults, and the native
    default allow list is the one gunicorn >= 24 documents for uwsgi_allow_ips (A1)."""
    from gunicorn.config import Config

    from gunicorn_uwsgi.settings import DEFAULT_ALLOW_IPS

    cfg = Config()
    limits = _native.Limits()
    assert (limits.request_line, limits.fields, limits.field_size) == (
        cfg.limit_request_line,
        cfg.limit_request_fields,
        cfg.limit_request_field_size,
    )
    if "uwsgi_allow_ips" in cfg.settings:
        assert list(DEFAULT_ALLOW_IPS) == cfg.uwsgi_allow_ips
