"""The uWSGI protocol (nginx ``uwsgi_pass``) for gunicorn, with a Rust core.

Run ``gunicorn app:app --worker-class gunicorn_uwsgi.SyncWorker``.
"""

from gunicorn_uwsgi._native import __version__
from gunicorn_uwsgi.parser import UWSGIParser
from gunicorn_uwsgi.workers import SyncWorker

__all__ = ["SyncWorker", "UWSGIParser", "__version__"]
