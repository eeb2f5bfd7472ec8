"""``gunicorn_uwsgi.SyncWorker``: gunicorn's sync worker speaking uwsgi."""

from __future__ import annotations

from typing import Any

from gunicorn import sock as gsock
from gunicorn.workers import sync

from gunicorn_uwsgi.errors import ForbiddenUWSGIRequest, PeerTimeout, UWSGIError
from gunicorn_uwsgi.parser import read_request
from gunicorn_uwsgi.workers.base import UWSGIWorkerMixin, close_connection


class SyncWorker(UWSGIWorkerMixin, sync.SyncWorker):
    """One request at a time per process, like gunicorn's ``sync`` worker.

    Each accepted connection carries one uwsgi request (F5): allow check, one receive feeding
    the parser, the application, the response, close.
    """

    def run(self) -> None:
        self.set_socket_timeouts()
        super().run()

    def accept(self, listener: Any) -> None:
        # Accepted sockets are blocking, close-on-exec (PEP 446) and inherit the listener's
        # timeouts: no further system call is needed before reading.
        client, addr = listener.accept()
        self.handle(listener, client, addr)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        req = None
        resp = None
        clean = False
        try:
            if not self.uwsgi.allow.allows(addr):
                raise ForbiddenUWSGIRequest(str(addr[0]))
            if self.uwsgi.is_ssl:
                client = gsock.ssl_wrap_socket(client, self.cfg)
            req = read_request(client, addr, self.uwsgi, self.nr + 1)
            if req is None:
                self.log.debug("uwsgi peer closed before sending a request")
                clean = True
                return
            self.serve(listener, req, client, addr)
            clean = True
        except UWSGIError as e:
            self.protocol_error(client, addr, e)
        except (OSError, PeerTimeout) as e:
            self.connection_error(addr, e)
        except BaseException as e:  # the application failed (X2); the worker keeps serving
            resp = getattr(e, "_uwsgi_response", None)
            self.app_error(req, client, addr, resp)
        finally:
            close_connection(client, req, clean)
