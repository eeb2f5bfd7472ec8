"""Reading one uwsgi request from a connection, and gunicorn's parser interface over it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from gunicorn_uwsgi import _native
from gunicorn_uwsgi.body import Body, WaitBudget
from gunicorn_uwsgi.errors import ForbiddenUWSGIRequest, IncompleteHead
from gunicorn_uwsgi.message import UWSGIRequest
from gunicorn_uwsgi.settings import ProtocolSettings, settings_for

#: One receive usually carries the header, the vars and the body (nginx sends them together).
RECV_SIZE = 65536

_parse = _native.parse
_request = _native.request


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
    ``gunicorn_uwsgi.errors`` protocol error for a refused packet, ``IncompleteHead`` (a
    ``ClientDisconnected`` and an ``InvalidUWSGIHeader``) when the peer hangs up mid-head and
    ``PeerTimeout`` when it stalls (F8). The request's ``scheme`` is set (E7).
    """
    budget = WaitBudget(settings.timeout, waited) if waited else None
    data = initial
    if not data:
        if budget is None:
            budget = WaitBudget(settings.timeout)
        data = budget.recv(source, RECV_SIZE, "head bytes", bound=False)
        if not data:
            return None
    req = _request(data, settings.limits, peer, req_number)
    if isinstance(req, int):
        if budget is None:
            budget = WaitBudget(settings.timeout)
        data = _read_rest(source, data, req, settings.limits, budget)
        # The head is whole now: this parse returns the request.
        req = cast(UWSGIRequest, _request(data, settings.limits, peer, req_number))
    req.resolve_scheme(settings.native, peer)
    if req.body is None:  # the body is still on the wire: read as the application asks (B2)
        head = req.head
        rest = data[head.head_size :]
        req.body = Body(source, rest, head.content_length, settings.timeout, budget)
    return req


def _read_rest(
    source: Any, data: bytes, need: int, limits: _native.Limits, budget: WaitBudget
) -> bytes:
    """The slow path: the head arrived in several segments (F2). Each byte is copied at most a
    few times whatever the segmentation, and the peer may keep us waiting for the whole head
    (and then the body) only as long as the read timeout. Returns the bytes received, the whole
    head among them."""
    chunks = [data]
    have = len(data)
    while True:
        while have < need:
            chunk = budget.recv(source, max(need - have, RECV_SIZE), "complete head")
            if not chunk:
                raise IncompleteHead(have, need)
            chunks.append(chunk)
            have += len(chunk)
        data = b"".join(chunks)
        chunks = [data]
        result = _parse(data, limits)
        if not isinstance(result, int):
            return data
        need = result


class _IterSource:
    """``recv`` over an iterable of byte strings, for the parser's non-socket sources."""

    __slots__ = ("_it",)

    def __init__(self, iterable: Iterable[bytes]) -> None:
        self._it = iter(iterable)

    def recv(self, size: int) -> bytes:
        return next(self._it, b"")


class UWSGIParser:
    """gunicorn's parser interface for uwsgi: ``UWSGIParser(cfg, source, source_addr)``, with
    ``cfg``, ``source``, ``source_addr``, ``settings`` (compiled once per ``cfg``), ``mesg``
    and ``req_count``. ``source`` is a socket or an iterable of byte strings. Iterating yields
    the connection's one request (F5) and then stops; the allow list is checked first (A4). An
    iterable's first string is parsed in one native call when it holds the whole request;
    anything else goes through ``read_request``. A request's ``scheme`` is set at parse time
    (E7)."""

    #: The request class the parser yields, as gunicorn's parsers have it.
    mesg_class = UWSGIRequest

    def __init__(self, cfg: Any, source: Any, source_addr: Any) -> None:
        self.cfg = cfg
        self.source = source
        self.source_addr = source_addr
        self.settings = settings_for(cfg)
        self.mesg: UWSGIRequest | None = None
        self.req_count = 0
        # A list or tuple of strings is the usual iterable source; anything else is a socket
        # when it has ``recv``.
        self._sequence = isinstance(source, (list, tuple))
        self._iterable = self._sequence or not hasattr(source, "recv")
        if self._iterable and not self._sequence:
            iter(source)  # not iterable at all: say so now
        self._done = False

    def __iter__(self) -> UWSGIParser:
        return self

    def __next__(self) -> UWSGIRequest:
        if self._done:
            raise StopIteration
        self._done = True
        settings, peer = self.settings, self.source_addr
        if not settings.allow.allows(peer):
            raise ForbiddenUWSGIRequest(str(peer[0]))
        if self._iterable:
            req = self._read_chunks()
        else:
            req = read_request(self.source, peer, settings)
        if req is None:
            raise StopIteration
        self.mesg = req
        self.req_count = 1
        return req

    def _read_chunks(self) -> UWSGIRequest | None:
        source, settings, peer = self.source, self.settings, self.source_addr
        if self._sequence:  # a list or tuple is read by index; an iterator only if needed
            if not source:
                return None
            data, chunks = source[0], None
        else:
            chunks = iter(source)
            data = next(chunks, b"")
        if not data:
            return None
        req = _request(data, settings.limits, peer, 1)
        if isinstance(req, int) or req.body is None:
            if chunks is None:
                chunks = iter(source)
                next(chunks)
            return read_request(_IterSource(chunks), peer, settings, 1, data)
        req.resolve_scheme(settings.native, peer)
        return req
