"""The worker classes as a package exports them: names, entry points, the optional gevent
dependency (G1)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

import gunicorn_uwsgi
from gunicorn_uwsgi.workers.base import UWSGIWorkerMixin
from support import GEVENT, WORKERS, require_worker


@pytest.mark.parametrize("name", [w.rsplit(".", 1)[1] for w in WORKERS])
def test_g1_worker_classes_are_exported(name):
    """G1: ``-k gunicorn_uwsgi.<Class>`` names each worker class."""
    if f"gunicorn_uwsgi.{name}" == GEVENT:
        require_worker(GEVENT)
    cls = getattr(gunicorn_uwsgi, name)
    assert issubclass(cls, UWSGIWorkerMixin)
    assert name in gunicorn_uwsgi.__all__


def test_g1_importing_the_package_does_not_need_gevent():
    """G1: gevent is optional: without it the package imports, the sync and thread workers
    load, and only asking for GeventWorker fails."""
    code = (
        "import sys; sys.modules['gevent'] = None\n"
        "import gunicorn_uwsgi\n"
        "assert 'gevent' not in sys.modules or sys.modules['gevent'] is None\n"
        "gunicorn_uwsgi.SyncWorker, gunicorn_uwsgi.ThreadWorker\n"
        "try:\n"
        "    gunicorn_uwsgi.GeventWorker\n"
        "except (ImportError, RuntimeError):\n"
        "    print('no gevent')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no gevent"


def test_g1_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        gunicorn_uwsgi.NoSuchWorker  # noqa: B018


def test_g1_entry_points_name_every_worker_class():
    """G1: ``-k egg:gunicorn-uwsgi-rs#sync`` (``#thread``, ``#gevent``, ``#asgi``)."""
    every = metadata.entry_points()
    group = (
        every.select(group="gunicorn.workers")
        if hasattr(every, "select")
        else every.get("gunicorn.workers", [])  # Python 3.9
    )
    points = {ep.name: ep.value for ep in group if ep.value.startswith("gunicorn_uwsgi.")}
    assert points == {
        "sync": "gunicorn_uwsgi.workers.sync:SyncWorker",
        "thread": "gunicorn_uwsgi.workers.thread:ThreadWorker",
        "gevent": "gunicorn_uwsgi.workers.ggevent:GeventWorker",
        "asgi": "gunicorn_uwsgi.workers.asgi:ASGIWorker",
    }


def test_wsgi_multithread_of_each_class():
    """E8: the class attribute the environ's wsgi.multithread comes from."""
    assert gunicorn_uwsgi.SyncWorker.multithread is False
    assert gunicorn_uwsgi.ThreadWorker.multithread is True
    from gunicorn_uwsgi.workers.ggevent import GeventWorker

    assert GeventWorker.multithread is False
