"""The request object: gunicorn's request attributes over a parsed uwsgi head (G3)."""

from __future__ import annotations

from gunicorn_uwsgi import _native

#: One uwsgi request: ``method``, ``path``, ``query``, ``uri``, ``raw_path``, ``version``,
#: ``headers``, ``body``, ``remote_addr`` as gunicorn's ``Request`` has them, plus
#: ``uwsgi_vars``, ``head`` (the parsed ``_native.Head``), ``peer_addr``, ``req_number`` and
#: ``scheme``. ``UWSGIRequest(head, body, peer_addr, req_number=1, scheme="http")``; hooks may
#: set attributes of their own on it. ``req_number`` is the request's number on its connection,
#: as in gunicorn: always 1, a uwsgi connection carries one request (F5).
UWSGIRequest = _native.UWSGIRequest

__all__ = ["UWSGIRequest"]
