"""A uwsgi client for debugging a gunicorn_uwsgi (or any uwsgi) endpoint without nginx.

    python -m gunicorn_uwsgi.client [--unix PATH | HOST:PORT] /path?query
                                    [-X METHOD] [-H 'Name: value'] [-d BODY | -d @FILE]

It sends one request with the vars nginx's stock ``uwsgi_params`` would send and prints the
response as the server wrote it. The exit status is for scripts and health checks, as with
``curl --fail``: 0 when the response status is 1xx-3xx; 22 (curl's ``--fail`` code) when it is
400 or more, the response still printed; 1 when the server cannot be reached, closes without
answering or answers with something that is not an HTTP response; 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import re
import socket
import struct
import sys
from collections.abc import Iterable, Sequence
from urllib.parse import unquote_to_bytes

Var = tuple[bytes, bytes]

#: Exit statuses (2, bad arguments, is argparse's): a 1xx-3xx response; no usable answer; a
#: 4xx or 5xx response (22 is curl's CURLE_HTTP_RETURNED_ERROR, what ``curl --fail`` exits).
EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_HTTP_ERROR = 22

_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)? ([1-5]\d\d)(?:[ \r\n]|$)")


def encode(pairs: Iterable[Var], body: bytes = b"", modifier1: int = 0) -> bytes:
    """A uwsgi packet: the 4-byte header, the vars block, then the body."""
    pairs = list(pairs)
    for k, v in pairs:
        if len(k) > 0xFFFF or len(v) > 0xFFFF:
            raise ValueError(f"the var {k[:40]!r} is over 65535 bytes")
    block = b"".join(
        struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in pairs
    )
    if len(block) > 0xFFFF:
        raise ValueError(f"the vars block is {len(block)} bytes; the protocol allows 65535")
    return struct.pack("<BHB", modifier1, len(block), 0) + block + body


def request_vars(
    target: str,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    server: tuple[str, str] = ("localhost", "80"),
    client: tuple[str, str] = ("127.0.0.1", "0"),
) -> list[Var]:
    """The vars nginx sends for this request: ``PATH_INFO`` percent-decoded once (nginx's
    ``$document_uri``), ``REQUEST_URI`` raw, ``CONTENT_*`` from the headers and the body, the
    other headers as ``HTTP_*``."""
    path, _, query = target.partition("?")
    named = {name.lower(): value for name, value in headers}
    content_type = named.get("content-type", "")
    length = str(len(body)) if body or method in ("POST", "PUT", "PATCH") else ""
    host = named.get("host", server[0])

    def latin1(s: str) -> bytes:
        return s.encode("latin-1")

    pairs: list[Var] = [
        (b"QUERY_STRING", latin1(query)),
        (b"REQUEST_METHOD", latin1(method)),
        (b"CONTENT_TYPE", latin1(content_type)),
        (b"CONTENT_LENGTH", latin1(length)),
        (b"REQUEST_URI", latin1(target)),
        (b"PATH_INFO", unquote_to_bytes(path)),
        (b"DOCUMENT_ROOT", b"/var/www/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", latin1(client[0])),
        (b"REMOTE_PORT", latin1(client[1])),
        (b"SERVER_PORT", latin1(server[1])),
        (b"SERVER_NAME", latin1(server[0])),
        (b"HTTP_HOST", latin1(host)),
    ]
    for name, value in headers:
        if name.lower() in ("host", "content-type", "content-length"):
            continue
        pairs.append((latin1("HTTP_" + name.upper().replace("-", "_")), latin1(value)))
    return pairs


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def read_body(arg: str | None) -> bytes:
    if arg is None:
        return b""
    if arg.startswith("@"):
        with open(arg[1:], "rb") as f:
            return f.read()
    return arg.encode()


def send(address: str | tuple[str, int], packet: bytes, timeout: float) -> bytes:
    """Sends a packet and reads the answer until the server closes."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(packet)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def response_status(answer: bytes) -> int | None:
    """The final status of a response as the server wrote it: the first status line's, past
    any interim 1xx response (other than 101) that another response follows; None when the
    answer does not start with an HTTP status line."""
    while True:
        match = _STATUS_LINE.match(answer)
        if match is None:
            return None
        status = int(match.group(1))
        _, sep, rest = answer.partition(b"\r\n\r\n")
        if 100 <= status < 200 and status != 101 and sep and _STATUS_LINE.match(rest):
            answer = rest
            continue
        return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gunicorn_uwsgi.client",
        description="Send one uwsgi request, as nginx would, and print the response.",
        epilog="Exit status: 0 for a 1xx-3xx response, 22 for 4xx or 5xx (as curl --fail), "
        "1 when the server cannot be reached or gives no HTTP response, 2 on bad arguments.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", metavar="PATH", help="a unix socket")
    where.add_argument("address", nargs="?", type=parse_address, help="HOST:PORT")
    parser.add_argument("target", help="the request target: /path?query")
    parser.add_argument("-X", "--method", default=None, help="GET, or POST with -d")
    parser.add_argument("-H", "--header", action="append", type=parse_header, default=[])
    parser.add_argument("-d", "--data", help="the body; @FILE reads it from a file")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--modifier1", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.target.startswith("/"):
        parser.error("the target must start with '/'")
    try:
        body = read_body(args.data)
    except OSError as e:
        parser.error(str(e))
    method = args.method or ("POST" if args.data is not None else "GET")
    address = args.unix if args.unix else args.address
    server = ("localhost", "80") if args.unix else (address[0], str(address[1]))
    pairs = request_vars(args.target, method, args.header, body, server=server)
    try:
        packet = encode(pairs, body, args.modifier1)
        answer = send(address, packet, args.timeout)
    except ValueError as e:
        parser.error(str(e))
    except OSError as e:
        print(f"uwsgi client: {address}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not answer:
        print(f"uwsgi client: {address} closed without answering", file=sys.stderr)
        return EXIT_UNREACHABLE
    sys.stdout.buffer.write(answer)
    sys.stdout.buffer.flush()
    status = response_status(answer)
    if status is None:
        print(f"uwsgi client: {address} answered with no HTTP status line", file=sys.stderr)
        return EXIT_UNREACHABLE
    if status >= 400:
        print(f"uwsgi client: {address} answered {status}", file=sys.stderr)
        return EXIT_HTTP_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
