"""What the protocol layer takes from gunicorn's settings, compiled once per worker."""

from __future__ import annotations

import os
import weakref
from typing import Any

from gunicorn.http.wsgi import base_environ

from gunicorn_uwsgi import _native

#: gunicorn's default for ``uwsgi_allow_ips``, used where gunicorn has no such setting (A1).
DEFAULT_ALLOW_IPS = tuple(_native.DEFAULT_ALLOW_IPS)
#: gunicorn's request limits by default (V4), for a cfg that lacks them.
_LIMITS = _native.Limits()


def _setting(cfg: Any, name: str, default: Any) -> Any:
    try:
        value = getattr(cfg, name)
    except AttributeError:
        return default
    return default if value is None else value


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


class _WithDefaults:
    """``cfg`` with gunicorn's default for any setting it lacks: a partial config object (as in
    gunicorn's own parser tests) is enough for gunicorn's parser, so it is for ours."""

    def __init__(self, cfg: Any) -> None:
        self._cfg = cfg

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(self._cfg, name)
        except AttributeError:
            from gunicorn.config import Config

            return getattr(Config(), name)


def _base_environ(cfg: Any) -> dict[str, Any]:
    try:
        base: dict[str, Any] = base_environ(cfg)
    except AttributeError:
        base = base_environ(_WithDefaults(cfg))
    return base


def _no_early_hints(headers: Any) -> None:
    """``wsgi.early_hints``: nginx has no 1xx support, so hints are dropped (R6)."""


def read_timeout(cfg: Any) -> float:
    """Seconds a peer may stall while sending (F8): half the worker timeout, so the arbiter
    never has to kill a worker for a slow peer."""
    timeout = _setting(cfg, "timeout", 30) or 30
    return max(0.1, min(float(timeout) / 2.0, 30.0))


class ProtocolSettings:
    """The compiled per-worker state: limits, allow lists, the constant environ."""

    def __init__(self, cfg: Any, multithread: bool = False) -> None:
        self.cfg = cfg
        self.limits = _native.Limits(
            int(_setting(cfg, "limit_request_line", _LIMITS.request_line)),
            int(_setting(cfg, "limit_request_fields", _LIMITS.fields)),
            int(_setting(cfg, "limit_request_field_size", _LIMITS.field_size)),
        )
        self.allow_entries = _as_list(_setting(cfg, "uwsgi_allow_ips", DEFAULT_ALLOW_IPS))
        self.allow = _native.AllowList(self.allow_entries)
        self.forwarded = _native.AllowList(
            _as_list(_setting(cfg, "forwarded_allow_ips", DEFAULT_ALLOW_IPS))
        )
        secure = _setting(cfg, "secure_scheme_headers", {}) or {}
        self.secure_headers = {
            "HTTP_" + name.upper().replace("-", "_"): value for name, value in secure.items()
        }
        self.is_ssl = bool(_setting(cfg, "is_ssl", False))
        self.sendfile = _setting(cfg, "sendfile", None) is not False
        self.timeout = read_timeout(cfg)
        base = _base_environ(cfg)
        base["wsgi.multithread"] = multithread
        base["wsgi.early_hints"] = _no_early_hints
        self.base_environ = base
        #: gunicorn's ``SCRIPT_NAME`` environment variable (E3), read when the worker starts.
        self.script_name: str = os.environ.get("SCRIPT_NAME", "")
        #: All of it compiled once for every native path: the Rust cycle, the request
        #: object's environ and scheme, the parser and ``create``.
        self.native = _native.Settings(
            self.limits,
            self.allow,
            self.forwarded,
            base,
            self.script_name,
            self.secure_headers or None,
            self.is_ssl,
            self.sendfile,
        )


_cache: weakref.WeakKeyDictionary[Any, ProtocolSettings] = weakref.WeakKeyDictionary()


#: The settings last asked for: a worker, or a program using the parser API, has one cfg.
_last: tuple[Any, ProtocolSettings | None] = (None, None)


def settings_for(cfg: Any) -> ProtocolSettings:
    """The settings compiled for ``cfg``, made on first use (for the public parser API and
    ``create``)."""
    global _last
    last_cfg, last = _last
    if last_cfg is cfg and last is not None:
        return last
    try:
        settings = _cache[cfg]
    except (KeyError, TypeError):
        settings = ProtocolSettings(cfg)
        try:
            _cache[cfg] = settings
        except TypeError:  # cfg cannot be weakly referenced: do not cache
            pass
    _last = (cfg, settings)
    return settings
