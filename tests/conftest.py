from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Gunicorn


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Gunicorn]:
    """A gunicorn arbiter with one gunicorn_uwsgi.SyncWorker on 127.0.0.1 and a unix socket."""
    with Gunicorn(tmp_path) as g:
        yield g
