"""Hostile input, through a raw socket to a live gunicorn arbiter, once per worker class.

Every refusal the behaviour spec describes (the F, V and A items), slow peers (F8), the
vars-size attacks of the CVE-2020-11984 class, packets smuggled behind a body (F5), magic
uWSGI vars (V7), an application writing CR/LF into its response head (R1) and a flood of bad
packets (X1, X4). One test per attack, each checking four things
(``e2e_helpers.assert_handled``):

- the answer: the status the spec gives (a short plain-text response), or a close with
  nothing written where the spec says the connection is just closed;
- the log: exactly one WARNING line that names the peer and says what was wrong (none for
  input that is served, or closed quietly);
- the worker: the same pid before and after, serving the next request;
- no traceback in the log.

The one exception is the application's own error (R1): gunicorn logs it as any application
exception, one ERROR line with the application's traceback (X2), and that is what is checked.

The server runs with ``--timeout 4``: a peer may keep a worker waiting 2 s at most (F8), and a
worker held past 4 s would be killed by the arbiter, which the unchanged pid rules out. It
allows ``127.0.0.0/30`` (A1), trusts ``127.0.0.2/31`` with the secure-scheme headers (E7) and,
when the host has IPv6, listens on ``::1`` and on the IPv4-mapped loopback address (A2) too.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from e2e_helpers import (
    F3_BAD_BLOCKS,
    F7_FOREIGN,
    GOOD_BLOCK,
    PROBE_APP,
    V2_BAD,
    V5_BAD,
    LogMark,
    assert_handled,
    assert_refused,
    good_request,
    magic_uwsgi_vars,
    rss_kib,
    talk,
    var,
)

from support import (
    TESTS,
    WORKERS,
    Address,
    Gunicorn,
    Reply,
    connect,
    free_port,
    header,
    ipv6_available,
    is_multithread,
    nginx_vars,
    packet,
    raw_packet,
    request_packet,
    require_worker,
    send_and_read,
    vars_block,
    worker_args,
    worker_id,
)

GET = ("REQUEST_METHOD", "GET")
HELLO = [GET, ("PATH_INFO", "/hello")]
#: gunicorn's worker timeout for the suite's server: the read timeout is half of it (F8).
TIMEOUT = 4
READ_TIMEOUT = TIMEOUT / 2
needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")


class Server(Gunicorn):
    """The probe app with one worker of class ``worker``, on 127.0.0.1, ::1, the IPv4-mapped
    ``[::ffff:127.0.0.1]`` (``mapped``) and a unix socket."""

    def __init__(self, tmp: Path, worker: str) -> None:
        ipv6 = ipv6_available()
        self.mapped: Address | None = ("::ffff:127.0.0.1", free_port()) if ipv6 else None
        args = [
            *worker_args(worker),
            "--timeout",
            str(TIMEOUT),
            "--uwsgi-allow-from",
            "127.0.0.0/30",
            "--forwarded-allow-ips",
            "127.0.0.2/31",
        ]
        if self.mapped:
            args += ["--bind", f"[{self.mapped[0]}]:{self.mapped[1]}"]
        super().__init__(tmp, app=PROBE_APP, worker=worker, ipv6=ipv6, args=args)

    def at(self, transport: str) -> Address:
        address = {"tcp4": self.tcp, "tcp6": self.tcp6, "mapped": self.mapped, "unix": self.unix}
        assert address[transport] is not None, f"{transport} is not bound"
        return address[transport]  # type: ignore[return-value]


@pytest.fixture(scope="module", params=WORKERS, ids=worker_id)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    worker = request.param
    require_worker(worker)
    with Server(tmp_path_factory.mktemp(f"hostile-{worker_id(worker)}"), worker) as g:
        yield g


# -- refusals: F, V ----------------------------------------------------------------------------


class Refusal(NamedTuple):
    """A packet, the status that answers it, and what the warning line must say."""

    data: bytes
    status: int
    reasons: tuple[str, ...]


def refusal(data: bytes, status: int, *reasons: str) -> Refusal:
    return Refusal(data, status, reasons)


F3_REASONS = {
    "zero_length_key": "zero-length key at offset",
    "zero_length_key_first": "zero-length key at offset 0",
    "key_overruns_block": "overruns the block",
    "value_overruns_block": "overruns the block",
    "missing_value_size": "overruns the block",
    "one_stray_byte": "1 stray byte(s)",
    "stray_trailing_bytes": "overruns the block",
}

#: A log line as gunicorn writes it, for a peer to try to slip into the log.
FORGED = b"[2030-01-01 00:00:00 +0000] [1] [WARNING] forged"

#: The vars nginx sends for ``GET /hello``, as one block.
NGINX_BLOCK = vars_block(nginx_vars(path="/hello"))


def _largest_block_overrun() -> bytes:
    """A 65535-byte block (the largest) whose last value claims 10 bytes more than it holds,
    followed by a body that has them."""
    first = vars_block(HELLO)
    pad = 65535 - len(first) - len(var(b"X_PAD", b""))
    block = first + struct.pack("<H", 5) + b"X_PAD" + struct.pack("<H", pad + 10) + b"p" * pad
    assert len(block) == 65535
    return header(0, 65535) + block + b"b" * 100


def _wrapped_size() -> bytes:
    """A 70 000-byte block with its size taken modulo 65536, as a front end with a 16-bit
    counter would write it: the size ends inside a value."""
    block = vars_block([*HELLO, ("X_PAD", "p" * 40000), ("Y_PAD", "q" * 30000)])
    assert len(block) > 65535
    return header(0, len(block) % 65536) + block


#: The vars size in the header disagrees with the block (CVE-2020-11984 and its kin): the
#: parser is bounded by the declared block, never by the bytes in the buffer.
CVE_SIZE = {
    # 6 bytes more than the block: the body's first bytes are read as a var.
    "cve_size_larger_than_block": refusal(
        header(0, len(NGINX_BLOCK) + 6) + NGINX_BLOCK + b"\xff\xffbody",
        400,
        "key at offset",
        "overruns the block",
    ),
    # 3 bytes less than the block: the last value is cut.
    "cve_size_smaller_than_block": refusal(
        header(0, len(NGINX_BLOCK) - 3) + NGINX_BLOCK, 400, "value at offset", "overruns the block"
    ),
    "cve_size_wrapped_past_65535": refusal(
        _wrapped_size(), 400, "value at offset", "overruns the block"
    ),
    # A value size past the block end, where the body holds the bytes it claims.
    "cve_value_overruns_into_body": refusal(
        raw_packet(
            GOOD_BLOCK
            + var(b"CONTENT_LENGTH", b"16")
            + struct.pack("<H", 1)
            + b"X"
            + struct.pack("<H", 20)
            + b"abcd",
            b"0123456789abcdef",
        ),
        400,
        "value at offset",
        "overruns the block",
    ),
    # A key size of 65535 with a large body behind it.
    "cve_key_overruns_into_body": refusal(
        raw_packet(GOOD_BLOCK + struct.pack("<H", 65535) + b"KEY", b"k" * 70000),
        400,
        "key at offset",
        "overruns the block",
    ),
    "cve_largest_block_value_overruns": refusal(
        _largest_block_overrun(), 400, "value at offset", "overruns the block"
    ),
}

REFUSALS: dict[str, Refusal] = {
    **{
        f"f3_{name}": refusal(raw_packet(block), 400, "vars block: ", F3_REASONS[name])
        for name, block in F3_BAD_BLOCKS.items()
    },
    **CVE_SIZE,
    **{
        f"f4_modifier1_{m}": refusal(packet(HELLO, modifier1=m), 501, f"modifier1 {m}")
        for m in (1, 5, 29, 31, 255)
    },
    **{
        f"f7_{name}": refusal(
            data,
            400,
            "speaking TLS" if name.startswith("tls") else "speaking HTTP",
            "uwsgi_pass",
        )
        for name, data in F7_FOREIGN.items()
    },
    **{
        f"v2_{name}": refusal(
            raw_packet(var(b"REQUEST_METHOD", b"GET") + var(key, value)),
            400,
            "invalid var name" if name.startswith("key") else "has a CR, LF or NUL in its value",
        )
        for name, (key, value) in V2_BAD.items()
    },
    # What the peer sends never starts a line of its own in the log: a second WARNING line
    # would fail the check.
    "v2_name_forging_a_log_line": refusal(
        raw_packet(var(b"REQUEST_METHOD", b"GET") + var(b"X\n" + FORGED, b"x")),
        400,
        "invalid var name",
    ),
    "v2_request_method_forging_a_log_line": refusal(
        packet([("REQUEST_METHOD", b"GET\n" + FORGED), ("PATH_INFO", "/hello")]),
        400,
        "REQUEST_METHOD has a CR, LF or NUL",
    ),
    "v3_content_length_with_two_values": refusal(
        packet([*HELLO, ("CONTENT_LENGTH", "3"), ("CONTENT_LENGTH", "12")], b"abc"),
        400,
        "CONTENT_LENGTH is sent twice",
    ),
    "v4_request_uri_over_limit_request_line": refusal(
        packet([*HELLO, ("REQUEST_URI", "/" + "u" * 4094)]), 414, "limit_request_line (4094)"
    ),
    "v4_header_vars_over_limit_request_fields": refusal(
        packet(HELLO + [(f"HTTP_X_{i}", "v") for i in range(101)]),
        431,
        "limit_request_fields",
    ),
    "v4_header_var_over_limit_request_field_size": refusal(
        packet([*HELLO, ("HTTP_X_BIG", "v" * 9000)]),
        431,
        "HTTP_X_BIG",
        "limit_request_field_size (8190)",
    ),
    "v4_more_than_1000_vars": refusal(
        packet(HELLO + [(f"V{i}", "") for i in range(999)]), 431, "more than 1000 vars"
    ),
    **{
        f"v5_content_length_{i}": refusal(
            packet(
                [
                    ("REQUEST_METHOD", "POST"),
                    ("PATH_INFO", "/echo"),
                    ("CONTENT_LENGTH", value.encode()),
                ],
                b"12345",
            ),
            400,
            "invalid CONTENT_LENGTH",
        )
        for i, value in enumerate(V5_BAD)
    },
    "v5_content_length_beyond_any_body": refusal(
        packet([*HELLO, ("CONTENT_LENGTH", "9" * 19)]), 413, "CONTENT_LENGTH", "body limit"
    ),
    **{
        f"v6_request_method_{i}": refusal(
            packet([("REQUEST_METHOD", method.encode("latin-1")), ("PATH_INFO", "/hello")]),
            400,
            "invalid REQUEST_METHOD",
        )
        for i, method in enumerate(["", "G ET", "GET\x01", "(GET)", "GE/T", "G\xe9T"])
    },
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refused(server, name):
    """F1, F3, F4, F7, V2-V6, X1 and the CVE-2020-11984 class: each malformed packet gets its
    4xx/5xx at once, with one warning line saying what was wrong; the worker stays."""
    attack = REFUSALS[name]
    assert_refused(server, server.tcp, attack.data, attack.status, *attack.reasons)


# -- refusals: A ---------------------------------------------------------------------------------


class RefusedPeer(NamedTuple):
    """A peer outside the allow list: where it connects, from where, what it sends, and where
    the good request that follows is sent."""

    transport: str
    source: str | None
    data: bytes
    serves: str


PEERS = {
    # 127.0.0.4 is just outside 127.0.0.0/30.
    "a1_a4_outside_the_network": RefusedPeer(
        "tcp4", "127.0.0.4", request_packet(path="/hello"), "tcp4"
    ),
    # The check runs before a byte is read: a peer that sends nothing is answered too.
    "a4_refused_before_a_byte_is_read": RefusedPeer("tcp4", "127.0.0.4", b"", "tcp4"),
    # A refused peer that speaks HTTP is refused as a peer, not parsed.
    "a4_refused_peer_speaking_http": RefusedPeer(
        "tcp4", "127.0.0.4", F7_FOREIGN["http_get"], "tcp4"
    ),
    "a1_a4_ipv6_peer_not_listed": pytest.param(
        RefusedPeer("tcp6", None, request_packet(path="/hello"), "unix"), marks=needs_ipv6
    ),
    # ::ffff:127.0.0.4 is matched as 127.0.0.4; ::ffff:127.0.0.1 (the good request) as
    # 127.0.0.1.
    "a2_ipv4_mapped_peer_outside": pytest.param(
        RefusedPeer("mapped", "::ffff:127.0.0.4", request_packet(path="/hello"), "mapped"),
        marks=needs_ipv6,
    ),
}


@pytest.mark.parametrize("peer", list(PEERS.values()), ids=list(PEERS))
def test_refused_peer(server, peer):
    """A1, A2, A4: a peer outside uwsgi_allow_ips (a CIDR network) gets a 403 and one warning
    that names its address and the setting to change; IPv4-mapped peers are matched as IPv4;
    the same worker serves allowed peers."""
    address = server.at(peer.transport)
    host = peer.source or address[0]
    reply, _ = assert_refused(
        server,
        address,
        peer.data,
        403,
        f"'{host}'",
        "uwsgi_allow_ips",
        "--uwsgi-allow-from",
        source=peer.source,
        serves=server.at(peer.serves),
    )
    assert b"not allowed" in reply.body


FORWARDERS = {
    # 127.0.0.1 may connect (127.0.0.0/30) but is not trusted (127.0.0.2/31).
    "untrusted": ("tcp4", "127.0.0.1", "http"),
    "trusted_by_network": ("tcp4", "127.0.0.3", "https"),
    "ipv4_mapped_untrusted": ("mapped", "::ffff:127.0.0.1", "http"),
    "ipv4_mapped_trusted": ("mapped", "::ffff:127.0.0.3", "https"),
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(name, marks=needs_ipv6) if FORWARDERS[name][0] == "mapped" else name
        for name in FORWARDERS
    ],
)
def test_forwarded_proto_from_untrusted_peer_is_inert(server, case):
    """E7, A2: X-Forwarded-Proto: https from a peer outside forwarded_allow_ips (a CIDR
    network; IPv4-mapped peers matched as IPv4) does not make the request https; from a
    trusted one it does. Served, nothing logged above debug."""
    transport, source, scheme = FORWARDERS[case]
    pairs = [p for p in nginx_vars(path="/environ") if p[0] != "REQUEST_SCHEME"]
    data = packet([*pairs, ("HTTP_X_FORWARDED_PROTO", "https")])
    raw, _ = assert_handled(server, server.at(transport), data, 200, warns=False, source=source)
    assert Reply(raw).json()["wsgi.url_scheme"] == scheme


# -- slow peers (F8) -----------------------------------------------------------------------------

POST = request_packet(method="POST", path="/echo", body=b"b" * 100)
POST_HEAD = len(POST) - 100
BIG_POST = request_packet(method="POST", path="/echo", body=b"b" * 200_000)
BIG_POST_HEAD = len(BIG_POST) - 200_000


def _bytes(data: bytes, start: int, size: int = 1) -> list[bytes]:
    """``data`` from ``start`` on, in pieces of ``size``."""
    return [data[i : i + size] for i in range(start, len(data), size)]


class SlowPeer(NamedTuple):
    """What a slow peer sends: segments, the seconds between them, the seconds it waits
    before the first, what the warning says it stalled in, and whether it goes on sending
    after the server closed its side (``trickle``)."""

    segments: list[bytes]
    pace: float
    wait: float
    stalled_in: str
    stubborn: bool = False


#: Each would hold the worker for far longer than gunicorn's timeout if it were not dropped.
SLOW_PEERS = {
    # slowloris: the head, a byte at a time.
    "f8_slowloris_head": SlowPeer([POST[:10], *_bytes(POST[:POST_HEAD], 10)], 0.3, 0, "head"),
    # slowloris: a whole head, then the body a byte at a time.
    "f8_slowloris_body": SlowPeer(
        [POST[: POST_HEAD + 1], *_bytes(POST, POST_HEAD + 1)], 0.3, 0, "body"
    ),
    # The first bytes just before the read timeout, then a trickle that goes on while the
    # server drains the connection: the time waited for the first bytes counts.
    "f8_slowloris_late_first_bytes": SlowPeer(
        [POST[:10], *_bytes(POST[:POST_HEAD], 10)], 0.1, READ_TIMEOUT * 0.95, "head", True
    ),
    # The body in a fast drip, a segment every half millisecond: never a pause long enough
    # to look like a stall, far too slow to finish.
    "f8_fast_drip_body": SlowPeer(
        [BIG_POST[: BIG_POST_HEAD + 8], *_bytes(BIG_POST, BIG_POST_HEAD + 8, 8)], 0.0005, 0, "body"
    ),
    # The header announces a larger vars block than is sent, and the peer waits.
    "f1_f8_cve_size_larger_then_stall": SlowPeer(
        [header(0, len(NGINX_BLOCK) + 100) + NGINX_BLOCK], 1, 0, "head"
    ),
}


@pytest.mark.parametrize("name", sorted(SLOW_PEERS))
def test_slow_peer_is_dropped(server, name):
    """F8: a peer that stalls or trickles its head or body is dropped once it has kept the
    worker waiting for the read timeout (half of gunicorn's): no answer, one warning saying
    what it stalled in; the arbiter never has to kill the worker."""
    peer = SLOW_PEERS[name]
    assert_handled(
        server,
        server.tcp,
        peer.segments,
        None,
        "dropped",
        peer.stalled_in,
        pace=peer.pace,
        wait=peer.wait,
        stubborn=peer.stubborn,
    )


def test_slow_peers_one_after_another_do_not_starve_the_heartbeat(server):
    """F8, G2: peers that each send a good request after most of the read timeout, the next
    one already connected and waiting to be accepted: each is served, and the worker keeps
    telling the arbiter it is alive, though together they hold it longer than gunicorn's
    timeout."""
    pids = server.live_worker_pids()
    mark = LogMark(server)
    data = request_packet(path="/hello")
    peers = [(connect(server.tcp, timeout=15), time.monotonic())]
    try:
        for i in range(4):
            s, connected = peers[i]
            time.sleep(max(0.0, connected + READ_TIMEOUT * 0.7 - time.monotonic()))
            peers.append((connect(server.tcp, timeout=15), time.monotonic()))
            assert Reply(send_and_read(s, data)).status == 200
    finally:
        for s, _ in peers:
            s.close()
    good_request(server.tcp)
    assert not mark.lines("WARNING"), mark.new()
    assert not mark.lines("ERROR") and not mark.lines("CRITICAL"), mark.new()
    assert "Traceback" not in mark.new()
    assert server.live_worker_pids() == pids


# -- peers that hang up (F6, X3) -----------------------------------------------------------------

#: A peer that half-closes after these bytes: the connection is just closed, logged at debug.
HANG_UPS = {
    "f6_nothing_sent": b"",
    "x3_eof_inside_the_header": POST[:2],
    "x3_eof_inside_the_vars": POST[:40],
    "x3_eof_inside_the_body": POST[:-50],
    "f1_x3_cve_size_larger_then_eof": header(0, len(NGINX_BLOCK) + 100) + NGINX_BLOCK,
}


@pytest.mark.parametrize("name", sorted(HANG_UPS))
def test_peer_hanging_up_is_closed_quietly(server, name):
    """F6, X3: EOF before the first byte, or inside the header, the vars or the body: no
    answer, nothing logged above debug (a truncated request is never served as complete)."""
    assert_handled(server, server.tcp, HANG_UPS[name], None, warns=False, shut_write=True)


# -- smuggling (F5, V5, E1) ----------------------------------------------------------------------

SMUGGLED = request_packet(path="/raise")
BODY_THEN_PACKET = [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"), ("CONTENT_LENGTH", "5")]

#: A second request on the connection: (what is sent, the body the first request sees).
SMUGGLING = {
    "f5_packet_behind_the_body": (packet(BODY_THEN_PACKET, b"hello" + SMUGGLED), b"hello"),
    "f5_packet_behind_a_get": (request_packet(path="/echo") + SMUGGLED, b""),
    # CONTENT_LENGTH alone frames the body: the header vars nginx forwards do not.
    "f5_v5_lying_http_content_length": (
        packet([*BODY_THEN_PACKET, ("HTTP_CONTENT_LENGTH", "0")], b"hello" + SMUGGLED),
        b"hello",
    ),
    "f5_v5_chunked_transfer_encoding": (
        packet(
            [*BODY_THEN_PACKET, ("HTTP_TRANSFER_ENCODING", "chunked")],
            b"hello0\r\n\r\n" + SMUGGLED,
        ),
        b"hello",
    ),
    # Vars past the declared size are body bytes, and with no CONTENT_LENGTH not even that.
    "f5_f1_vars_behind_a_short_size": (
        header(0, len(vars_block(BODY_THEN_PACKET[:2])))
        + vars_block([*BODY_THEN_PACKET[:2], ("PATH_INFO", "/raise")]),
        b"",
    ),
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggled_request_is_never_parsed(server, name):
    """F5, V5, E1: bytes after the body (framed by CONTENT_LENGTH alone) are never parsed: one
    response, to the first request; the smuggled one (/raise) never runs; nothing logged
    above debug."""
    data, body = SMUGGLING[name]
    raw, _ = assert_handled(server, server.tcp, data, 200, warns=False)
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    assert Reply(raw).body == body


def test_cut_vars_behind_a_short_size_do_not_reach_the_environ(server):
    """F1, F3, F5: a size that ends on a var boundary before the rest of the block: the vars
    past it are not parsed, so they cannot add to or override the environ."""
    kept = vars_block([GET, ("PATH_INFO", "/environ")])
    cut = vars_block([("HTTP_X_SMUGGLED", "1"), ("PATH_INFO", "/raise"), ("HTTPS", "on")])
    raw, _ = assert_handled(server, server.tcp, header(0, len(kept)) + kept + cut, 200, warns=False)
    env = Reply(raw).json()
    assert "HTTP_X_SMUGGLED" not in env and "HTTPS" not in env
    assert (env["PATH_INFO"], env["wsgi.url_scheme"]) == ("/environ", "http")


# -- inert vars (V7, E1) -------------------------------------------------------------------------


def test_magic_uwsgi_vars_are_inert(server, tmp_path):
    """V7: UWSGI_SCRIPT, UWSGI_FILE, UWSGI_CHDIR, UWSGI_SETENV, UWSGI_PYHOME, ... are plain
    strings: nothing is imported, run, opened or changed; served, nothing logged above
    debug."""
    marker, magic = magic_uwsgi_vars(tmp_path)
    raw, _ = assert_handled(
        server, server.tcp, packet([*nginx_vars(path="/environ"), *magic.items()]), 200, warns=False
    )
    env = Reply(raw).json()
    for key, value in magic.items():
        assert env[key] == value
    after = Reply(talk(server.tcp, packet([GET, ("PATH_INFO", "/probe/cwd")]))[0]).json()
    assert after == {"cwd": str(TESTS), "FOO": None, "modules": False}
    assert not marker.exists()


def test_peer_cannot_set_server_keys(server):
    """E1: wsgi.* and gunicorn.* vars from the peer are left out; the server's own keys
    stand. Served, nothing logged above debug."""
    pairs = [
        *nginx_vars(path="/environ"),
        ("wsgi.url_scheme", "https"),
        ("wsgi.multithread", "yes"),
        ("wsgi.input_terminated", "no"),
        ("gunicorn.socket", "fake"),
    ]
    raw, _ = assert_handled(server, server.tcp, packet(pairs), 200, warns=False)
    env = Reply(raw).json()
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is is_multithread(server.worker)
    assert env["wsgi.input_terminated"] is True
    assert "gunicorn.socket" not in env


# -- the application splitting its response (R1, X2) ---------------------------------------------

#: Routes whose status line or header carries CR, LF or NUL: (path, query).
SPLITTING = {
    "header_value_crlf_set_cookie": ("/badheader", ""),
    "header_value_lf": ("/probe/header-value", "a%0Ab"),
    "header_value_nul": ("/probe/header-value", "a%00b"),
    "header_value_crlfcrlf_body": ("/probe/header-value", "a%0D%0A%0D%0A<script>pwned</script>"),
    "header_name_crlf": ("/probe/header-name", "X-A%0D%0ASet-Cookie: pwned=1"),
    "status_crlf": ("/probe/status", "200 OK%0D%0ASet-Cookie: pwned=1"),
}


@pytest.mark.parametrize("name", sorted(SPLITTING))
def test_app_cannot_split_the_response(server, name):
    """R1, X2: an application that writes CR/LF/NUL into its status or a header gets an
    error from start_response; the peer gets a 500 and none of the injected bytes. As with
    any application exception, gunicorn logs one ERROR with the application's traceback
    (X2), and no warning; the worker stays."""
    path, query = SPLITTING[name]
    pids = server.live_worker_pids()
    mark = LogMark(server)
    raw, _ = talk(server.tcp, packet([GET, ("PATH_INFO", path), ("QUERY_STRING", query)]))
    reply = Reply(raw)
    assert reply.status == 500, reply
    assert reply.header("Content-Length") == str(len(reply.body))
    for injected in (b"pwned", b"<script>", b"never", b"X-Evil"):
        assert injected not in raw, raw
    mark.wait_for(r"\[ERROR\] Error handling request GET " + re.escape(path))
    good_request(server.tcp)
    log = mark.new()
    assert len(mark.lines("ERROR")) == 1, log
    assert log.count("Traceback") == 1, log
    assert re.search(r"start_response\(.*\n.*Invalid", log), log
    assert not mark.lines("WARNING") and not mark.lines("CRITICAL"), log
    assert server.live_worker_pids() == pids


# -- a flood (X1, X4) ----------------------------------------------------------------------------

FLOOD = 10_000
WARM_UP = 1_000
#: RSS growth allowed over the flood, after the warm-up.
RSS_SLACK_KIB = 4096
#: Small refusals of every kind, sent round-robin.
FLOOD_PACKETS = [r for r in REFUSALS.values() if len(r.data) < 1024]


def _flood(address: Address, count: int) -> list[tuple[int, int]]:
    """Sends ``count`` packets of ``FLOOD_PACKETS`` in turn, one per connection; returns
    ``(status, expected)`` for each answer with another status than its refusal's."""
    wrong = []
    for i in range(count):
        attack = FLOOD_PACKETS[i % len(FLOOD_PACKETS)]
        status = Reply(talk(address, attack.data)[0]).status
        if status != attack.status:
            wrong.append((status, attack.status))
    return wrong


def test_flood_of_bad_packets(server, record_property, capsys):
    """X1, X4: 10 000 bad packets over TCP: each answered with its status and one warning
    line, no traceback, the same worker throughout, and its memory flat (RSS measured after
    a warm-up of 1 000). The time per rejection is printed, not asserted."""
    (pid,) = server.live_worker_pids()
    mark = LogMark(server)
    assert _flood(server.tcp, WARM_UP) == []
    rss_before = rss_kib(pid)
    started = time.monotonic()
    wrong = _flood(server.tcp, FLOOD)
    elapsed = time.monotonic() - started
    rss_after = rss_kib(pid)
    good_request(server.tcp)
    assert wrong == []
    assert len(mark.lines("WARNING")) == WARM_UP + FLOOD
    assert "Traceback" not in mark.new()
    assert not mark.lines("ERROR") and not mark.lines("CRITICAL")
    assert server.live_worker_pids() == [pid]
    assert rss_after - rss_before < RSS_SLACK_KIB, (rss_before, rss_after)
    per = elapsed / FLOOD * 1e6
    figures = (
        f"flood ({worker_id(server.worker)}): {FLOOD} bad packets in {elapsed:.2f} s, "
        f"{per:.0f} us per rejection; worker RSS {rss_before} KiB -> {rss_after} KiB"
    )
    record_property("flood", figures)
    with capsys.disabled():
        print("\n" + figures)
