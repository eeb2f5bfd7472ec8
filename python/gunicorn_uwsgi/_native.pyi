"""Type stubs for the Rust extension ``gunicorn_uwsgi._native``."""

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, final, overload

_T = TypeVar("_T")

__all__ = [
    "MAX_VARS",
    "AllowList",
    "BytesInput",
    "Connection",
    "FastServer",
    "Head",
    "Limits",
    "Response",
    "__version__",
    "error_response",
    "parse",
    "response_head",
    "write_result",
]

__version__: str
MAX_VARS: int

@final
class Limits:
    """gunicorn's request limits; 0 means unlimited."""

    def __new__(
        cls, request_line: int = 4094, fields: int = 100, field_size: int = 8190
    ) -> Limits: ...
    @property
    def request_line(self) -> int: ...
    @property
    def fields(self) -> int: ...
    @property
    def field_size(self) -> int: ...

@final
class Head:
    """A validated uwsgi request head."""

    @property
    def modifier1(self) -> int: ...
    @property
    def modifier2(self) -> int: ...
    @property
    def head_size(self) -> int: ...
    @property
    def content_length(self) -> int: ...
    @property
    def method(self) -> str | None: ...
    @property
    def is_head(self) -> bool: ...
    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _T) -> str | _T: ...
    def vars(self) -> dict[str, str]: ...
    def headers(self) -> list[tuple[str, str]]: ...
    def environ(
        self,
        base: dict[str, Any],
        input: Any,
        socket: Any,
        peer_addr: str,
        peer_port: str,
        script_name: str,
        secure_headers: dict[str, str] | None,
        is_ssl: bool,
        server: Any = None,
    ) -> dict[str, Any]: ...

@final
class AllowList:
    """A compiled allow list: addresses, strict CIDR networks, ``*``."""

    def __new__(cls, entries: list[str]) -> AllowList: ...
    @property
    def allows_any(self) -> bool: ...
    def allows(self, peer: Any) -> bool: ...

def parse(data: bytes, limits: Limits) -> int | Head: ...
def response_head(
    status: str, headers: Iterable[tuple[str, str]], is_head: bool
) -> tuple[bytes, int, int | None, bool]: ...
def error_response(status: int, message: str) -> bytes: ...

@final
class BytesInput:
    """``wsgi.input`` over a body that arrived whole."""

    def __new__(cls, data: bytes) -> BytesInput: ...
    def read(self, size: int | None = None) -> bytes: ...
    def readline(self, size: int | None = None) -> bytes: ...
    def readlines(self, hint: int | None = None) -> list[bytes]: ...
    def __iter__(self) -> BytesInput: ...
    def __next__(self) -> bytes: ...
    @property
    def complete(self) -> bool: ...
    @property
    def overflow(self) -> bool: ...

@final
class Connection:
    """``gunicorn.socket`` on the fast path: ``fileno()``, and any other socket attribute
    through a ``socket.socket`` made on first use."""

    def fileno(self) -> int: ...
    def __getattr__(self, name: str) -> Any: ...

@final
class Response:
    """Writes one response (R1-R7)."""

    req: Any
    sock: Any
    status: Any
    sent: int
    def __new__(cls, req: Any, sock: Any, cfg: Any = None, sendfile: bool = True) -> Response: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def headers(self) -> Any: ...
    @property
    def headers_sent(self) -> bool: ...
    @property
    def response_length(self) -> int | None: ...
    @property
    def chunked(self) -> bool: ...
    @property
    def must_close(self) -> bool: ...
    def start_response(
        self, status: str, headers: Any, exc_info: Any = None
    ) -> Callable[[bytes], None]: ...
    def write(self, data: bytes) -> None: ...
    def send_headers(self) -> None: ...
    def write_file(self, respiter: Any) -> None: ...
    def close(self) -> None: ...
    def should_close(self) -> bool: ...
    def force_close(self) -> None: ...

def write_result(resp: Response, result: Any, file_wrapper: Any) -> None: ...

@final
class FastServer:
    """The sync worker's request cycle in Rust."""

    served: int
    waited: float
    def __new__(
        cls,
        app: Any,
        limits: Limits,
        allow: AllowList,
        forwarded: AllowList,
        base: dict[str, Any],
        socket_class: Any,
        file_wrapper: Any,
        script_name: str,
        secure_headers: dict[str, str] | None,
        sendfile: bool,
        debug: Any = None,
    ) -> FastServer: ...
    def serve(self, listener: int, family: int, server: Any, worker: Any, limit: int) -> int: ...
    def take_handoff(self) -> tuple[int, Any, bytes] | None: ...
    def take_error(self) -> tuple[BaseException, Any, str] | None: ...
    def take_peer(self) -> Any: ...
