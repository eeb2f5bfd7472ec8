"""WebSocket over ``uwsgi_pass`` with ``gunicorn_uwsgi.ASGIWorker`` (spec section W, and the S2
scope rules it builds on).

- Through a real nginx (the stock ``include uwsgi_params;``, nothing configured for
  websockets) with the ``websockets`` library: text, bytes, 1 MiB, fragmented messages,
  ping/pong, subprotocols, close codes both ways, permessage-deflate on and off, the scope,
  the 403 of a refused handshake and the ``websocket.http.response`` denial, 1 000 websockets
  at once on one worker, an idle connection outliving ``uwsgi_read_timeout`` thanks to the
  server's pings.
- Raw frames on the worker's own socket (a uwsgi packet of an upgrade request, the 101, then
  frames built here, masked by hand): every W3 violation and its close code, the close
  handshake, pings, a peer that vanishes or stops answering pings, back-pressure (W6), bad
  handshakes (400).
- Starlette, FastAPI and Django Channels websocket routes behind nginx.

The shared server (``apps.ws_apps:app``) runs once per event loop, as in tests/test_asgi.py;
the keep-alive and message-size tests share a second pair of servers started with
``GUNICORN_UWSGI_WEBSOCKET_PING=1`` (and ``=0``) and ``--websocket-max-message-size 1024``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import LogMark, rss_kib
from test_asgi import (
    LOOPS,
    OTHER_CLIENT,
    asgi_server,
    loop_args,
    new_name,
    require_loop,
    wait_marker,
)
from test_frameworks import require_module

from support import (
    Address,
    Gunicorn,
    Nginx,
    Reply,
    _gunicorn_has,
    connect,
    free_port,
    nginx_vars,
    packet,
    read_all,
    vector,
    wait_until,
)

APP = "apps.ws_apps:app"
#: The key of RFC 6455 §1.3 and its accept value.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Sockets, worker-side file descriptors and nginx connections for the 1 000-websocket test.
WORKER_CONNECTIONS = 2000
NGINX_CONNECTIONS = 4096
#: The largest message of the keep-alive server (``--websocket-max-message-size``).
SMALL_MAX = 1024

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10


# -- frames, built and read by hand ------------------------------------------------------------


def mask(data: bytes, key: bytes) -> bytes:
    """``data`` XOR the 4-byte ``key`` repeated (RFC 6455 §5.3), as one big-int XOR."""
    n = len(data)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(
    opcode: int,
    payload: bytes | str = b"",
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    key: bytes | None = None,
) -> bytes:
    """One client frame: FIN, the RSV bits, the opcode, the length in its shortest form, and
    the payload masked with ``key`` (random by default) unless ``masked`` is false."""
    data = payload.encode() if isinstance(payload, str) else payload
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if masked else 0
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not masked:
        return head + data
    key = key if key is not None else os.urandom(4)
    return head + key + mask(data, key)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def deflate_message(data: bytes | str) -> bytes:
    """``data`` compressed as one permessage-deflate message without context takeover (RFC
    7692 §7.2.1: a sync flush, its empty stored block removed)."""
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data.encode() if isinstance(data, str) else data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


@dataclass
class Frame:
    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes

    def close_code(self) -> int | None:
        assert self.opcode == CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0] if self.payload else None

    def close_reason(self) -> str:
        return self.payload[2:].decode()


class Peer:
    """A raw websocket client on a worker socket: the 101 it got, then frames both ways.
    The server's keep-alive pings are skipped (not answered) unless asked for."""

    def __init__(self, sock: socket.socket, reply: Reply, rest: bytes) -> None:
        self.sock = sock
        self.reply = reply
        self.buf = bytearray(rest)
        self.inflater: Any = None
        if (reply.header("Sec-WebSocket-Extensions") or "").startswith("permessage-deflate"):
            self.inflater = zlib.decompressobj(wbits=-15)

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(f"EOF with {len(self.buf)} bytes buffered: {bytes(self.buf[:64])!r}")
            self.buf += chunk

    def frame(self, timeout: float = 10.0, pings: bool = False) -> Frame:
        """The next server frame (which must not be masked)."""
        self.sock.settimeout(timeout)
        while True:
            self._need(2)
            first, second = self.buf[0], self.buf[1]
            assert not second & 0x80, "a server frame is masked"
            n, at = second & 0x7F, 2
            if n == 126:
                self._need(4)
                n, at = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10)
                n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
            self._need(at + n)
            payload = bytes(self.buf[at : at + n])
            del self.buf[: at + n]
            f = Frame(bool(first & 0x80), bool(first & RSV1), first & 0x0F, payload)
            assert not first & (RSV2 | RSV3), f
            if f.opcode == PING and not pings:
                continue
            return f

    def message(self, timeout: float = 10.0) -> tuple[int, bytes]:
        """The next data message, reassembled and inflated: (opcode, payload)."""
        first = self.frame(timeout)
        assert first.opcode in (TEXT, BINARY), first
        parts, last = [first.payload], first
        while not last.fin:
            last = self.frame(timeout)
            assert last.opcode == CONT, last
            parts.append(last.payload)
        data = b"".join(parts)
        if first.rsv1:
            assert self.inflater is not None, "a compressed frame without permessage-deflate"
            data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
        return first.opcode, data

    def text(self, timeout: float = 10.0) -> str:
        opcode, data = self.message(timeout)
        assert opcode == TEXT
        return data.decode()

    def close_frame(self, timeout: float = 10.0) -> Frame:
        """Reads past data frames to the server's close frame."""
        while True:
            f = self.frame(timeout)
            if f.opcode == CLOSE:
                return f

    def eof(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout`` (nothing more than
        what is already buffered may come first)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def upgrade_headers(
    key: str | None = KEY,
    version: str | None = "13",
    upgrade: str | None = "websocket",
    connection: str | None = "Upgrade",
    protocols: str | None = None,
    extensions: str | None = None,
) -> list[tuple[str, str]]:
    pairs = [
        ("Upgrade", upgrade),
        ("Connection", connection),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", version),
        ("Sec-WebSocket-Protocol", protocols),
        ("Sec-WebSocket-Extensions", extensions),
    ]
    return [(k, v) for k, v in pairs if v is not None]


def upgrade_packet(
    path: str = "/echo", query: str = "", method: str = "GET", **headers: Any
) -> bytes:
    """The uwsgi packet nginx sends for a websocket upgrade request."""
    return packet(
        nginx_vars(method=method, path=path, query=query, headers=upgrade_headers(**headers))
    )


def read_head(s: socket.socket) -> bytes:
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def open_raw(address: Address, data: bytes | None = None, **kw: Any) -> Peer:
    """Sends an upgrade packet (``data``, else ``upgrade_packet(**kw)``), checks the 101."""
    s = connect(address)
    try:
        s.sendall(data if data is not None else upgrade_packet(**kw))
        reply = Reply(read_head(s))
        assert reply.status == 101, reply
    except BaseException:
        s.close()
        raise
    return Peer(s, reply, reply.body)


def accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


# -- servers -----------------------------------------------------------------------------------


def ws_nginx(tmp: Path, upstream: str, locations: str = "") -> Nginx:
    """nginx in front of ``upstream`` with the stock ``uwsgi_params``, plus a second server
    (``https_port``) that sets ``uwsgi_param HTTPS on`` as a TLS-terminating nginx would;
    ``worker_connections`` raised for the 1 000-websocket test."""
    https_port = free_port()
    https_server = f"""
    server {{
        listen 127.0.0.1:{https_port};
        server_name localhost;
        location / {{ include uwsgi_params; uwsgi_param HTTPS on; uwsgi_pass {upstream}; }}
    }}
    """
    n = Nginx(tmp, upstream, locations=locations, http_extra=https_server)
    conf = n.conf.read_text()
    assert "worker_connections 256;" in conf
    n.conf.write_text(
        conf.replace("worker_connections 256;", f"worker_connections {NGINX_CONNECTIONS};")
    )
    n.https_port = https_port  # type: ignore[attr-defined]
    return n


@dataclass
class Front:
    """nginx (``port``, and ``https_port`` with HTTPS on) in front of ``gunicorn``."""

    gunicorn: Gunicorn
    nginx: Nginx
    extra: dict[str, Gunicorn] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.nginx.port

    @property
    def https_port(self) -> int:
        return self.nginx.https_port  # type: ignore[attr-defined]

    def socket(self, https: bool = False, source: str | None = None) -> socket.socket:
        """A TCP connection to nginx (the HTTPS-on server with ``https``), from ``source``."""
        port = self.https_port if https else self.port
        return socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0) if source else None
        )

    def ws(
        self,
        target: str,
        https: bool = False,
        source: str | None = None,
        sock: socket.socket | None = None,
        **kw: Any,
    ) -> Any:
        """A ``websockets`` sync client through nginx (on ``sock``, else a new connection
        from ``source``)."""
        from websockets.sync.client import connect as ws_connect

        port = self.https_port if https else self.port
        sock = sock or self.socket(https, source)
        kw.setdefault("max_size", 32 << 20)
        kw.setdefault("ping_interval", None)
        kw.setdefault("close_timeout", 5)
        kw.setdefault("open_timeout", 10)
        return ws_connect(f"ws://127.0.0.1:{port}{target}", sock=sock, **kw)

    def host(self, port: int) -> str:
        """The Host an application sees for a client of ``127.0.0.1:port``: nginx passes the
        client's, unless ``uwsgi_params`` sets ``HTTP_HOST $host`` (Debian's security update
        of the stock file does), which has no port."""
        params = (self.nginx.prefix / "conf" / "uwsgi_params").read_text()
        if re.search(r"^\s*uwsgi_param\s+HTTP_HOST\s+\$host\s*;", params, re.M):
            return "127.0.0.1"
        return f"127.0.0.1:{port}"

    def access_line(self, tag: str, timeout: float = 10.0) -> str:
        """nginx's access log line of the request whose target holds ``tag``."""
        path = self.nginx.prefix / "logs" / "access.log"

        def line() -> str | None:
            text = path.read_text() if path.exists() else ""
            return next((x for x in text.splitlines() if tag in x), None)

        assert wait_until(lambda: line() is not None, timeout=timeout), f"no log line for {tag}"
        return line()  # type: ignore[return-value]


@pytest.fixture(scope="module", params=LOOPS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """The shared server: one ASGIWorker serving ``apps.ws_apps:app`` on 127.0.0.1 and a unix
    socket, on the event loop of the parameter, room for 2 000 connections."""
    loop = request.param
    require_loop(loop)
    tmp = tmp_path_factory.mktemp(f"ws-{loop}")
    args = [*loop_args(loop), "--worker-connections", str(WORKER_CONNECTIONS)]
    g = asgi_server(tmp, app=APP, args=args)
    g.loop = loop  # type: ignore[attr-defined]
    with g:
        yield g


@pytest.fixture(scope="module")
def proxy(server: Gunicorn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """nginx in front of the shared server's unix socket."""
    require_module("websockets")
    tmp = tmp_path_factory.mktemp(f"ws-nginx-{server.loop}")  # type: ignore[attr-defined]
    with ws_nginx(tmp, f"unix:{server.unix}") as n:
        yield Front(server, n)


@pytest.fixture(scope="module")
def pinged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """Two servers behind one nginx whose ``/t3/`` and ``/t3-noping/`` locations have
    ``uwsgi_read_timeout 3s``: ``gunicorn`` pings every second
    (``GUNICORN_UWSGI_WEBSOCKET_PING=1``) and takes messages of at most 1 KiB where gunicorn
    has ``websocket_max_message_size``; ``extra["noping"]`` never pings (``=0``)."""
    require_module("websockets")
    tmp = tmp_path_factory.mktemp("ws-ping")
    (tmp / "noping").mkdir()
    size = ["--websocket-max-message-size", str(SMALL_MAX)]
    args = size if _gunicorn_has("websocket_max_message_size") else []
    pinging = asgi_server(tmp, app=APP, args=args, env={"GUNICORN_UWSGI_WEBSOCKET_PING": "1"})
    silent = asgi_server(tmp / "noping", app=APP, env={"GUNICORN_UWSGI_WEBSOCKET_PING": "0"})
    locations = f"""
        location /t3/ {{
            include uwsgi_params; uwsgi_read_timeout 3s; uwsgi_pass unix:{pinging.unix};
        }}
        location /t3-noping/ {{
            include uwsgi_params; uwsgi_read_timeout 3s; uwsgi_pass unix:{silent.unix};
        }}
    """
    pinging.start(wait=False)
    silent.start(wait=False)
    try:
        pinging.wait_ready()
        silent.wait_ready()
        with ws_nginx(tmp, f"unix:{pinging.unix}", locations) as n:
            yield Front(pinging, n, {"noping": silent})
    finally:
        pinging.stop()
        silent.stop()


def require_max_message_size() -> None:
    if not _gunicorn_has("websocket_max_message_size"):
        pytest.skip("this gunicorn has no websocket_max_message_size setting (>= 26.3)")


def worker_is_healthy(g: Gunicorn, pids: Sequence[int], mark: LogMark) -> None:
    """The same worker still runs, serves a websocket and logged no traceback since
    ``mark``."""
    assert g.live_worker_pids() == list(pids), g.log()[-3000:]
    peer = open_raw(g.unix)
    peer.send(frame(TEXT, "alive?"))
    assert peer.text() == "alive?"
    peer.close()
    assert "Traceback" not in mark.new(), mark.new()[-5000:]


# -- through nginx with the websockets library -------------------------------------------------


@pytest.mark.nginx
def test_w2_echo_text_and_binary(proxy):
    """W2/W3: through nginx (stock params), text comes back as text, bytes as bytes."""
    with proxy.ws("/echo") as ws:
        for message in ["hello", "héllo wörld ✓", b"\x00\xff\x10", "again"]:
            ws.send(message)
            got = ws.recv(timeout=10)
            assert got == message and type(got) is type(message)


@pytest.mark.nginx
@pytest.mark.parametrize("compression", ["deflate", None])
def test_w4_empty_messages_between_others(proxy, compression):
    """W3/W4: empty text and binary messages echo, and the messages after them still
    decode, with and without permessage-deflate (an empty compressed message is the single
    byte 00, RFC 7692 §7.2.3.6: with context takeover an empty sync flush is no bytes at
    all, which the client's inflater cannot read)."""
    with proxy.ws("/echo", compression=compression) as ws:
        for message in ["first", "", "after empty text", b"", b"after empty bytes"]:
            ws.send(message)
            got = ws.recv(timeout=10)
            assert got == message and type(got) is type(message)


@pytest.mark.nginx
def test_w3_one_mib_messages(proxy):
    """W3: 1 MiB binary and text messages (in frames far bigger than nginx's buffer) echo
    whole."""
    data = os.urandom(1 << 20)
    text = ("ab✓" * 400_000)[: 1 << 20]
    with proxy.ws("/echo") as ws:
        ws.send(data)
        assert ws.recv(timeout=30) == data
        ws.send(text)
        assert ws.recv(timeout=30) == text


@pytest.mark.nginx
def test_w3_fragmented_messages_reassembled(proxy):
    """W3: a text message in three fragments (a multi-byte character among them) and a binary
    one in two reach the application whole."""
    with proxy.ws("/echo") as ws:
        ws.send(["frag1 ", "frag2 ", "é✓"])
        assert ws.recv(timeout=10) == "frag1 frag2 é✓"
        ws.send([b"\x01" * 1000, b"\x02" * 70000])
        assert ws.recv(timeout=10) == b"\x01" * 1000 + b"\x02" * 70000


@pytest.mark.nginx
def test_w3_ping_answered_with_pong(proxy):
    """W3: the client's pings (with and without payload) get pongs with the same payload
    (``websockets`` only completes a ping on a matching pong)."""
    with proxy.ws("/echo") as ws:
        for payload in [b"payload", b"", os.urandom(125)]:
            pong = ws.ping(payload)
            assert pong.wait(5), payload
        ws.send("after pings")
        assert ws.recv(timeout=10) == "after pings"


@pytest.mark.nginx
@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["superchat", "chat"], "superchat"), (["chat"], "chat"), (["mqtt"], None), (None, None)],
)
def test_w1_w2_subprotocols(proxy, offered, chosen):
    """W1/W2: the application picks from the offered subprotocols (the first it knows): the
    101 names it; none known or none offered → no Sec-WebSocket-Protocol header."""
    with proxy.ws("/echo", subprotocols=offered) as ws:
        assert ws.subprotocol == chosen
        assert ws.response.headers.get("Sec-WebSocket-Protocol") == chosen
        ws.send("x")
        assert ws.recv(timeout=10) == "x"


@pytest.mark.nginx
def test_w5_client_close_code_reaches_the_app(proxy):
    """W3/W5: the client closes with 4001: the server answers with 4001, the application
    gets ``websocket.disconnect`` with code 4001."""
    name = new_name()
    with proxy.ws(f"/echo?marker={name}") as ws:
        ws.send("one")
        assert ws.recv(timeout=10) == "one"
        ws.close(4001, "client bye")
        assert ws.close_code == 4001
    got = wait_marker(proxy.gunicorn, name)
    assert got["code"] == 4001 and got["received"] == 1, got


@pytest.mark.nginx
def test_w3_app_close_code_reaches_the_client(proxy):
    """W3/W5: the application closes with 4002 and a reason: the client gets both, and the
    application's ``receive()`` after its close gets ``websocket.disconnect`` 4002."""
    from websockets.exceptions import ConnectionClosed

    name = new_name()
    with proxy.ws(f"/close?code=4002&reason=server%20bye&wait=1&marker={name}") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4002, "server bye")
    got = wait_marker(proxy.gunicorn, name)
    assert got["code"] == 4002, got


def _sent_bytes(line: str) -> int:
    """$body_bytes_sent of a combined-format access log line."""
    m = re.search(r'" (\d{3}) (\d+) "', line)
    assert m, line
    assert m.group(1) == "101", line
    return int(m.group(2))


@pytest.mark.nginx
def test_w4_permessage_deflate_on(proxy):
    """W4: a client offering permessage-deflate gets it in the 101, and what the server sends
    is compressed: 1 MiB of one letter costs the client a few KiB (nginx's byte count)."""
    tag = new_name()
    with proxy.ws(f"/echo?tag={tag}") as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert ext is not None and ext.split(";")[0].strip() == "permessage-deflate", ext
        for _ in range(3):
            ws.send("a" * (1 << 20))
            assert ws.recv(timeout=30) == "a" * (1 << 20)
    assert _sent_bytes(proxy.access_line(tag)) < 64 * 1024


@pytest.mark.nginx
def test_w4_permessage_deflate_off(proxy):
    """W4: a client that offers no extension gets none (no Sec-WebSocket-Extensions), and the
    server's frames are not compressed."""
    tag = new_name()
    with proxy.ws(f"/echo?tag={tag}", compression=None) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send("a" * (1 << 20))
        assert ws.recv(timeout=30) == "a" * (1 << 20)
    assert _sent_bytes(proxy.access_line(tag)) > 1 << 20


@pytest.mark.nginx
def test_w4_permessage_deflate_parameters(proxy):
    """W4: the window and context-takeover parameters the client asks for are agreed in the
    101 and honoured (several messages each way decompress)."""
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=12,
    )
    with proxy.ws("/echo", extensions=[factory], compression=None) as ws:
        ext = ws.response.headers["Sec-WebSocket-Extensions"]
        params = {p.strip() for p in ext.split(";")}
        assert params >= {
            "permessage-deflate",
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits=10",
        }, ext
        for i in range(5):
            message = f"message {i} " * 500
            ws.send(message)
            assert ws.recv(timeout=10) == message


def _scope(ws: Any) -> dict:
    return json.loads(ws.recv(timeout=10))


@pytest.mark.nginx
def test_w1_s2_scope_through_nginx(proxy):
    """W1/S2: the websocket scope as nginx's vars give it: type websocket, scheme ws,
    http_version, path, raw_path, query_string, the client's headers (upgrade ones too), no
    method, client = the real client (127.0.0.2 and its port), server = nginx's name and port,
    the offered subprotocols, the denial extension."""
    sock = proxy.socket(source=OTHER_CLIENT)
    local_port = sock.getsockname()[1]
    with proxy.ws(
        "/ws/scope?x=1&y=two%20words",
        sock=sock,
        subprotocols=["chat", "superchat"],
        additional_headers={"X-Trace": "t1"},
    ) as ws:
        s = _scope(ws)
    assert s["type"] == "websocket"
    assert s["asgi"]["version"] == "3.0"
    assert s["scheme"] == "ws"
    assert s["http_version"] == "1.1"
    assert "method" not in s
    assert s["path"] == "/ws/scope"
    assert s["raw_path"] == "/ws/scope"
    assert s["query_string"] == "x=1&y=two%20words"
    assert s["root_path"] == ""
    assert s["client"] == [OTHER_CLIENT, local_port]
    assert s["server"] == ["localhost", proxy.port]
    assert s["subprotocols"] == ["chat", "superchat"]
    assert "websocket.http.response" in s.get("extensions", {})
    headers = dict(s["headers"])
    assert headers["x-trace"] == "t1"
    assert headers["host"] == proxy.host(proxy.port)
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    assert headers["sec-websocket-version"] == "13"
    assert headers["sec-websocket-protocol"] == "chat, superchat"
    assert "permessage-deflate" in headers["sec-websocket-extensions"]
    assert "content-type" not in headers and "content-length" not in headers
    assert all(k == k.lower() for k, _ in s["headers"])


@pytest.mark.nginx
def test_w1_s2_scheme_wss_with_https_on(proxy):
    """W1/S2/E7: behind a TLS-terminating nginx (``uwsgi_param HTTPS on``) the scheme is
    wss."""
    with proxy.ws("/scope", https=True) as ws:
        assert _scope(ws)["scheme"] == "wss"


@pytest.mark.nginx
@pytest.mark.parametrize("route", ["/deny", "/deny-return"])
def test_w2_closed_before_accept_is_403(proxy, route):
    """W2: an application that closes (or returns) before accepting refuses the handshake:
    the client gets HTTP 403, the worker logs no error."""
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        proxy.ws(route)
    assert info.value.response.status_code == 403


@pytest.mark.nginx
def test_w2_denial_response_extension(proxy):
    """W2: ``websocket.http.response.start``/``body`` (in two parts) instead of the accept:
    the client gets that 401, its headers and its body."""
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        proxy.ws("/deny-response")
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ws"'
    assert response.body == b"no entry"


@pytest.mark.nginx
def test_w1_bad_handshake_through_nginx_is_400(proxy):
    """W1: through nginx a version 12 upgrade gets 400 (naming version 13); a plain GET to a
    websocket path is an ordinary HTTP request."""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "12",
    }
    status, _, body = proxy.nginx.request("GET", "/echo", headers=headers)
    assert status == 400
    assert b"13" in body
    status, _, body = proxy.nginx.request("GET", "/echo")
    assert (status, body) == (200, b"http /echo")


@pytest.mark.nginx
def test_w_s6_1000_concurrent_websockets_on_one_worker(proxy):
    """W/S6: 1 000 websockets open at once through nginx on one worker: all connect, each
    echoes its own message while the others are open, all close, in well under 60 s; the
    worker is the same process afterwards and still serves."""
    from websockets.asyncio.client import connect as aconnect

    g = proxy.gunicorn
    pids = g.live_worker_pids()
    mark = LogMark(g)
    count = 1000
    uri = f"ws://127.0.0.1:{proxy.port}/echo"

    async def run() -> list[str]:
        sem = asyncio.Semaphore(200)  # handshakes in flight at once, not connections

        async def open_one() -> Any:
            async with sem:
                return await aconnect(uri, ping_interval=None, open_timeout=30, proxy=None)

        conns = await asyncio.gather(*(open_one() for _ in range(count)))
        try:
            for i, c in enumerate(conns):
                await c.send(f"hello {i}")
            return list(await asyncio.gather(*(c.recv() for c in conns)))
        finally:
            await asyncio.gather(*(c.close() for c in conns))

    start = time.monotonic()
    got = asyncio.run(asyncio.wait_for(run(), timeout=60))
    took = time.monotonic() - start
    assert got == [f"hello {i}" for i in range(count)]
    assert took < 60, took
    worker_is_healthy(g, pids, mark)


# -- raw frames on the worker's socket ----------------------------------------------------------


def test_w1_w2_w4_nginx_vector(server):
    """W1/W2/W4: the upgrade request nginx 1.22 really sends (``nginx-websocket-upgrade.bin``:
    GET /chat?room=1, the RFC 6455 sample key, subprotocols chat and superchat,
    permessage-deflate offered): 101 with Upgrade, Connection, the RFC's accept value, the
    chosen subprotocol and permessage-deflate; a compressed and a plain text message both
    echo, the server's answers compressed; close 1000 is answered with 1000."""
    peer = open_raw(server.unix, vector("nginx-websocket-upgrade.bin"))
    r = peer.reply
    assert r.status_line == "HTTP/1.1 101 Switching Protocols"
    assert r.header("Upgrade").lower() == "websocket"
    assert r.header("Connection").lower() == "upgrade"
    assert r.header("Sec-WebSocket-Accept") == ACCEPT
    assert r.header("Sec-WebSocket-Protocol") == "chat"
    assert r.header("Sec-WebSocket-Extensions").split(";")[0] == "permessage-deflate"
    assert r.header("Content-Length") is None and r.header("Transfer-Encoding") is None
    peer.send(frame(TEXT, deflate_message("compressed " * 100), rsv=RSV1))
    first = peer.frame()
    assert first.rsv1, "the server's message is not compressed"
    data = peer.inflater.decompress(first.payload + b"\x00\x00\xff\xff")
    assert data == b"compressed " * 100
    peer.send(frame(TEXT, "plain"))
    assert peer.text() == "plain"
    peer.send(frame(CLOSE, close_payload(1000)))
    assert peer.close_frame().close_code() == 1000
    assert peer.eof()


def test_w4_empty_message_after_a_compressed_one_raw(server):
    """W4 (RFC 7692 §7.2.3.6): with context takeover, the server's empty message after a
    compressed one must still be inflatable (the single byte 00, not an empty payload), so
    that the messages after it decode."""
    peer = open_raw(server.unix, extensions="permessage-deflate")
    for text in ["hello", "", "hello again", "", "", "third"]:
        peer.send(frame(TEXT, text))
        f = peer.frame()
        assert f.opcode == TEXT and f.rsv1, f
        assert f.payload != b"", "an empty message after a compressed one went out as no bytes"
        assert peer.inflater.decompress(f.payload + b"\x00\x00\xff\xff") == text.encode()
    peer.close()


def test_w1_upgrade_tokens_in_any_case(server):
    """W1: ``Upgrade: WebSocket`` and ``Connection: keep-alive, Upgrade`` are an upgrade; the
    accept value is computed from the client's key."""
    key = base64.b64encode(os.urandom(16)).decode()
    peer = open_raw(server.unix, key=key, upgrade="WebSocket", connection="keep-alive, Upgrade")
    assert peer.reply.header("Sec-WebSocket-Accept") == accept_value(key)
    assert peer.reply.header("Sec-WebSocket-Extensions") is None
    peer.send(frame(BINARY, b"\x00\x01"))
    assert peer.message() == (BINARY, b"\x00\x01")
    peer.close()


def test_w2_accept_headers_in_the_101(server):
    """W2: the headers of ``websocket.accept`` are in the 101 (after the handshake's own)."""
    peer = open_raw(server.unix, path="/accept-headers")
    assert peer.reply.header("X-Accepted") == "yes"
    assert peer.reply.header("Set-Cookie") == "ws=1; Path=/"
    assert peer.reply.header("Sec-WebSocket-Accept") == ACCEPT
    peer.close()


def test_w2_r1_bad_accept_header_is_500(server):
    """W2/R1: a header value with a line feed in ``websocket.accept`` is refused before
    anything is sent: 500, no 101, nothing malformed on the wire; the error is logged with
    its request (X2)."""
    mark = LogMark(server)
    raw = read_all_from(server.unix, upgrade_packet(path="/bad-accept-header"))
    reply = Reply(raw)
    assert reply.status == 500, reply
    assert b"feed" not in raw and b"101" not in raw.split(b"\r\n", 1)[0]
    mark.wait_for(r"\[ERROR\] Error handling request GET /bad-accept-header")
    assert "InvalidResponseHeader" in mark.new()


def read_all_from(address: Address, data: bytes, timeout: float = 10.0) -> bytes:
    with connect(address, timeout) as s:
        s.sendall(data)
        return read_all(s)


@pytest.mark.parametrize("route", ["/deny", "/deny-return"])
def test_w2_closed_before_accept_is_403_raw(server, route):
    """W2: refused handshakes answer 403 with no Upgrade header, and the connection closes;
    nothing is logged above INFO (the application did nothing wrong)."""
    mark = LogMark(server)
    reply = Reply(read_all_from(server.unix, upgrade_packet(path=route)))
    assert reply.status == 403, reply
    assert reply.header("Upgrade") is None and reply.header("Sec-WebSocket-Accept") is None
    time.sleep(0.1)
    assert not mark.lines("ERROR") and not mark.lines("WARNING"), mark.new()


def test_w2_denial_response_raw(server):
    """W2: the denial response on the wire: the application's 401, its headers, its body in
    one piece after two ``websocket.http.response.body`` messages."""
    reply = Reply(read_all_from(server.unix, upgrade_packet(path="/deny-response")))
    assert reply.status == 401, reply
    assert reply.header("WWW-Authenticate") == 'Bearer realm="ws"'
    assert reply.header("Content-Length") == "8"
    assert reply.body == b"no entry"
    assert reply.header("Sec-WebSocket-Accept") is None


#: W3 violations: the frames a client sends after the 101, and the close code it must get.
VIOLATIONS: dict[str, tuple[list[bytes], int]] = {
    "unmasked_text": ([frame(TEXT, "hi", masked=False)], 1002),
    "unmasked_ping": ([frame(PING, b"p", masked=False)], 1002),
    "rsv1_without_deflate": ([frame(TEXT, "hi", rsv=RSV1)], 1002),
    "rsv2": ([frame(TEXT, "hi", rsv=RSV2)], 1002),
    "rsv3": ([frame(BINARY, b"hi", rsv=RSV3)], 1002),
    "reserved_data_opcode_3": ([frame(0x3, b"x")], 1002),
    "reserved_control_opcode_b": ([frame(0xB, b"x")], 1002),
    "ping_over_125_bytes": ([frame(PING, b"p" * 126)], 1002),
    "close_over_125_bytes": ([frame(CLOSE, close_payload(1000, b"r" * 124))], 1002),
    "fragmented_ping": ([frame(PING, b"p", fin=False)], 1002),
    "continuation_without_start": ([frame(CONT, b"x")], 1002),
    "new_message_inside_fragmented": (
        [frame(TEXT, "a", fin=False), frame(TEXT, "b")],
        1002,
    ),
    "invalid_utf8_text": ([frame(TEXT, b"ok \xff")], 1007),
    "invalid_utf8_in_second_fragment": (
        [frame(TEXT, b"valid ", fin=False), frame(CONT, b"\xc3\x28")],
        1007,
    ),
    # The bad byte is in the first fragment: failed at once, before the message completes.
    "invalid_utf8_before_the_message_completes": ([frame(TEXT, b"\xff", fin=False)], 1007),
    "overlong_utf8": ([frame(TEXT, b"\xc0\xaf")], 1007),
    "utf16_surrogate": ([frame(TEXT, b"\xed\xa0\x80")], 1007),
    "close_one_byte_payload": ([frame(CLOSE, b"\x03")], 1002),
    "close_code_1005": ([frame(CLOSE, close_payload(1005))], 1002),
    "close_code_1006": ([frame(CLOSE, close_payload(1006))], 1002),
    "close_code_999": ([frame(CLOSE, close_payload(999))], 1002),
    "close_code_1004": ([frame(CLOSE, close_payload(1004))], 1002),
    "close_code_1015": ([frame(CLOSE, close_payload(1015))], 1002),
    "close_code_2999": ([frame(CLOSE, close_payload(2999))], 1002),
    "close_code_5000": ([frame(CLOSE, close_payload(5000))], 1002),
    "close_reason_not_utf8": ([frame(CLOSE, close_payload(1000, b"\xff"))], 1007),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_w3_violation_closes_with_its_code(server, case):
    """W3: each protocol violation gets a close frame with its code (1002, or 1007 for text
    that is not UTF-8), then the connection closes; the application's ``receive()`` gets
    ``websocket.disconnect`` with the same code (W5)."""
    frames, code = VIOLATIONS[case]
    name = new_name()
    peer = open_raw(server.unix, query=f"marker={name}")
    peer.send(*frames)
    f = peer.close_frame()
    assert f.close_code() == code, (f, f.payload)
    assert peer.eof(), "the server did not close the connection"
    peer.close()
    assert wait_marker(server, name)["code"] == code


def test_w3_violation_after_good_messages(server):
    """W3: the messages before a violation in the same segment still reach the application
    (then ``websocket.disconnect`` 1002); the connection is failed at once with 1002."""
    name = new_name()
    peer = open_raw(server.unix, query=f"marker={name}")
    peer.send(frame(TEXT, "one"), frame(TEXT, "two"), frame(0x3, b""))
    assert peer.close_frame().close_code() == 1002
    assert peer.eof()
    got = wait_marker(server, name)
    assert (got["code"], got["received"]) == (1002, 2), got


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4001, 4999])
def test_w3_close_answered_with_the_peers_code(server, code):
    """W3: the close handshake: a valid close code is answered with the same code, the
    connection then closes, the application sees it in ``websocket.disconnect``."""
    name = new_name()
    peer = open_raw(server.unix, query=f"marker={name}")
    peer.send(frame(CLOSE, close_payload(code, "bye ✓".encode())))
    assert peer.close_frame().close_code() == code
    assert peer.eof()
    assert wait_marker(server, name)["code"] == code


def test_w3_empty_close_answered_with_empty_close(server):
    """W3: a close frame without a code is answered without a code; the application sees
    1005 (no status)."""
    name = new_name()
    peer = open_raw(server.unix, query=f"marker={name}")
    peer.send(frame(CLOSE))
    f = peer.close_frame()
    assert f.payload == b""
    assert peer.eof()
    assert wait_marker(server, name)["code"] == 1005


@pytest.mark.parametrize("size", [0, 1, 125])
def test_w3_ping_answered_with_the_same_payload(server, size):
    """W3: a ping is answered by a pong with the same payload (0, 1 and 125 bytes)."""
    payload = os.urandom(size)
    peer = open_raw(server.unix)
    peer.send(frame(PING, payload))
    f = peer.frame()
    assert (f.opcode, f.payload, f.fin) == (PONG, payload, True)
    peer.close()


def test_w3_ping_between_fragments(server):
    """W3: a ping between the fragments of a message is answered at once; the message is
    then reassembled; an unsolicited pong is ignored."""
    peer = open_raw(server.unix)
    peer.send(frame(TEXT, "ab", fin=False), frame(PING, b"mid"), frame(PONG, b"unasked"))
    f = peer.frame()
    assert (f.opcode, f.payload) == (PONG, b"mid")
    peer.send(frame(CONT, "cd", fin=False), frame(CONT, "ef"))
    assert peer.text() == "abcdef"
    peer.close()


def test_w3_utf8_character_split_across_fragments(server):
    """W3: a multi-byte character split between two fragments is valid UTF-8 (checked
    across fragments, not per fragment)."""
    peer = open_raw(server.unix)
    peer.send(frame(TEXT, b"caf\xc3", fin=False), frame(CONT, b"\xa9 \xe2\x9c", fin=False))
    peer.send(frame(CONT, b"\x93"))
    assert peer.text() == "café ✓"
    peer.close()


def test_w3_frames_split_anywhere(server):
    """W3: frames sent one byte at a time, and many frames in one segment, decode the same:
    the 64-bit length form too."""
    peer = open_raw(server.unix)
    s = peer.sock
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for b in frame(TEXT, "byte by byte"):
        s.send(bytes([b]))
    assert peer.text() == "byte by byte"
    peer.send(*(frame(TEXT, f"m{i}") for i in range(50)))
    assert [peer.text() for _ in range(50)] == [f"m{i}" for i in range(50)]
    big = os.urandom(70_000)
    peer.send(frame(BINARY, big))
    assert peer.message() == (BINARY, big)
    peer.close()


def test_w3_client_may_use_an_all_zero_mask(server):
    """W3: masking with the key 00 00 00 00 is still masking (the mask bit is what counts)."""
    peer = open_raw(server.unix)
    peer.send(frame(TEXT, "zero mask", key=b"\x00\x00\x00\x00"))
    assert peer.text() == "zero mask"
    peer.close()


def test_w3_server_close_waits_for_the_peers_close(server):
    """W3: after its close frame (the application closed with 4002 and a reason) the server
    waits for the peer's close frame rather than closing at once; once it comes the
    connection closes."""
    peer = open_raw(server.unix, path="/close", query="code=4002&reason=bye")
    f = peer.close_frame()
    assert (f.close_code(), f.close_reason()) == (4002, "bye")
    assert not peer.eof(timeout=0.5), "the server closed without waiting for the peer's close"
    peer.send(frame(CLOSE, close_payload(4002)))
    assert peer.eof(timeout=2)


def test_w3_server_close_wait_is_bounded(server):
    """W3: a peer that never answers the server's close frame is dropped after about 2 s."""
    peer = open_raw(server.unix, path="/close", query="code=4002&reason=bye&wait=1")
    f = peer.close_frame()
    start = time.monotonic()
    assert f.close_code() == 4002
    assert peer.eof(timeout=6)
    took = time.monotonic() - start
    assert 1.0 < took < 4.0, took


def test_w5_vanished_client_gives_disconnect_1006(server):
    """W5/X3: a client that goes away without a close frame: the application's ``receive()``
    gets ``websocket.disconnect`` with 1006; the worker logs no traceback."""
    name = new_name()
    mark = LogMark(server)
    peer = open_raw(server.unix, query=f"marker={name}")
    peer.send(frame(TEXT, "last words"))
    assert peer.text() == "last words"
    peer.sock.shutdown(socket.SHUT_RDWR)
    peer.close()
    got = wait_marker(server, name)
    assert (got["code"], got["received"]) == (1006, 1), got
    assert "Traceback" not in mark.new(), mark.new()


def test_w5_client_reset_gives_disconnect_1006(server):
    """W5/X3: a connection reset (SO_LINGER 0) right after the first fragment of a message
    (the reset and the data arrive together) gives ``websocket.disconnect`` 1006 as well,
    promptly (not at the next keep-alive ping, 20 s away); 20 such connections."""
    names = [new_name() for _ in range(20)]
    for name in names:
        peer = open_raw(server.tcp, query=f"marker={name}")
        peer.send(frame(TEXT, "half", fin=False))
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
    folder = server.tmp / "markers"
    assert wait_until(lambda: all((folder / n).exists() for n in names), timeout=5), (
        f"{sum(not (folder / n).exists() for n in names)} of 20 reset connections never "
        "reached the application as websocket.disconnect"
    )
    assert {markers_json(server, n)["code"] for n in names} == {1006}


#: Bad handshakes (W1): the upgrade headers and method, and a text the 400 must hold.
BAD_HANDSHAKES: dict[str, tuple[dict[str, Any], str]] = {
    "missing_key": ({"key": None}, "Key"),
    "key_not_16_bytes": ({"key": base64.b64encode(b"short").decode()}, "Key"),
    "key_not_base64": ({"key": "not base64 at all!!!!!!="}, "Key"),
    "version_12": ({"version": "12"}, "13"),
    "missing_version": ({"version": None}, "13"),
    "post": ({"method": "POST"}, "GET"),
    "connection_without_upgrade": ({"connection": "keep-alive"}, "upgrade"),
}


@pytest.mark.parametrize("case", sorted(BAD_HANDSHAKES))
def test_w1_bad_handshake_is_400(server, case):
    """W1: a bad handshake (no or bad key, a version other than 13, not GET, Connection
    without upgrade) is answered 400 with the reason, never a 101, and logged as one WARNING
    line like any refused packet (S1/X1)."""
    kw, text = BAD_HANDSHAKES[case]
    mark = LogMark(server)
    reply = Reply(read_all_from(server.unix, upgrade_packet(**kw)))
    assert reply.status == 400, reply
    assert reply.header("Sec-WebSocket-Accept") is None
    assert text.lower() in reply.body.decode().lower(), reply.body
    line = mark.wait_for(r"\[WARNING\].*refused \(400 Bad Request\)")
    assert "WebSocket handshake" in line
    time.sleep(0.1)
    assert len(mark.lines("WARNING")) == 1 and not mark.lines("ERROR"), mark.new()


@pytest.mark.parametrize("version", ["12", "8", None])
def test_w1_wrong_version_400_names_version_13(server, version):
    """W1 (RFC 6455 §4.4): the 400 for a version the server does not speak carries
    ``Sec-WebSocket-Version: 13``, the version it does."""
    reply = Reply(read_all_from(server.unix, upgrade_packet(version=version)))
    assert reply.status == 400, reply
    assert reply.header("Sec-WebSocket-Version") == "13", reply.raw


def test_w1_plain_get_is_http(server):
    """W1: a GET to a websocket route without Upgrade is an HTTP request (scope type http)."""
    reply = Reply(read_all_from(server.unix, packet(nginx_vars(path="/echo"))))
    assert (reply.status, reply.body) == (200, b"http /echo")
    # Upgrade to something other than websocket (h2c): HTTP as well.
    pairs = nginx_vars(path="/echo", headers=[("Upgrade", "h2c"), ("Connection", "Upgrade")])
    reply = Reply(read_all_from(server.unix, packet(pairs)))
    assert (reply.status, reply.body) == (200, b"http /echo")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_w2_echo_on_every_transport(server, transport):
    """W2: the raw websocket works on TCP and on the unix socket alike."""
    address = server.tcp if transport == "tcp" else server.unix
    peer = open_raw(address)
    peer.send(frame(TEXT, "over " + transport))
    assert peer.text() == "over " + transport
    peer.send(frame(CLOSE, close_payload(1000)))
    assert peer.close_frame().close_code() == 1000
    assert peer.eof()


def test_w6_slow_reader_gets_back_pressure(server):
    """W6: an application sending 64 MiB (64 KiB messages) to a client that does not read:
    its sends wait (it is far from done after 3 s), and the worker's memory does not grow by
    more than 16 MiB; once the client reads, all 64 MiB arrive and the application finishes."""
    name = new_name()
    pid = server.live_worker_pids()[0]
    before = rss_kib(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak.append(rss_kib(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        peer = open_raw(server.unix, path="/flood", query=f"mib=64&marker={name}")
        time.sleep(3)
        progress = markers_json(server, name)
        assert progress is None or not progress["done"], progress
        sent = progress["sent"] if progress else 0
        assert sent < 16 << 20, f"the application sent {sent} bytes to a client not reading"
        want = 1024 * (65536 + 10)
        have = len(peer.buf)
        peer.buf.clear()
        peer.sock.settimeout(30)
        while have < want:
            chunk = peer.sock.recv(1 << 20)
            assert chunk, f"EOF after {have} bytes"
            have += len(chunk)
        assert have == want
        assert wait_until(lambda: (markers_json(server, name) or {}).get("done"), timeout=10)
        peer.send(frame(CLOSE, close_payload(1000)))
        assert peer.close_frame(timeout=10).close_code() == 1000
        peer.close()
    finally:
        done.set()
        sampler.join()
    grew = max(peak) - before
    assert grew < 16 * 1024, f"the worker grew by {grew} KiB for a client not reading"


def markers_json(server: Gunicorn, name: str) -> Any:
    path = server.tmp / "markers" / name
    return json.loads(path.read_text()) if path.exists() else None


# -- keep-alive pings and the message size limit -----------------------------------------------


@pytest.mark.nginx
def test_w5_idle_connection_outlives_uwsgi_read_timeout(pinged):
    """W5: behind ``uwsgi_read_timeout 3s``, a websocket idle for 6 s stays open because the
    server pings it every second (``GUNICORN_UWSGI_WEBSOCKET_PING=1``), and then echoes; the
    same idle websocket on a server with pings disabled (``=0``) is cut by nginx."""
    from websockets.exceptions import ConnectionClosed

    with pinged.ws("/t3/echo") as kept, pinged.ws("/t3-noping/echo") as cut:
        for ws in (kept, cut):
            ws.send("before")
            assert ws.recv(timeout=5) == "before"
        time.sleep(6)
        kept.send("still here")
        assert kept.recv(timeout=5) == "still here"
        with pytest.raises(ConnectionClosed):
            cut.send("anyone?")
            cut.recv(timeout=3)
    assert "upstream timed out" in pinged.nginx.error_log()


@pytest.mark.nginx
def test_w5_unanswered_pings_close_the_connection(pinged):
    """W5: a peer that never answers the server's pings is closed after about two ping
    intervals (1 s here) with 1011, whether it reads the pings (timed here) or reads nothing
    at all (a second peer at the same time, read only at the end); the application gets
    ``websocket.disconnect`` with 1011 for both."""
    name, silent_name = new_name(), new_name()
    peer = open_raw(pinged.gunicorn.unix, query=f"marker={name}")
    silent = open_raw(pinged.gunicorn.unix, query=f"marker={silent_name}")
    start = time.monotonic()
    pings = []
    while True:
        f = peer.frame(timeout=10, pings=True)
        if f.opcode != PING:
            break
        pings.append(time.monotonic() - start)
    took = time.monotonic() - start
    assert f.opcode == CLOSE and f.close_code() == 1011, f
    assert pings and 0.5 < pings[0] < 2.0, pings
    assert 1.5 < took < 4.5, (took, pings)
    assert peer.eof()
    assert wait_marker(pinged.gunicorn, name)["code"] == 1011
    # The peer that never read: the server gave up on it just the same.
    assert wait_marker(pinged.gunicorn, silent_name, timeout=5)["code"] == 1011
    first = silent.frame(pings=True)
    assert first.opcode == PING, first
    assert silent.close_frame().close_code() == 1011
    assert silent.eof()


@pytest.mark.nginx
def test_w5_answered_pings_keep_the_connection(pinged):
    """W5: a peer that answers every ping (with its payload) stays open past several ping
    intervals and still echoes."""
    peer = open_raw(pinged.gunicorn.unix)
    deadline = time.monotonic() + 3.5
    pings = 0
    while time.monotonic() < deadline:
        try:
            f = peer.frame(timeout=deadline - time.monotonic(), pings=True)
        except TimeoutError:
            break
        assert f.opcode == PING, f
        pings += 1
        peer.send(frame(PONG, f.payload))
    assert pings >= 2
    peer.send(frame(TEXT, "alive"))
    assert peer.text() == "alive"
    peer.close()


#: Messages against ``--websocket-max-message-size 1024`` (W3): the frames, the close code
#: (None: echoed).
SIZES: dict[str, tuple[list[bytes], int | None]] = {
    "binary_1024_fits": ([frame(BINARY, b"b" * SMALL_MAX)], None),
    "binary_1025": ([frame(BINARY, b"b" * (SMALL_MAX + 1))], 1009),
    "text_1025": ([frame(TEXT, "t" * (SMALL_MAX + 1))], 1009),
    "fragments_600_600": ([frame(BINARY, b"f" * 600, fin=False), frame(CONT, b"f" * 600)], 1009),
    "declared_64_bit_length": ([frame(BINARY, b"x" * 70_000)], 1009),
}


@pytest.mark.nginx
@pytest.mark.parametrize("case", sorted(SIZES))
def test_w3_message_over_max_size_is_1009(pinged, case):
    """W3: a message (whole or fragmented) over gunicorn's ``websocket_max_message_size``
    (1024 here) closes with 1009; one of exactly 1024 bytes is served."""
    require_max_message_size()
    frames, code = SIZES[case]
    name = new_name()
    peer = open_raw(pinged.gunicorn.unix, query=f"marker={name}")
    peer.send(*frames)
    if code is None:
        assert peer.message() == (BINARY, b"b" * SMALL_MAX)
        peer.close()
        return
    assert peer.close_frame().close_code() == code
    assert peer.eof()
    assert wait_marker(pinged.gunicorn, name)["code"] == code


@pytest.mark.nginx
def test_w4_compressed_message_limited_by_inflated_size(pinged):
    """W4/W3: a compressed message of a few bytes that inflates past 1024 closes with 1009;
    one inflating to 1000 bytes is served."""
    require_max_message_size()
    peer = open_raw(pinged.gunicorn.unix, extensions="permessage-deflate")
    assert peer.inflater is not None
    peer.send(frame(TEXT, deflate_message(b"z" * 1000), rsv=RSV1))
    assert peer.text() == "z" * 1000
    small = deflate_message(b"z" * 100_000)
    assert len(small) < 1024
    peer.send(frame(TEXT, small, rsv=RSV1))
    assert peer.close_frame().close_code() == 1009
    assert peer.eof()


@pytest.mark.nginx
def test_w3_message_over_max_size_through_nginx(pinged):
    """W3: through nginx, the ``websockets`` client sending 1025 bytes gets close 1009."""
    require_max_message_size()
    from websockets.exceptions import ConnectionClosed

    with pinged.ws("/echo") as ws:
        ws.send(b"x" * SMALL_MAX)
        assert ws.recv(timeout=5) == b"x" * SMALL_MAX
        ws.send(b"x" * (SMALL_MAX + 1))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


# -- Starlette, FastAPI, Django Channels behind nginx ------------------------------------------

FRAMEWORKS = {
    "starlette": ("starlette", "apps.ws_apps:starlette_app"),
    "fastapi": ("fastapi", "apps.ws_apps:fastapi_app"),
    "channels": ("channels", "apps.ws_channels:application"),
}


@dataclass
class Site(Front):
    name: str = ""


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    module, app = FRAMEWORKS[request.param]
    require_module("websockets")
    require_module(module)
    tmp = tmp_path_factory.mktemp(f"ws-{request.param}")
    with asgi_server(tmp, app=app) as g, ws_nginx(tmp, f"unix:{g.unix}") as n:
        yield Site(g, n, name=request.param)


@pytest.mark.nginx
def test_fw_w_echo(site):
    """W2/W3: the framework's websocket route echoes text (and bytes, where the route takes
    them) through nginx."""
    with site.ws("/echo") as ws:
        for text in ["one", "zwei ✓", "x" * 100_000]:
            ws.send(text)
            assert ws.recv(timeout=10) == text
        if site.name != "fastapi":
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=10) == b"\x00\x01"


@pytest.mark.nginx
@pytest.mark.parametrize("https", [False, True], ids=["ws", "wss"])
def test_fw_w1_client_and_url(site, https):
    """W1/S2: ``websocket.client`` is the real client (127.0.0.2 and its port), the URL is the
    one the client asked for (ws://, or wss:// behind HTTPS on); the route then closes with
    4010."""
    from websockets.exceptions import ConnectionClosed

    port = site.https_port if https else site.port
    sock = site.socket(https, OTHER_CLIENT)
    local = sock.getsockname()[1]
    with site.ws("/info?x=1", https=https, sock=sock, additional_headers={"X-Trace": "t"}) as ws:
        info = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    scheme = "wss" if https else "ws"
    assert info["client"] == [OTHER_CLIENT, local]
    assert info["url"] == f"{scheme}://{site.host(port)}/info?x=1"
    assert info["scheme"] == scheme
    assert info["path"] == "/info"
    assert info["query"] == {"x": "1"}
    assert info["header"] == "t"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4010
    assert "Traceback" not in site.gunicorn.log(), site.gunicorn.log()[-3000:]
