"""``gunicorn_uwsgi.body.Body`` (``wsgi.input``) over a real socketpair: framing by
``CONTENT_LENGTH``, the file API, laziness and truncated uploads (B1-B3, F5).
Each test names the behaviour ids of /work/shared/spec/behaviour.md it covers."""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from gunicorn.config import Config

from gunicorn_uwsgi import UWSGIParser, errors
from gunicorn_uwsgi.body import Body
from support import request_packet

BODY = b"line one\nline two\n\nlast line without newline"


class RecordingSock:
    """Our side of the connection, counting the reads the body makes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvs: list[int] = []

    def recv(self, size: int) -> bytes:
        self.recvs.append(size)
        return self.sock.recv(size)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(peer, ours): write to the first, Body reads the second."""
    a, b = socket.socketpair()
    b.settimeout(5)
    with a, b:
        yield a, b


def body_over(pair, initial: bytes, rest: bytes, length: int, close: bool = False) -> Body:
    peer, ours = pair
    if rest:
        peer.sendall(rest)
    if close:
        peer.shutdown(socket.SHUT_WR)
    return Body(ours, initial, length)


# -- B1: exactly CONTENT_LENGTH bytes, then b'' ------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 10, len(BODY) - 1, len(BODY)])
def test_b1_read_returns_exactly_content_length(pair, split):
    body = body_over(pair, BODY[:split], BODY[split:] + b"TRAILING", len(BODY))
    assert body.read() == BODY
    assert body.read() == b""
    assert body.read(10) == b""
    assert body.readline() == b""


def test_b1_trailing_bytes_in_the_initial_buffer_never_returned(pair):
    body = Body(pair[1], BODY + b"\x00\x05\x00\x00NEXT PACKET", len(BODY))
    assert body.read() == BODY
    assert body.read() == b""
    assert body.overflow is True


def test_b1_f5_bytes_after_the_body_stay_on_the_socket(pair):
    _peer, ours = pair
    body = body_over(pair, b"", BODY + b"SMUGGLED", len(BODY))
    assert body.read() == BODY
    assert body.complete
    assert ours.recv(100) == b"SMUGGLED"


def test_b1_zero_length_body_reads_nothing_from_the_socket(pair):
    peer, ours = pair
    rec = RecordingSock(ours)
    peer.sendall(b"NOT A BODY")
    body = Body(rec, b"", 0)
    assert body.read() == b""
    assert body.read(5) == b""
    assert body.readline() == b""
    assert body.readlines() == []
    assert list(body) == []
    assert rec.recvs == []
    assert body.complete


@pytest.mark.parametrize("seed", range(5))
def test_b1_any_split_on_the_wire(seed):
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 5000)))
    initial = rng.randint(0, len(data))
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        rest = data[initial:]
        pos = 0
        while pos < len(rest):
            step = rng.randint(1, 700)
            a.sendall(rest[pos : pos + step])
            pos += step
        a.sendall(b"AFTER")
        body = Body(b, data[:initial], len(data))
        out = bytearray()
        while True:
            chunk = body.read(rng.randint(1, 300))
            if not chunk:
                break
            out += chunk
        assert bytes(out) == data


def test_b1_through_the_parser_body_split_from_head(pair):
    peer, ours = pair
    pkt = request_packet(method="POST", body=BODY)
    peer.sendall(pkt[: len(pkt) - len(BODY) + 3])
    req = next(UWSGIParser(Config(), ours, ("127.0.0.1", 1)))
    peer.sendall(pkt[len(pkt) - len(BODY) + 3 :] + b"JUNK")
    assert req.body.read() == BODY
    assert req.body.read() == b""


# -- B2: the file API ------------------------------------------------------------------------


def test_b2_read_n(pair):
    body = body_over(pair, BODY[:4], BODY[4:], len(BODY))
    assert body.read(0) == b""
    assert body.read(3) == BODY[:3]
    assert body.read(5) == BODY[3:8]
    assert body.read(1000) == BODY[8:]
    assert body.read(1) == b""


def test_b2_read_minus_one_and_none(pair):
    body = body_over(pair, b"", BODY, len(BODY))
    assert body.read(-1) == BODY
    body = Body(None, BODY, len(BODY))
    assert body.read(None) == BODY
    assert body.read(None) == b""


def test_b2_read_n_blocks_until_n_bytes_or_end(pair):
    peer, ours = pair
    peer.sendall(b"ab")
    body = Body(ours, b"", 6)
    peer.sendall(b"cd")
    peer.sendall(b"ef")
    assert body.read(5) == b"abcde"
    assert body.read(5) == b"f"


def test_b2_readline(pair):
    body = body_over(pair, BODY[:3], BODY[3:], len(BODY))
    assert body.readline() == b"line one\n"
    assert body.readline() == b"line two\n"
    assert body.readline() == b"\n"
    assert body.readline() == b"last line without newline"
    assert body.readline() == b""


def test_b2_readline_n(pair):
    body = body_over(pair, b"", BODY, len(BODY))
    assert body.readline(4) == b"line"
    assert body.readline(0) == b""
    assert body.readline(100) == b" one\n"
    assert body.readline(9) == b"line two\n"
    assert body.readline(-1) == b"\n"
    assert body.readline(None) == b"last line without newline"


class TrickleSock:
    """Our socket, but every recv returns at most ``step`` bytes (tiny TCP segments)."""

    def __init__(self, sock: socket.socket, step: int) -> None:
        self.sock = sock
        self.step = step

    def recv(self, size: int) -> bytes:
        return self.sock.recv(min(size, self.step))


@pytest.mark.parametrize("step", [1, 2, 7, 64])
def test_b1_b2_readline_across_tiny_segments(pair, step):
    peer, ours = pair
    data = b"x" * 100 + b"\n" + b"y" * 3000 + b"\n\nz"
    peer.sendall(data[10:] + b"AFTER\n")
    body = Body(TrickleSock(ours, step), data[:10], len(data))
    assert body.readline() == b"x" * 100 + b"\n"
    assert body.readline(1000) == b"y" * 1000
    assert body.readline() == b"y" * 2000 + b"\n"
    assert list(body) == [b"\n", b"z"]
    assert body.read() == b""


@pytest.mark.parametrize("step", [1, 3, 100])
def test_b1_read_across_tiny_segments(pair, step):
    peer, ours = pair
    peer.sendall(BODY + b"AFTER")
    body = Body(TrickleSock(ours, step), b"", len(BODY))
    assert body.read(len(BODY) - 1) == BODY[:-1]
    assert body.read() == BODY[-1:]
    assert body.read() == b""


def test_b2_readlines(pair):
    body = body_over(pair, BODY[:10], BODY[10:], len(BODY))
    assert body.readlines() == [
        b"line one\n",
        b"line two\n",
        b"\n",
        b"last line without newline",
    ]
    assert body.readlines() == []


def test_b2_readlines_hint(pair):
    body = body_over(pair, b"", BODY, len(BODY))
    assert body.readlines(5) == [b"line one\n"]
    assert body.readlines(-1) == [b"line two\n", b"\n", b"last line without newline"]


def test_b2_iteration(pair):
    body = body_over(pair, b"", BODY, len(BODY))
    assert iter(body) is body
    assert list(body) == [b"line one\n", b"line two\n", b"\n", b"last line without newline"]
    assert list(body) == []


def test_b2_mixed_calls(pair):
    body = body_over(pair, BODY[:12], BODY[12:], len(BODY))
    assert body.read(2) == b"li"
    assert body.readline() == b"ne one\n"
    assert next(body) == b"line two\n"
    assert body.read(1) == b"\n"
    assert body.read() == b"last line without newline"


def test_b2_read_size_must_be_int(pair):
    body = Body(None, BODY, len(BODY))
    with pytest.raises(TypeError):
        body.read(1.5)


# -- B2: laziness ----------------------------------------------------------------------------


def test_b2_body_does_not_read_the_socket_until_asked(pair):
    peer, ours = pair
    rec = RecordingSock(ours)
    peer.sendall(BODY[5:])
    body = Body(rec, BODY[:5], len(BODY))
    assert rec.recvs == []
    # Buffered bytes are served without touching the socket.
    assert body.read(5) == BODY[:5]
    assert rec.recvs == []
    assert body.read(3) == BODY[5:8]
    assert rec.recvs, "the rest had to be read from the socket"
    # Never asks for more than is left of the body.
    assert all(n <= len(BODY) - 5 for n in rec.recvs)
    assert body.read() == BODY[8:]


def test_b2_parser_does_not_read_the_body_for_the_app(pair):
    peer, ours = pair
    rec = RecordingSock(ours)
    body = b"B" * 10_000
    pkt = request_packet(method="POST", body=body)
    head = pkt[: len(pkt) - len(body)]
    peer.sendall(head)
    req = next(UWSGIParser(Config(), rec, ("127.0.0.1", 1)))
    reads = len(rec.recvs)
    # Nothing of the body has been sent; the request is still complete as a head.
    assert req.body.complete is False
    peer.sendall(body)
    assert len(rec.recvs) == reads
    assert req.body.read() == body


# -- B3: truncated uploads -------------------------------------------------------------------


@pytest.mark.parametrize("sent", [0, 1, len(BODY) - 1])
def test_b3_eof_before_content_length_raises(pair, sent):
    body = body_over(pair, b"", BODY[:sent], len(BODY), close=True)
    with pytest.raises(errors.ClientDisconnected) as info:
        body.read()
    e = info.value
    assert isinstance(e, OSError)
    assert isinstance(e, ConnectionError)
    assert "client disconnected" in str(e)
    assert (e.received, e.expected) == (sent, len(BODY))


def test_b3_reset_before_content_length_raises_the_same_error():
    """A peer that resets the connection mid-body is a disconnect with the counts too."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
        with ours:
            peer.sendall(BODY[:5])
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
            time.sleep(0.05)
            body = Body(ours, b"", len(BODY))
            with pytest.raises(errors.ClientDisconnected) as info:
                body.read()
    e = info.value
    assert isinstance(e, ConnectionResetError)
    assert e.reset is True
    assert e.received <= 5 and e.expected == len(BODY)
    assert "connection reset" in str(e) and "body bytes received" in str(e)


def test_b3_eof_with_part_in_the_initial_buffer(pair):
    body = body_over(pair, BODY[:5], BODY[5:10], len(BODY), close=True)
    with pytest.raises(errors.ClientDisconnected) as info:
        body.read()
    assert (info.value.received, info.value.expected) == (10, len(BODY))


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.read(),
        lambda b: b.read(-1),
        lambda b: b.read(100),
        lambda b: b.readline(),
        lambda b: b.readline(1000),
        lambda b: b.readlines(),
        lambda b: list(b),
    ],
    ids=["read", "read-1", "read-n", "readline", "readline-n", "readlines", "iter"],
)
def test_b3_every_reader_reports_the_truncation(pair, call):
    data = b"no newline here"
    body = body_over(pair, b"", data, len(data) + 10, close=True)
    with pytest.raises(errors.ClientDisconnected):
        call(body)


def test_b3_bytes_before_the_eof_are_still_readable_in_small_pieces(pair):
    body = body_over(pair, b"", BODY[:5], len(BODY), close=True)
    assert body.read(5) == BODY[:5]
    with pytest.raises(errors.ClientDisconnected):
        body.read(1)


def test_f8_stalled_body_raises_peer_timeout():
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(0.05)
        a.sendall(b"abc")
        body = Body(b, b"", 10, timeout=0.05)
        with pytest.raises(errors.PeerTimeout) as info:
            body.read()
        assert isinstance(info.value, TimeoutError)
