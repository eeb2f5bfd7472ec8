"""gunicorn's ``pre_request`` and ``post_request`` hooks in the Rust request cycle (G3): the
fast path calls them itself, with gunicorn's request object, the environ as the application
left it and the response writer. ``GUNICORN_UWSGI_FAST_PATH=0`` forces the Python path, the
reference: both paths must show the hooks the same request, the same environ and response,
whatever happens (an application that raises, a hook that raises), and the worker must still
restart after ``max_requests``.

Every server of this module reads the same config file (``HOOKS``), which writes one JSON line
per hook call to the file named by ``HOOKS_OUT``; the ``X-Case`` header of each request names
its records. A hook records ``type(environ["gunicorn.socket"]).__name__`` and the Python
function that called it: ``Connection`` and the worker's batch loop on the fast path (the Rust
cycle ran the hooks), ``socket`` and ``serve`` on the Python path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import (
    WORKERS,
    Gunicorn,
    Reply,
    exchange,
    request_packet,
    require_worker,
    wait_until,
    worker_args,
    worker_id,
)

HOOKS = """
import json
import os
import sys

from gunicorn_uwsgi.message import UWSGIRequest

_OUT = os.environ["HOOKS_OUT"]


def _out(record):
    with open(_OUT, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\\n")


def _flag(req, name):
    return req.uwsgi_vars.get("HTTP_X_" + name)


def pre_request(worker, req):
    number = getattr(req, "req_number", None)
    _out({
        "hook": "pre_request",
        "case": _flag(req, "CASE"),
        "pid": os.getpid(),
        "caller": sys._getframe(1).f_code.co_name,
        "is_uwsgi_request": type(req) is UWSGIRequest,
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "uri": req.uri,
        "raw_path": req.raw_path.decode("latin-1"),
        "version": list(req.version),
        "headers": [list(h) for h in req.headers],
        "remote_addr": list(req.remote_addr),
        "peer_addr": repr(req.peer_addr),
        "uwsgi_vars": req.uwsgi_vars,
        "scheme": req.scheme,
        "req_number": number if isinstance(number, int) else repr(number),
        "body": req.body.read(5).decode("latin-1"),
    })
    req.hook_tag = "set by pre_request"
    if _flag(req, "HOOK_RAISE") == "pre":
        raise RuntimeError("pre_request boom")


def post_request(worker, req, environ, resp):
    sock = environ.get("gunicorn.socket")
    headers = getattr(resp, "headers", None)
    _out({
        "hook": "post_request",
        "case": _flag(req, "CASE"),
        "pid": os.getpid(),
        "caller": sys._getframe(1).f_code.co_name,
        "socket": None if sock is None else type(sock).__name__,
        "environ_is_dict": type(environ) is dict,
        "environ_empty": not environ,
        "environ_keys": sorted(environ),
        "path_info": environ.get("PATH_INFO"),
        "url_scheme": environ.get("wsgi.url_scheme"),
        "body_is_input": req.body is environ.get("wsgi.input"),
        "tag": getattr(req, "hook_tag", None),
        "scheme": req.scheme,
        "req_number": getattr(req, "req_number", None),
        "resp_is_none": resp is None,
        "status": getattr(resp, "status", None),
        "status_code": getattr(resp, "status_code", None),
        "sent": getattr(resp, "sent", None),
        "headers_sent": getattr(resp, "headers_sent", None),
        "resp_headers": None if headers is None else [list(h) for h in headers],
    })
    if _flag(req, "HOOK_RAISE") == "post":
        raise RuntimeError("post_request boom")
"""

#: The fields that say which path ran the hooks, compared apart from the rest.
PATH_FIELDS = ("socket", "caller", "pid")


def write_config(tmp: Path) -> Path:
    conf = tmp / "hooks.conf.py"
    conf.write_text(HOOKS)
    return conf


def hooked(tmp: Path, worker: str, conf: Path, fast: bool, args: tuple[str, ...] = ()) -> Gunicorn:
    """A gunicorn serving the echo app with the hooks of ``conf``, on the fast path or (with
    ``GUNICORN_UWSGI_FAST_PATH=0``) on the Python path."""
    env = {"HOOKS_OUT": str(tmp / "hooks.jsonl")}
    if not fast:
        env["GUNICORN_UWSGI_FAST_PATH"] = "0"
    return Gunicorn(
        tmp,
        tcp=False,
        worker=worker,
        args=[*worker_args(worker), "-c", str(conf), *args],
        env=env,
    )


def start_both(*servers: Gunicorn) -> None:
    for server in servers:
        server.start(wait=False)
    for server in servers:
        server.wait_ready()


def all_records(server: Gunicorn) -> list[dict[str, Any]]:
    out = Path(server.env["HOOKS_OUT"])
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line]


def records(server: Gunicorn, case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pre_request and post_request records of the request ``case`` (exactly one each),
    waiting for post_request to have written its line."""

    def of(hook: str) -> list[dict[str, Any]]:
        return [r for r in all_records(server) if r["case"] == case and r["hook"] == hook]

    wait_until(lambda: of("post_request"), timeout=10)
    pre, post = of("pre_request"), of("post_request")
    assert len(pre) == 1 and len(post) == 1, (case, all_records(server), server.log())
    return pre[0], post[0]


Difference = tuple[str, str, str, Any, Any]


def differences(fast_record: dict[str, Any], slow_record: dict[str, Any]) -> list[Difference]:
    """What a hook saw differently on the fast path and on the Python path, as ``(case,
    hook, field, fast value, Python value)``, leaving out what names the path
    (``PATH_FIELDS``), which ``assert_path_fields`` checks."""
    fields = sorted((set(fast_record) | set(slow_record)) - set(PATH_FIELDS))
    return [
        (fast_record["case"], fast_record["hook"], k, fast_record.get(k), slow_record.get(k))
        for k in fields
        if fast_record.get(k) != slow_record.get(k)
    ]


def assert_path_fields(fast_record: dict[str, Any], slow_record: dict[str, Any]) -> None:
    """The fast path's hooks ran in the Rust cycle: called from the worker's loop around it,
    not from the Python path's ``serve``, and ``gunicorn.socket`` is its ``Connection``."""
    assert slow_record["caller"] == "serve", slow_record
    assert fast_record["caller"] != "serve", fast_record
    if fast_record["hook"] == "post_request" and not fast_record["environ_empty"]:
        assert fast_record["socket"] == "Connection", fast_record
        assert slow_record["socket"] not in (None, "Connection"), slow_record


def compare(fast: Gunicorn, slow: Gunicorn, cases: list[str]) -> list[Difference]:
    """Checks the path fields of the records of ``cases`` and returns their differences."""
    found: list[Difference] = []
    for case in cases:
        for fast_record, slow_record in zip(records(fast, case), records(slow, case)):
            assert_path_fields(fast_record, slow_record)
            found += differences(fast_record, slow_record)
    return found


def report(found: list[Difference]) -> str:
    return "the hooks saw differently (case, hook, field, fast path, Python path):\n" + "\n".join(
        repr(d) for d in found
    )


@pytest.fixture(scope="module", params=WORKERS, ids=worker_id)
def servers(request, tmp_path_factory) -> Iterator[tuple[Gunicorn, Gunicorn]]:
    """A fast-path and a Python-path server of one worker class, with the same hooks."""
    worker = request.param
    require_worker(worker)
    name = worker_id(worker)
    conf = write_config(tmp_path_factory.mktemp(f"hooks-conf-{name}"))
    fast = hooked(tmp_path_factory.mktemp(f"hooks-fast-{name}"), worker, conf, fast=True)
    slow = hooked(tmp_path_factory.mktemp(f"hooks-slow-{name}"), worker, conf, fast=False)
    try:
        start_both(fast, slow)
        yield fast, slow
    finally:
        fast.stop()
        slow.stop()


def ask_both(servers: tuple[Gunicorn, Gunicorn], data: bytes) -> tuple[Reply, Reply]:
    return Reply(exchange(servers[0].unix, data)), Reply(exchange(servers[1].unix, data))


def case_packet(case: str, headers: tuple[tuple[str, str], ...] = (), **kw: Any) -> bytes:
    return request_packet(headers=[("X-Case", case), *headers], **kw)


#: The requests whose hook records both paths must agree on: (what the client sends, the
#: status it must get, the body it must get or None).
CASES = {
    "get-query-headers": (
        dict(path="/hello", query="a=1&b=%20x", headers=(("X-Trace", "t1"), ("Accept", "*/*"))),
        200,
        b"Hello world\n",
    ),
    "post-partly-read": (
        dict(method="POST", path="/echo", query="q=2", body=b"hello world"),
        200,
        b" world",  # pre_request read the first five bytes
    ),
    "https-scheme": (dict(path="/hello", HTTPS="on"), 200, b"Hello world\n"),
    "head": (dict(method="HEAD", path="/hello"), 200, b""),
    "app-raises": (dict(path="/raise"), 500, None),
}


def test_g3_x2_e7_hooks_see_the_same_request_on_both_paths(servers):
    """G3: pre_request gets gunicorn's request object (method, path, query, uri, version,
    headers, remote_addr, uwsgi_vars, req_number) with ``req.body`` readable, the application
    then reading the rest of it; E7: ``req.scheme`` is set before pre_request (HTTPS=on);
    post_request gets the same request (with the attribute pre_request set on it, ``req.body``
    the environ's ``wsgi.input``), the environ as the application left it and the response,
    also for HEAD and for an application that raises (X2). Every record is the same on the
    fast path and on the Python path, but for ``gunicorn.socket``: the Rust cycle's
    ``Connection`` on the fast path, proving the hooks ran there."""
    fast, slow = servers
    found: list[Difference] = []
    for case, (kw, status, body) in CASES.items():
        fast_reply, slow_reply = ask_both(servers, case_packet(case, **kw))
        assert fast_reply.raw == slow_reply.raw, case
        assert fast_reply.status == status, (case, fast_reply)
        if body is not None:
            assert fast_reply.body == body, (case, fast_reply)
        found += compare(fast, slow, [case])
        fast_pre, fast_post = records(fast, case)
        slow_post = records(slow, case)[1]
        # What the records must say, on both paths.
        assert fast_pre["is_uwsgi_request"] is True
        assert fast_pre["remote_addr"] == ["203.0.113.9", 40000]
        assert ["X-CASE", case] in fast_pre["headers"]
        assert fast_pre["uwsgi_vars"]["DOCUMENT_ROOT"] == "/var/www/html"
        assert fast_post["tag"] == "set by pre_request"
        assert fast_post["body_is_input"] is True
        assert fast_post["environ_empty"] is False
        assert fast_post["path_info"] == kw["path"]
        assert fast_post["socket"] == "Connection"
        assert slow_post["socket"] == "socket"
        assert fast_pre["pid"] in fast.live_worker_pids()

    pre, post = records(fast, "get-query-headers")
    assert (pre["method"], pre["path"], pre["query"], pre["uri"], pre["version"]) == (
        "GET",
        "/hello",
        "a=1&b=%20x",
        "/hello?a=1&b=%20x",
        [1, 1],
    )
    assert ["X-TRACE", "t1"] in pre["headers"] and ["ACCEPT", "*/*"] in pre["headers"]
    assert pre["uwsgi_vars"]["HTTP_X_TRACE"] == "t1"
    assert pre["scheme"] == "http" and pre["body"] == ""
    assert (post["status"], post["sent"]) == ("200 OK", 12)

    pre, post = records(fast, "post-partly-read")
    assert (pre["method"], pre["uri"], pre["body"]) == ("POST", "/echo?q=2", "hello")
    assert post["status"] == "200 OK" and post["sent"] == len(b" world")

    pre, post = records(fast, "https-scheme")
    assert pre["scheme"] == "https" and post["scheme"] == "https"  # E7
    assert post["url_scheme"] == "https"

    pre, post = records(fast, "head")
    assert pre["method"] == "HEAD" and post["status"] == "200 OK"

    pre, post = records(fast, "app-raises")
    assert post["path_info"] == "/raise" and post["resp_is_none"] is False
    assert not found, report(found)


def log_after(server: Gunicorn, offset: int, pattern: str) -> str:
    """The server's log written after ``offset``, once it matches ``pattern``."""
    wait_until(lambda: re.search(pattern, server.log()[offset:], re.S), timeout=10)
    return server.log()[offset:]


def test_g3_post_request_that_raises_is_logged_and_the_worker_goes_on(servers):
    """G3: a post_request that raises an Exception changes nothing for the client (the whole
    response, as without the failure); it is logged as "Exception in post_request hook" with
    its traceback, and the same worker serves the next request. Both paths alike."""
    for server in servers:
        pids = server.live_worker_pids()
        offset = len(server.log())
        case = "post-raises"
        raw = exchange(server.unix, case_packet(case, (("X-Hook-Raise", "post"),), path="/hello"))
        assert raw == exchange(server.unix, request_packet(path="/hello")), raw
        reply = Reply(raw)
        assert (reply.status, reply.header("Content-Length"), reply.body) == (
            200,
            "12",
            b"Hello world\n",
        )
        log = log_after(server, offset, r"Exception in post_request hook.*post_request boom")
        hook_error = log[log.index("[ERROR] Exception in post_request hook") :]
        assert hook_error.startswith(
            "[ERROR] Exception in post_request hook\nTraceback (most recent call last):\n"
        ), log
        assert "RuntimeError: post_request boom" in hook_error, log
        assert 'in post_request\n    raise RuntimeError("post_request boom")' in hook_error, log
        _, post = records(server, case)
        assert post["status"] == "200 OK"
        nxt = Reply(exchange(server.unix, case_packet("after-post-raises", path="/hello")))
        assert nxt.body == b"Hello world\n"
        records(server, "after-post-raises")
        assert server.live_worker_pids() == pids
    found = compare(*servers, ["post-raises", "after-post-raises"])
    assert not found, report(found)


def test_g3_x2_pre_request_that_raises_gets_a_500_and_post_request_runs(servers):
    """G3, X2: a pre_request that raises fails the request like the application would: a 500
    to the client, the error and its traceback in the log; post_request still runs (with an
    empty environ: it was never built), as on the Python path; the worker serves the next
    request."""
    for server in servers:
        pids = server.live_worker_pids()
        offset = len(server.log())
        case = "pre-raises"
        raw = exchange(server.unix, case_packet(case, (("X-Hook-Raise", "pre"),), path="/hello"))
        assert Reply(raw).status == 500, raw
        log = log_after(server, offset, r"RuntimeError: pre_request boom")
        said = "[ERROR] Error handling request GET /hello\nTraceback (most recent call last):\n"
        assert said in log, log
        assert 'raise RuntimeError("pre_request boom")' in log, log
        pre, post = records(server, case)
        assert pre["path"] == "/hello"
        assert post["environ_empty"] is True and post["environ_is_dict"] is True
        assert post["tag"] == "set by pre_request"
        nxt = Reply(exchange(server.unix, case_packet("after-pre-raises", path="/hello")))
        assert nxt.body == b"Hello world\n"
        records(server, "after-pre-raises")
        assert server.live_worker_pids() == pids
    fast, slow = servers
    assert exchange(fast.unix, case_packet("pre-raises-2", (("X-Hook-Raise", "pre"),))) == (
        exchange(slow.unix, case_packet("pre-raises-2", (("X-Hook-Raise", "pre"),)))
    )
    found = compare(fast, slow, ["pre-raises", "after-pre-raises", "pre-raises-2"])
    assert not found, report(found)


MAX_REQUESTS = 5


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_g2_g3_max_requests_with_hooks(tmp_path, worker):
    """G2, G3: with request hooks the fast path still counts the requests: the worker
    restarts after ``--max-requests 5`` as on the Python path, its hooks having run in the
    Rust cycle for each of the five, and the next worker serves on."""
    require_worker(worker)
    conf = write_config(tmp_path)
    args = ("--max-requests", str(MAX_REQUESTS))
    (tmp_path / "fast").mkdir()
    (tmp_path / "slow").mkdir()
    fast = hooked(tmp_path / "fast", worker, conf, fast=True, args=args)
    slow = hooked(tmp_path / "slow", worker, conf, fast=False, args=args)
    try:
        start_both(fast, slow)
        both = (fast, slow)
        first = {server: server.live_worker_pids() for server in both}
        assert all(len(pids) == 1 for pids in first.values()), first
        cases = [f"r{i}" for i in range(MAX_REQUESTS)]
        for i, case in enumerate(cases):
            for server in both:
                reply = Reply(exchange(server.unix, case_packet(case, path="/hello")))
                assert reply.body == b"Hello world\n", reply
                if i < MAX_REQUESTS - 1:
                    assert "Autorestarting" not in server.log(), (case, server.log())
        for server in both:
            assert wait_until(lambda s=server: "Autorestarting worker" in s.log(), timeout=10), (
                server.log()
            )
        for server in both:
            assert wait_until(lambda s=server: s.worker_pids()[-1] not in first[s]), server.log()
            reply = Reply(exchange(server.unix, case_packet("next", path="/hello")))
            assert reply.body == b"Hello world\n", reply
            pids = [records(server, case)[0]["pid"] for case in [*cases, "next"]]
            assert pids[:-1] == first[server] * MAX_REQUESTS, pids
            assert pids[-1] not in first[server], pids
        found = compare(fast, slow, [*cases, "next"])
        assert not found, report(found)
    finally:
        fast.stop()
        slow.stop()
