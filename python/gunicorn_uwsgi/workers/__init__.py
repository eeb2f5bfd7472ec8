"""Worker classes: gunicorn's workers with the uwsgi protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gunicorn_uwsgi.workers.sync import SyncWorker
from gunicorn_uwsgi.workers.thread import ThreadWorker

if TYPE_CHECKING:
    from gunicorn_uwsgi.workers.asgi import ASGIWorker
    from gunicorn_uwsgi.workers.ggevent import GeventWorker

__all__ = ["ASGIWorker", "GeventWorker", "SyncWorker", "ThreadWorker"]


def __getattr__(name: str) -> Any:
    # The gevent worker imports gevent, the ASGI worker asyncio: only when asked for.
    if name == "ASGIWorker":
        from gunicorn_uwsgi.workers.asgi import ASGIWorker

        return ASGIWorker
    if name == "GeventWorker":
        from gunicorn_uwsgi.workers.ggevent import GeventWorker

        return GeventWorker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
