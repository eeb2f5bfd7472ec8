"""The uWSGI protocol (nginx ``uwsgi_pass``) for gunicorn, with a Rust core.

Run ``gunicorn app:app --worker-class gunicorn_uwsgi.SyncWorker`` (or ``ThreadWorker``, or
``GeventWorker`` with gevent installed; ``ASGIWorker`` for ASGI applications).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gunicorn_uwsgi._native import __version__
from gunicorn_uwsgi.parser import UWSGIParser
from gunicorn_uwsgi.workers import SyncWorker, ThreadWorker

if TYPE_CHECKING:
    from gunicorn_uwsgi.workers.asgi import ASGIWorker
    from gunicorn_uwsgi.workers.ggevent import GeventWorker

__all__ = ["ASGIWorker", "GeventWorker", "SyncWorker", "ThreadWorker", "UWSGIParser", "__version__"]


def __getattr__(name: str) -> Any:
    # The gevent worker imports gevent, the ASGI worker asyncio: only when asked for.
    if name == "ASGIWorker":
        from gunicorn_uwsgi.workers.asgi import ASGIWorker

        return ASGIWorker
    if name == "GeventWorker":
        from gunicorn_uwsgi.workers.ggevent import GeventWorker

        return GeventWorker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
