"""The request object: gunicorn's request attributes over a parsed uwsgi head (G3)."""

from __future__ import annotations

from typing import Any

from gunicorn_uwsgi import _native
from gunicorn_uwsgi.body import Body


def _version(protocol: str | None) -> tuple[int, int]:
    if protocol and protocol.startswith("HTTP/"):
        major, _, minor = protocol[5:].partition(".")
        if major.isdigit() and (minor.isdigit() or not minor):
            return int(major), int(minor or 0)
    return 1, 1


class UWSGIRequest:
    """One uwsgi request: ``method``, ``path``, ``query``, ``uri``, ``version``, ``headers``,
    ``body``, ``remote_addr`` as gunicorn's ``Request`` has them, plus ``uwsgi_vars``."""

    fragment = ""
    trailers: list[tuple[str, str]] = []
    proxy_protocol_info = None
    _expected_100_continue = False
    must_close = True

    def __init__(
        self,
        head: _native.Head,
        body: Body,
        peer_addr: Any,
        req_number: int = 1,
        scheme: str = "http",
    ) -> None:
        self.head = head
        self.body = body
        self.peer_addr = peer_addr
        self.req_number = req_number
        self.scheme = scheme
        self.method = head.method
        self.modifier1 = head.modifier1
        self.modifier2 = head.modifier2
        self._headers: list[tuple[str, str]] | None = None
        self._vars: dict[str, str] | None = None

    @property
    def path(self) -> str:
        return self.head.get("PATH_INFO", "")

    @property
    def query(self) -> str:
        return self.head.get("QUERY_STRING", "")

    @property
    def uri(self) -> str:
        uri = self.head.get("REQUEST_URI")
        if uri is not None:
            return uri
        query = self.query
        return f"{self.path}?{query}" if query else self.path

    @property
    def raw_path(self) -> bytes:
        return self.uri.split("?", 1)[0].encode("latin-1")

    @property
    def version(self) -> tuple[int, int]:
        return _version(self.head.get("SERVER_PROTOCOL"))

    @property
    def remote_addr(self) -> Any:
        """The real client from ``REMOTE_ADDR`` when nginx sent it, else the socket peer."""
        addr = self.head.get("REMOTE_ADDR")
        if addr is None:
            return self.peer_addr
        port = self.head.get("REMOTE_PORT") or "0"
        return (addr, int(port) if port.isdigit() else 0)

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            self._headers = self.head.headers()
        return self._headers

    @property
    def uwsgi_vars(self) -> dict[str, str]:
        if self._vars is None:
            self._vars = self.head.vars()
        return self._vars

    def should_close(self) -> bool:
        """Always: nginx never reuses a uwsgi connection (F5)."""
        return True

    def force_close(self) -> None:
        self.must_close = True

    def __repr__(self) -> str:
        return f"<UWSGIRequest {self.method} {self.uri}>"
