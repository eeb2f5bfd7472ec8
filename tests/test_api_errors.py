"""``gunicorn_uwsgi.errors``: each protocol error's ``.code`` and its place in gunicorn's own
hierarchy, and which class the native parser raises for which input (X1, B3, F8, R1, E3, A4).
Each test names the behaviour ids of /work/shared/spec/behaviour.md it covers."""

from __future__ import annotations

import errno

import pytest
from gunicorn.http import errors as http_errors

from gunicorn_uwsgi import _native, errors
from support import packet

try:
    from gunicorn.uwsgi import errors as gunicorn_uwsgi_errors
except ImportError:  # pragma: no cover - gunicorn < 24
    gunicorn_uwsgi_errors = None

needs_gunicorn_uwsgi = pytest.mark.skipif(
    gunicorn_uwsgi_errors is None, reason="gunicorn has no gunicorn.uwsgi.errors"
)


def make(cls):
    if cls is errors.UnsupportedModifier:
        return cls(7)
    if cls is errors.ForbiddenUWSGIRequest:
        return cls("10.0.0.1")
    return cls("the reason")


PROTOCOL_ERRORS = [
    (errors.UWSGIError, 400),
    (errors.InvalidUWSGIHeader, 400),
    (errors.ForeignProtocol, 400),
    (errors.ForbiddenUWSGIRequest, 403),
    (errors.RequestBodyTooLarge, 413),
    (errors.LimitRequestLine, 414),
    (errors.LimitRequestHeaders, 431),
    (errors.UnsupportedModifier, 501),
]


@pytest.mark.parametrize(("cls", "code"), PROTOCOL_ERRORS)
def test_x1_each_protocol_error_has_its_status(cls, code):
    e = make(cls)
    assert e.code == code
    assert cls.code == code
    assert isinstance(e, errors.UWSGIError)
    assert isinstance(e, Exception)
    assert str(e)
    assert isinstance(e.reason, str) and e.reason


def test_x1_codes_cover_every_status_the_spec_names():
    assert {code for _, code in PROTOCOL_ERRORS} == {400, 403, 413, 414, 431, 501}


@pytest.mark.parametrize(("cls", "code"), PROTOCOL_ERRORS)
def test_x1_reason_matches_error_response(cls, code):
    data = _native.error_response(code, "m")
    assert data.startswith(f"HTTP/1.1 {code} {cls.reason}\r\n".encode())


@needs_gunicorn_uwsgi
def test_x1_base_subclasses_gunicorns_parse_exception():
    assert issubclass(errors.UWSGIError, gunicorn_uwsgi_errors.UWSGIParseException)


@needs_gunicorn_uwsgi
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("InvalidUWSGIHeader", "InvalidUWSGIHeader"),
        ("ForeignProtocol", "InvalidUWSGIHeader"),
        ("UnsupportedModifier", "UnsupportedModifier"),
        ("ForbiddenUWSGIRequest", "ForbiddenUWSGIRequest"),
        ("LimitRequestLine", "UWSGIParseException"),
        ("LimitRequestHeaders", "UWSGIParseException"),
        ("RequestBodyTooLarge", "UWSGIParseException"),
    ],
)
def test_x1_subclasses_gunicorns_uwsgi_errors(ours, theirs):
    cls = getattr(errors, ours)
    assert issubclass(cls, getattr(gunicorn_uwsgi_errors, theirs))
    # An ``except`` clause written for gunicorn catches ours.
    with pytest.raises(getattr(gunicorn_uwsgi_errors, theirs)):
        raise make(cls)


@needs_gunicorn_uwsgi
def test_x1_gunicorn_attributes_kept():
    assert errors.UnsupportedModifier(5).modifier == 5
    assert "5" in str(errors.UnsupportedModifier(5))
    forbidden = errors.ForbiddenUWSGIRequest("192.0.2.1")
    assert forbidden.host == "192.0.2.1"
    assert "192.0.2.1" in str(forbidden)
    assert errors.InvalidUWSGIHeader("bad").msg == "bad"


def test_a4_forbidden_message_names_the_peer_and_the_setting():
    text = str(errors.ForbiddenUWSGIRequest("198.51.100.4"))
    assert "198.51.100.4" in text
    assert "uwsgi_allow_ips" in text


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        (b"\x00\x02\x00\x00\x00\x00", errors.InvalidUWSGIHeader),
        (b"GET / HTTP/1.1\r\n", errors.ForeignProtocol),
        (b"\x16\x03\x01\x00", errors.ForeignProtocol),
        (b"\x01\x00\x00\x00", errors.UnsupportedModifier),
        (
            packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/" * 5000)]),
            errors.LimitRequestLine,
        ),
        (
            packet([("REQUEST_METHOD", "GET"), *[(f"HTTP_X_{i}", "v") for i in range(101)]]),
            errors.LimitRequestHeaders,
        ),
        (
            packet([("REQUEST_METHOD", "GET"), ("HTTP_X", "v" * 9000)]),
            errors.LimitRequestHeaders,
        ),
        (
            packet([("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "9223372036854775808")]),
            errors.RequestBodyTooLarge,
        ),
    ],
)
def test_x1_native_parse_raises_the_matching_class(data, cls):
    with pytest.raises(cls) as info:
        _native.parse(data, _native.Limits())
    assert type(info.value) is cls
    assert info.value.code == cls.code


def test_v5_largest_framable_content_length_accepted():
    pkt = packet([("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "9223372036854775807")])
    assert _native.parse(pkt, _native.Limits()).content_length == 2**63 - 1


def test_x1_messages_do_not_echo_control_bytes():
    with pytest.raises(errors.InvalidUWSGIHeader) as info:
        _native.parse(packet([("REQUEST_METHOD", "GET"), ("X\x01Y", "v")]), _native.Limits())
    assert "\x01" not in str(info.value)


# -- B3, F8: connection errors ----------------------------------------------------------------


def test_b3_client_disconnected_is_an_oserror():
    e = errors.ClientDisconnected(3, 10)
    assert isinstance(e, OSError)
    assert isinstance(e, ConnectionResetError)
    assert e.errno == errno.ECONNRESET
    assert (e.received, e.expected) == (3, 10)
    assert "client disconnected" in str(e)
    assert "3" in str(e) and "10" in str(e)
    assert e.what == "body" and "body bytes" in str(e)
    assert not isinstance(e, errors.UWSGIError)


def test_f8_peer_timeout_is_a_timeout_error():
    e = errors.PeerTimeout(15.0, "body bytes")
    assert isinstance(e, TimeoutError)
    assert isinstance(e, OSError)
    assert e.errno == errno.ETIMEDOUT
    assert (e.seconds, e.what) == (15.0, "body bytes")
    assert "15" in str(e) and "body bytes" in str(e)


# -- R1, E3: errors the application sees -----------------------------------------------------


def test_r1_response_header_errors_subclass_gunicorns():
    assert issubclass(errors.InvalidResponseHeaderName, http_errors.InvalidResponseHeaderName)
    assert issubclass(errors.InvalidResponseHeader, http_errors.InvalidResponseHeader)
    e = errors.InvalidResponseHeaderName("Bad Name")
    assert str(e) == "Bad Name"
    assert issubclass(errors.InvalidResponseStatus, ValueError)


def test_r1_response_head_raises_these_classes():
    with pytest.raises(errors.InvalidResponseHeaderName):
        _native.response_head("200 OK", [("a b", "c")], False)
    with pytest.raises(errors.InvalidResponseHeader):
        _native.response_head("200 OK", [("a", "c\r\n")], False)
    with pytest.raises(errors.InvalidResponseStatus):
        _native.response_head("OK", [], False)


def test_e3_configuration_problem_is_gunicorns_500():
    e = errors.ConfigurationProblem("path /x does not start with /app")
    assert isinstance(e, http_errors.ConfigurationProblem)
    assert e.code == 500
    assert "/app" in str(e)


def test_a5_invalid_allow_entry_is_a_value_error_with_the_entry():
    with pytest.raises(ValueError) as info:
        _native.AllowList(["10.0.0.1/8"])
    assert "10.0.0.1/8" in str(info.value)


def test_all_names_exported():
    for name in errors.__all__:
        assert hasattr(errors, name), name
