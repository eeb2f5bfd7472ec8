"""Reading one uwsgi request from a connection, and gunicorn's parser interface over it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from gunicorn_uwsgi import _native
from gunicorn_uwsgi.body import Body, WaitBudget
from gunicorn_uwsgi.errors import ClientDisconnected, ForbiddenUWSGIRequest
from gunicorn_uwsgi.message import UWSGIRequest
from gunicorn_uwsgi.settings import ProtocolSettings, settings_for

#: One receive usually carries the header, the vars and the body (nginx sends them together).
RECV_SIZE = 65536

_parse = _native.parse


def read_request(
    source: Any,
    peer: Any,
    settings: ProtocolSettings,
    req_number: int = 1,
    initial: bytes = b"",
    waited: float = 0.0,
) -> UWSGIRequest | None:
    """Reads and validates one request head from ``source`` (anything with ``recv``), starting
    with the bytes already read from it (``initial``), if any, which took the peer ``waited``
    seconds: they count against its read budget (F8).

    Returns None when the peer closed before sending a byte (F6). Raises a
    ``gunicorn_uwsgi.errors`` protocol error for a refused packet, ``ClientDisconnected`` when
    the peer hangs up mid-head and ``PeerTimeout`` when it stalls (F8).
    """
    budget = WaitBudget(settings.timeout, waited)
    data = initial or budget.recv(source, RECV_SIZE, "head bytes", bound=False)
    if not data:
        return None
    head = _parse(data, settings.limits)
    if isinstance(head, int):
        head, data = _read_rest(source, data, head, settings, budget)
    size = head.head_size
    body = Body(source, data[size:], head.content_length, settings.timeout, budget)
    return UWSGIRequest(head, body, peer, req_number)


def _read_rest(
    source: Any, data: bytes, need: int, settings: ProtocolSettings, budget: WaitBudget
) -> tuple[_native.Head, bytes]:
    """The slow path: the head arrived in several segments (F2). Each byte is copied at most a
    few times whatever the segmentation, and the peer may keep us waiting for the whole head
    (and then the body) only as long as the read timeout."""
    chunks = [data]
    have = len(data)
    while True:
        while have < need:
            chunk = budget.recv(source, max(need - have, RECV_SIZE), "complete head")
            if not chunk:
                raise ClientDisconnected(have, need)
            chunks.append(chunk)
            have += len(chunk)
        data = b"".join(chunks)
        chunks = [data]
        result = _parse(data, settings.limits)
        if not isinstance(result, int):
            return result, data
        need = result


class _IterSource:
    """``recv`` over an iterable of byte strings, for the parser's non-socket sources."""

    def __init__(self, iterable: Iterable[bytes]) -> None:
        self._it = iter(iterable)

    def recv(self, size: int) -> bytes:
        return next(self._it, b"")


class UWSGIParser:
    """gunicorn's parser interface for uwsgi: ``UWSGIParser(cfg, source, source_addr)``.

    ``source`` is a socket or an iterable of bytes. Iterating yields the connection's one request
    (F5) and then stops. The allow list is checked first (A4).
    """

    def __init__(self, cfg: Any, source: Any, source_addr: Any) -> None:
        self.cfg = cfg
        self.source_addr = source_addr
        self.source = source if hasattr(source, "recv") else _IterSource(source)
        self.settings = settings_for(cfg)
        self.mesg: UWSGIRequest | None = None
        self.req_count = 0
        self._done = False

    def __iter__(self) -> Iterator[UWSGIRequest]:
        return self

    def __next__(self) -> UWSGIRequest:
        if self._done:
            raise StopIteration
        self._done = True
        if not self.settings.allow.allows(self.source_addr):
            raise ForbiddenUWSGIRequest(str(self.source_addr[0]))
        req = read_request(self.source, self.source_addr, self.settings)
        if req is None:
            raise StopIteration
        self.mesg = req
        self.req_count = 1
        return req
