"""Worker classes: gunicorn's workers with the uwsgi protocol."""

from gunicorn_uwsgi.workers.sync import SyncWorker

__all__ = ["SyncWorker"]
