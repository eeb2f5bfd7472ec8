"""End-to-end tests that need gunicorn settings of their own: limits (V4), read timeout (F8),
SCRIPT_NAME (E3), forwarded_allow_ips (E7), workers (E8), the allow list (A1-A5) and the
gunicorn integration (G1-G5). Each server is shared by the tests of its class.

What a worker class does itself (reading with a timeout, the allow check, signals, hooks,
max_requests, TLS, several listeners) is checked on every worker class (``WORKERS``); what
only the protocol core or the arbiter does (limits, SCRIPT_NAME, socket activation) on the
sync worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import (
    PROBE_APP,
    TRANSPORTS,
    LogMark,
    address_of,
    assert_refused,
    good_request,
    talk,
    trickle,
)

from support import (
    SYNC,
    TESTS,
    WORKERS,
    Gunicorn,
    Reply,
    connect,
    free_port,
    ipv6_available,
    is_multithread,
    packet,
    read_all,
    request_packet,
    require_worker,
    wait_until,
    worker_args,
    worker_id,
)

GET = ("REQUEST_METHOD", "GET")


def serving(tmp, worker: str = SYNC, args=(), **kw) -> Gunicorn:
    """A gunicorn serving the probe app with ``worker`` (as the shared suites run it)."""
    require_worker(worker)
    return Gunicorn(tmp, app=PROBE_APP, worker=worker, args=[*worker_args(worker), *args], **kw)


def start(
    tmp_path_factory: pytest.TempPathFactory, name: str, *args: str, worker: str = SYNC, **kw
) -> Gunicorn:
    tmp = tmp_path_factory.mktemp(f"{name}-{worker_id(worker)}")
    return serving(tmp, worker, args, **kw).start()


#: Parametrises a test over every worker class.
every_worker = pytest.mark.parametrize("worker", WORKERS, ids=worker_id)


def env_of(address, pairs, body=b"", modifier1=0) -> dict:
    reply = Reply(talk(address, packet(pairs, body, modifier1=modifier1))[0])
    assert reply.status == 200, reply
    return reply.json()


# -- V4: limits ---------------------------------------------------------------------------------


class TestV4Limits:
    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory) -> Iterator[Gunicorn]:
        g = start(
            tmp_path_factory,
            "limits",
            "--limit-request-line",
            "100",
            "--limit-request-fields",
            "5",
            "--limit-request-field_size",
            "50",
        )
        yield g
        g.stop()

    def test_v4_limit_request_line_is_414(self, server):
        """V4: REQUEST_URI over --limit-request-line 100 → 414; exactly 100 is served."""
        env = env_of(server.tcp, [GET, ("PATH_INFO", "/environ"), ("REQUEST_URI", "/" + "u" * 99)])
        assert len(env["REQUEST_URI"]) == 100
        data = packet([GET, ("PATH_INFO", "/hello"), ("REQUEST_URI", "/" + "u" * 100)])
        assert_refused(server, server.tcp, data, 414, "101", "limit_request_line (100)")

    def test_v4_limit_request_line_ignores_path_info(self, server):
        """V4: the limit bounds REQUEST_URI, not PATH_INFO or QUERY_STRING."""
        env = env_of(
            server.tcp, [GET, ("PATH_INFO", "/environ/" + "p" * 200), ("QUERY_STRING", "q" * 200)]
        )
        assert len(env["PATH_INFO"]) == 209

    def test_v4_limit_request_fields_is_431(self, server):
        """V4: more than --limit-request-fields 5 HTTP_* vars → 431."""
        pairs = [GET, ("PATH_INFO", "/environ")] + [(f"HTTP_X_{i}", "v") for i in range(5)]
        pairs += [(f"OTHER_{i}", "v") for i in range(20)]
        assert env_of(server.tcp, pairs)["HTTP_X_4"] == "v"
        pairs.append(("HTTP_X_5", "v"))
        assert_refused(server, server.tcp, packet(pairs), 431, "limit_request_fields")

    def test_v4_limit_request_field_size_is_431(self, server):
        """V4: an HTTP_* var over --limit-request-field-size 50 → 431; other vars are not
        bounded by it."""
        pairs = [
            GET,
            ("PATH_INFO", "/environ"),
            ("HTTP_X_OK", "v" * 30),
            ("DOCUMENT_ROOT", "d" * 500),
        ]
        assert env_of(server.tcp, pairs)["DOCUMENT_ROOT"] == "d" * 500
        data = packet([GET, ("PATH_INFO", "/hello"), ("HTTP_X_BIG", "v" * 60)])
        assert_refused(server, server.tcp, data, 431, "HTTP_X_BIG", "limit_request_field_size (50)")


class TestV4Unlimited:
    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory) -> Iterator[Gunicorn]:
        g = start(
            tmp_path_factory,
            "unlimited",
            "--limit-request-line",
            "0",
            "--limit-request-fields",
            "0",
            "--limit-request-field_size",
            "0",
        )
        yield g
        g.stop()

    def test_v4_zero_means_unlimited(self, server):
        """V4: 0 means unlimited, as in gunicorn."""
        pairs = [GET, ("PATH_INFO", "/environ"), ("REQUEST_URI", "/" + "u" * 20000)]
        pairs += [(f"HTTP_X_{i}", "v") for i in range(300)]
        pairs.append(("HTTP_X_HUGE", "h" * 30000))
        env = env_of(server.tcp, pairs)
        assert len(env["REQUEST_URI"]) == 20001 and len(env["HTTP_X_HUGE"]) == 30000

    def test_v4_1000_vars_still_bounded(self, server):
        """V4: the 1000 vars cap holds even with the gunicorn limits off."""
        pairs = [GET, ("PATH_INFO", "/hello")] + [(f"V{i}", "") for i in range(999)]
        assert_refused(server, server.tcp, packet(pairs), 431, "1000 vars")


# -- F8: slow peers -----------------------------------------------------------------------------


class TestF8SlowPeer:
    """--timeout 4: the read timeout is 2 s, and the arbiter kills a worker silent for 4 s."""

    @pytest.fixture(scope="class", params=WORKERS, ids=worker_id)
    @classmethod
    def server(cls, request, tmp_path_factory) -> Iterator[Gunicorn]:
        g = start(tmp_path_factory, "slow", "--timeout", "4", worker=request.param)
        yield g
        g.stop()

    def _stalled(self, server, sends, expect):
        pids = server.live_worker_pids()
        mark = LogMark(server)
        raw, peer, elapsed = trickle(server.tcp, sends, 1.5)
        line = mark.wait_for(r"\[WARNING\].*" + peer.replace(".", r"\."))
        assert "dropped" in line and expect in line, line
        assert raw == b""
        assert elapsed < 8, elapsed
        # The worker was not killed: same pid, it serves, no WORKER TIMEOUT.
        good_request(server.tcp)
        time.sleep(0.5)
        assert "WORKER TIMEOUT" not in server.log()
        assert "Traceback" not in mark.new()
        assert server.live_worker_pids() == pids
        return elapsed

    @pytest.mark.parametrize("where", ["header", "vars", "body"])
    def test_f8_stalled_peer_is_dropped_without_killing_the_worker(self, server, where):
        """F8: a peer that stops sending in the header, the vars or the body is dropped after
        the read timeout (2 s), before the arbiter's 4 s."""
        data = request_packet(method="POST", path="/echo", body=b"b" * 100)
        cut = {"header": 2, "vars": 30, "body": len(data) - 50}[where]
        elapsed = self._stalled(server, [data[:cut]], "body" if where == "body" else "head")
        assert elapsed > 1.5

    @pytest.mark.parametrize("where", ["head", "body"])
    def test_f8_trickling_peer_is_dropped_without_killing_the_worker(self, server, where):
        """F8: a peer that sends a byte now and then, never stalling a whole read timeout,
        is still dropped before the arbiter would kill the worker."""
        data = request_packet(method="POST", path="/echo", body=b"b" * 10)
        head = len(data) - 10
        start_at = 10 if where == "head" else head + 1
        sends = [data[:start_at]] + [data[i : i + 1] for i in range(start_at, start_at + 6)]
        self._stalled(server, sends, "body" if where == "body" else "head")


# -- E3, E7, E8 ---------------------------------------------------------------------------------


class TestE3ScriptNameEnvironment:
    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory) -> Iterator[Gunicorn]:
        g = start(tmp_path_factory, "script-name", env={"SCRIPT_NAME": "/app"})
        yield g
        g.stop()

    def test_e3_script_name_from_the_environment(self, server):
        """E3: no SCRIPT_NAME var: gunicorn's SCRIPT_NAME environment variable, removed from
        PATH_INFO."""
        env = env_of(server.tcp, [GET, ("PATH_INFO", "/app/environ/x")])
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ/x")

    def test_e3_script_name_var_wins(self, server):
        """E3: a SCRIPT_NAME var is taken over the environment variable."""
        env = env_of(server.tcp, [GET, ("PATH_INFO", "/environ"), ("SCRIPT_NAME", "/other")])
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/other", "/environ")

    def test_e3_modifier1_30_with_environment_script_name(self, server):
        """E3/F4: modifier1 30 strips the environment's SCRIPT_NAME on a / boundary only."""
        env = env_of(server.tcp, [GET, ("PATH_INFO", "/app/environ")], modifier1=30)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")

    def test_e3_path_outside_script_name_is_500(self, server):
        """E3: as gunicorn: a PATH_INFO outside SCRIPT_NAME is a configuration problem (500)."""
        pids = server.live_worker_pids()
        mark = LogMark(server)
        reply = Reply(talk(server.tcp, packet([GET, ("PATH_INFO", "/environ")]))[0])
        assert reply.status == 500
        mark.wait_for(r"does not start with SCRIPT_NAME")
        good = Reply(talk(server.tcp, packet([GET, ("PATH_INFO", "/app/hello")]))[0])
        assert good.status == 200
        assert server.live_worker_pids() == pids


class TestE7UntrustedForwarder:
    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory) -> Iterator[Gunicorn]:
        g = start(tmp_path_factory, "forwarded", "--forwarded-allow-ips", "10.9.9.9")
        yield g
        g.stop()

    def test_e7_secure_headers_from_untrusted_peer_ignored(self, server):
        """E7: 127.0.0.1 is not in --forwarded-allow-ips: X-Forwarded-Proto is ignored, the
        uwsgi vars still count."""
        pairs = [GET, ("PATH_INFO", "/environ"), ("HTTP_X_FORWARDED_PROTO", "https")]
        assert env_of(server.tcp, pairs)["wsgi.url_scheme"] == "http"
        assert env_of(server.tcp, [*pairs, ("HTTPS", "on")])["wsgi.url_scheme"] == "https"

    def test_e7_unix_peer_is_trusted_as_gunicorn_does(self, server):
        """E7: gunicorn trusts unix-socket peers for secure_scheme_headers."""
        pairs = [GET, ("PATH_INFO", "/environ"), ("HTTP_X_FORWARDED_PROTO", "https")]
        assert env_of(server.unix, pairs)["wsgi.url_scheme"] == "https"


@every_worker
def test_e8_multiprocess_with_two_workers(tmp_path, worker):
    """E8: wsgi.multiprocess is True with --workers 2 (False with one: see the protocol
    tests); wsgi.multithread does not depend on it."""
    g = serving(tmp_path, worker, ["--workers", "2"])
    g.start(wait=False)
    try:
        g.wait_ready(workers=2)
        keys = env_of(g.tcp, [GET, ("PATH_INFO", "/probe/keys")])
        assert keys["wsgi.multiprocess"] is True
        assert keys["wsgi.multithread"] is is_multithread(worker)
    finally:
        g.stop()


# -- A: allow list ------------------------------------------------------------------------------


class TestA1AllowList:
    @pytest.fixture(scope="class", params=WORKERS, ids=worker_id)
    @classmethod
    def server(cls, request, tmp_path_factory) -> Iterator[Gunicorn]:
        g = start(
            tmp_path_factory,
            "allow",
            "--uwsgi-allow-from",
            "10.0.0.0/8",
            worker=request.param,
            ipv6=ipv6_available(),
        )
        yield g
        g.stop()

    @pytest.mark.parametrize("transport", TRANSPORTS)
    def test_a1_a3_a4_allow_list_per_transport(self, server, transport):
        """A1/A4: 127.0.0.1 and ::1 are not in 10.0.0.0/8: 403, with a warning naming the peer
        and the setting; A3: a unix-socket peer is always allowed."""
        address = address_of(server, transport)
        if transport == "unix":
            good_request(address)
            return
        pids = server.live_worker_pids()
        mark = LogMark(server)
        raw, peer = talk(address, request_packet(path="/hello"))
        reply = Reply(raw)
        assert reply.status == 403
        assert reply.header("Content-Length") == str(len(reply.body))
        line = mark.wait_for(
            r"\[WARNING\].*" + peer.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")
        )
        host = address[0]
        assert f"'{host}'" in line
        assert "uwsgi_allow_ips" in line and "--uwsgi-allow-from" in line
        assert "Traceback" not in mark.new()
        assert server.live_worker_pids() == pids
        good_request(server.unix)

    def test_a4_refused_before_a_byte_is_read(self, server):
        """A4: the check runs right after accept: the 403 comes without sending anything."""
        with connect(server.tcp, timeout=5) as s:
            started = time.monotonic()
            raw = read_all(s)
        assert Reply(raw).status == 403
        assert time.monotonic() - started < 2


class TestA1SingleAddress:
    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory) -> Iterator[Gunicorn]:
        g = start(
            tmp_path_factory, "allow-one", "--uwsgi-allow-from", "127.0.0.1", ipv6=ipv6_available()
        )
        yield g
        g.stop()

    def test_a1_address_entry(self, server):
        """A1: a plain address entry allows that address only."""
        good_request(server.tcp)
        good_request(server.unix)
        if server.tcp6:
            assert Reply(talk(server.tcp6, request_packet(path="/hello"))[0]).status == 403


def test_a1_default_allows_loopback(tmp_path):
    """A1: the default list is 127.0.0.1,::1 (the module-wide protocol tests rely on it too);
    127.0.0.2 is loopback but not in it."""
    with Gunicorn(tmp_path, app=PROBE_APP, ipv6=ipv6_available()) as g:
        for address in g.addresses():
            good_request(address)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            try:
                s.bind(("127.0.0.2", 0))
            except OSError:
                pytest.skip("cannot bind 127.0.0.2")
            s.connect(g.tcp)
            s.sendall(request_packet(path="/hello"))
            assert Reply(read_all(s)).status == 403


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6")
def test_a2_ipv4_mapped_peer_matches_as_ipv4(tmp_path):
    """A2: on an IPv6 listener a v4 client shows as ::ffff:127.0.0.1 and is matched as
    127.0.0.1 (listener bound to the v4-mapped loopback address only)."""
    port = free_port()
    g = Gunicorn(
        tmp_path,
        app=PROBE_APP,
        tcp=False,
        args=["--bind", f"[::ffff:127.0.0.1]:{port}", "--uwsgi-allow-from", "127.0.0.1"],
    )
    g.start(wait=False)
    try:
        if not wait_until(lambda: g.proc.poll() is not None or g.worker_pids(), timeout=20):
            raise AssertionError(g.output())
        if g.proc.poll() is not None:
            pytest.skip(f"cannot bind a v4-mapped address: {g.output()[-300:]}")
        g.wait_ready()
        with connect(("127.0.0.1", port)) as s:
            s.sendall(request_packet(path="/environ"))
            reply = Reply(read_all(s))
        assert reply.status == 200, reply
        env = env_of(("127.0.0.1", port), [GET, ("PATH_INFO", "/environ")])
        assert env["REMOTE_ADDR"] == "::ffff:127.0.0.1"
    finally:
        g.stop()


@every_worker
@pytest.mark.parametrize("entry", ["10.0.0.1/8", "not-an-address", "10.0.0.0/33"])
def test_a5_invalid_entry_stops_startup(tmp_path, entry, worker):
    """A5: an invalid entry (host bits set in a network, garbage) stops start-up with a
    message that names it. On gunicorn >= 24 that is gunicorn's own validator, before any
    worker starts: for host bits, ``Error: 10.0.0.1/8 has host bits set`` (docs/protocol.md)."""
    g = serving(tmp_path, worker, ["--uwsgi-allow-from", entry])
    g.start(wait=False)
    try:
        rc = g.proc.wait(30)
    finally:
        g.stop()
    assert rc != 0
    out = g.output()
    assert entry in out, out
    assert "Booting worker" not in out
    if entry == "10.0.0.1/8":
        assert "Error: 10.0.0.1/8 has host bits set" in out, out


def test_a5_star_on_non_loopback_bind_warns(tmp_path):
    """A5: '*' with a non-loopback TCP bind logs that the protocol has no authentication.
    (Bound to 0.0.0.0 for the check; traffic only goes to 127.0.0.1.)"""
    port = free_port()
    g = Gunicorn(
        tmp_path,
        app=PROBE_APP,
        tcp=False,
        args=["--bind", f"0.0.0.0:{port}", "--uwsgi-allow-from", "*"],
    )
    with g:
        good_request(("127.0.0.1", port))
        log = g.log()
    warnings = [line for line in log.splitlines() if "[WARNING]" in line]
    assert any("no authentication" in w and f"0.0.0.0:{port}" in w for w in warnings), log


def test_a5_star_on_loopback_does_not_warn(tmp_path):
    """A5: '*' on loopback and unix binds only: no warning; any peer is served."""
    with Gunicorn(tmp_path, app=PROBE_APP, args=["--uwsgi-allow-from", "*"]) as g:
        good_request(g.tcp)
        good_request(g.unix)
        assert "no authentication" not in g.log()


# -- G: gunicorn integration --------------------------------------------------------------------


@every_worker
def test_g2_max_requests_replaces_the_worker(tmp_path, worker):
    """G2: --max-requests 2: after two requests a new worker serves."""
    with serving(tmp_path, worker, ["--max-requests", "2"]) as g:
        first = g.live_worker_pids()
        assert len(first) == 1
        for _ in range(2):
            good_request(g.tcp)
        assert wait_until(lambda: g.live_worker_pids() and g.live_worker_pids() != first)
        g.wait_ready(workers=2)
        good_request(g.tcp)
        assert g.live_worker_pids() != first
        assert "Autorestarting worker" in g.log()


@every_worker
def test_g2_term_finishes_the_request_in_flight(tmp_path, worker):
    """G2: TERM lets the request in flight finish."""
    g = serving(tmp_path, worker).start()
    result: dict = {}

    def slow():
        result["raw"] = talk(g.tcp, request_packet(path="/sleep", query="1.5"))[0]

    t = threading.Thread(target=slow)
    try:
        t.start()
        time.sleep(0.5)
        g.send(signal.SIGTERM)
        t.join(15)
        assert g.proc.wait(15) == 0
    finally:
        g.stop()
    reply = Reply(result["raw"])
    assert reply.status == 200 and reply.body == b"slept"


@every_worker
def test_g2_int_stops_fast(tmp_path, worker):
    """G2: INT stops at once, without waiting for a long request."""
    g = serving(tmp_path, worker).start()
    t = threading.Thread(
        target=lambda: talk(g.tcp, request_packet(path="/sleep", query="8"), timeout=15)
    )
    try:
        t.start()
        time.sleep(0.5)
        started = time.monotonic()
        g.send(signal.SIGINT)
        g.proc.wait(15)
        assert time.monotonic() - started < 4
    finally:
        g.stop()
        t.join(15)


@every_worker
def test_g2_hup_reloads_with_a_new_worker(tmp_path, worker):
    """G2: HUP replaces the worker; the new one serves."""
    with serving(tmp_path, worker) as g:
        first = g.live_worker_pids()
        g.send(signal.SIGHUP)
        assert wait_until(
            lambda: g.live_worker_pids() and set(g.live_worker_pids()).isdisjoint(first)
        )
        g.wait_ready(workers=2)
        good_request(g.tcp)
        good_request(g.unix)


HOOKS = """
import json

worker_class = {worker!r}
timeout = 2


def _out(record):
    with open({out!r}, "a") as f:
        f.write(json.dumps(record) + "\\n")


def pre_request(worker, req):
    _out({{
        "hook": "pre_request",
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "uri": req.uri,
        "version": list(req.version),
        "headers": [list(h) for h in req.headers],
        "body": req.body.read(5).decode(),
        "remote_addr": list(req.remote_addr),
        "uwsgi_vars": req.uwsgi_vars,
        "scheme": req.scheme,
    }})


def post_request(worker, req, environ, resp):
    _out({{
        "hook": "post_request",
        "path": environ.get("PATH_INFO"),
        "status": resp.status if resp is not None else None,
    }})


def worker_abort(worker):
    _out({{"hook": "worker_abort"}})
"""


@every_worker
def test_g1_g3_config_file_and_hooks(tmp_path, worker):
    """G1: worker_class in the user's config file, no --protocol; G3: pre_request sees
    gunicorn's request attributes, uwsgi_vars and the scheme (E7), post_request the environ
    and response, worker_abort runs when the arbiter kills a sync worker stuck in the app
    (timeout = 2). The other workers keep beating the heartbeat while the application runs."""
    out = tmp_path / "hooks.jsonl"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(HOOKS.format(out=str(out), worker=worker))
    g = serving(tmp_path, worker)
    g.cmd.remove("--worker-class")
    g.cmd.remove(worker)
    g.cmd += ["-c", str(conf)]
    with g:
        data = request_packet(
            method="POST",
            path="/echo",
            query="a=1",
            body=b"hello world",
            headers=[("X-Trace", "t1")],
            HTTPS="on",
        )
        reply = Reply(talk(g.tcp, data)[0])
        assert reply.body == b" world"  # pre_request read the first five bytes
        records = [json.loads(line) for line in out.read_text().splitlines()]
        pre, post = records
        assert pre["hook"] == "pre_request"
        assert (pre["method"], pre["path"], pre["query"], pre["uri"]) == (
            "POST",
            "/echo",
            "a=1",
            "/echo?a=1",
        )
        assert pre["version"] == [1, 1]
        assert ["X-TRACE", "t1"] in pre["headers"] and ["HOST", "example.test"] in pre["headers"]
        assert pre["body"] == "hello"
        assert pre["remote_addr"] == ["203.0.113.9", 40000]
        assert pre["uwsgi_vars"]["DOCUMENT_ROOT"] == "/var/www/html"
        assert pre["uwsgi_vars"]["HTTP_X_TRACE"] == "t1"
        assert pre["scheme"] == "https"  # E7, before the environ is built
        assert post == {"hook": "post_request", "path": "/echo", "status": "200 OK"}
        if worker != SYNC:
            return
        # worker_abort: the app sleeps past the timeout, the arbiter aborts the worker.
        pids = g.live_worker_pids()
        talk(g.tcp, request_packet(path="/sleep", query="10"), timeout=15)
        assert wait_until(lambda: "worker_abort" in out.read_text(), timeout=10)
        assert wait_until(lambda: g.live_worker_pids() and g.live_worker_pids() != pids)
        g.wait_ready(workers=2)
        good_request(g.tcp)


@every_worker
def test_g4_access_log_shows_the_real_client(tmp_path, worker):
    """G4: --access-logfile with the default format and with --access-logformat: %(h)s is
    REMOTE_ADDR from the vars."""
    access = tmp_path / "access.log"
    fmt = "%(h)s|%(s)s|%(r)s|%(b)s|%(U)s|%(q)s|%({x-trace}i)s"
    with serving(
        tmp_path, worker, ["--access-logfile", str(access), "--access-logformat", fmt]
    ) as g:
        talk(g.tcp, request_packet(path="/hello", query="x=1", headers=[("X-Trace", "t9")]))
        talk(g.unix, request_packet(path="/raise"))
        assert wait_until(lambda: access.exists() and len(access.read_text().splitlines()) >= 2)
    lines = access.read_text().splitlines()
    assert lines[0] == "203.0.113.9|200|GET /hello?x=1 HTTP/1.1|12|/hello|x=1|t9"
    assert lines[1].startswith("203.0.113.9|500|GET /raise HTTP/1.1|")


def test_g4_default_access_log_format(tmp_path):
    """G4: gunicorn's default access_log_format."""
    access = tmp_path / "access.log"
    with Gunicorn(tmp_path, app=PROBE_APP, args=["--access-logfile", str(access)]) as g:
        talk(g.tcp, request_packet(path="/hello"))
        assert wait_until(lambda: access.exists() and access.read_text().strip())
    line = access.read_text().splitlines()[0]
    assert line.startswith("203.0.113.9 - - [")
    assert '"GET /hello HTTP/1.1" 200 12' in line


@every_worker
def test_g5_several_binds(tmp_path, worker):
    """G5: several --bind at once: two TCP ports, IPv6 and a unix socket, one worker."""
    second = free_port()
    with serving(tmp_path, worker, ["--bind", f"127.0.0.1:{second}"], ipv6=ipv6_available()) as g:
        for address in [*g.addresses(), ("127.0.0.1", second)]:
            env = env_of(address, [GET, ("PATH_INFO", "/environ")])
            if isinstance(address, tuple):
                assert env["SERVER_PORT"] == str(address[1])
        assert len(g.live_worker_pids()) == 1


def test_g5_systemd_socket_activation(tmp_path):
    """G5: systemd socket activation: gunicorn takes its listener from fd 3 (LISTEN_FDS)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    log = tmp_path / "gunicorn.log"
    fd = listener.fileno()
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        PROBE_APP,
        "--worker-class",
        "gunicorn_uwsgi.SyncWorker",
        "--workers",
        "1",
        "--log-level",
        "debug",
        "--error-logfile",
        str(log),
    ]
    # The listener becomes fd 3 of a process whose pid is LISTEN_PID, as systemd does it.
    script = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    env.pop("SCRIPT_NAME", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(fd), *gunicorn],
        pass_fds=(fd,),
        cwd=str(TESTS),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=open(tmp_path / "stdout", "wb"),
        stderr=subprocess.STDOUT,
    )
    listener.close()
    try:
        assert wait_until(
            lambda: (
                proc.poll() is not None
                or "Booting worker" in (log.read_text() if log.exists() else "")
            ),
            timeout=30,
        )
        output = (tmp_path / "stdout").read_text() + (log.read_text() if log.exists() else "")
        assert proc.poll() is None, output
        good_request(("127.0.0.1", port))
        assert "systemd" in log.read_text().lower() or "fd://" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- X1 counters, E7 with TLS -------------------------------------------------------------------


def test_x1_protocol_errors_are_counted(tmp_path):
    """X1: each refused packet is counted (gunicorn's statsd logger gets
    gunicorn_uwsgi.errors); good requests are not."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("127.0.0.1", 0))
        statsd.settimeout(0.2)
        port = statsd.getsockname()[1]
        with Gunicorn(tmp_path, app=PROBE_APP, args=["--statsd-host", f"127.0.0.1:{port}"]) as g:
            good_request(g.tcp)
            for data in (b"GET / HTTP/1.1\r\n\r\n", packet([GET], modifier1=7), b"\0\2\0\0\0\0"):
                talk(g.tcp, data)
            good_request(g.unix)
            seen: list[str] = []
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len(seen) < 3:
                try:
                    datagram = statsd.recv(4096).decode()
                except socket.timeout:
                    continue
                seen += [m for m in datagram.splitlines() if m.startswith("gunicorn_uwsgi.errors:")]
    assert seen == ["gunicorn_uwsgi.errors:1|c|@1.0"] * 3


def _statsd_metrics(tmp: Path, worker: str, env: dict[str, str], paths: list[str]) -> list[str]:
    """The request metrics a server with gunicorn's statsd logger (prefix and dogstatsd tags
    set) sends for ``paths``, one request after another, in the order received."""
    tmp.mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("127.0.0.1", 0))
        statsd.settimeout(0.2)
        port = statsd.getsockname()[1]
        args = ["--statsd-host", f"127.0.0.1:{port}", "--statsd-prefix", "shop"]
        args += ["--dogstatsd-tags", "env:test", "--log-level", "debug"]
        seen: list[str] = []
        with serving(tmp, worker, args, env=env) as g:
            for path in paths:
                Reply(talk(g.unix, request_packet(path=path))[0])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len(seen) < 3 * len(paths):
                try:
                    datagram = statsd.recv(65536).decode()
                except socket.timeout:
                    continue
                seen += [m for m in datagram.splitlines() if ".request" in m]
            fast = "written by the Rust cycle" in g.log()
        assert fast == (env.get("GUNICORN_UWSGI_FAST_PATH") != "0")
    return seen


@every_worker
def test_g4_statsd_counts_every_request(tmp_path, worker):
    """G4: with gunicorn's statsd logger each request is counted under gunicorn's metric names,
    prefix and tags (``gunicorn.requests``, ``gunicorn.request.status.N``,
    ``gunicorn.request.duration``), the application's 500s (X2) too: the Rust cycle sends the
    same metrics as gunicorn's own logger on the Python path, several in one datagram."""
    paths = ["/hello", "/raise", "/hello"]
    fast = _statsd_metrics(tmp_path / "fast", worker, {}, paths)
    slow = _statsd_metrics(tmp_path / "slow", worker, {"GUNICORN_UWSGI_FAST_PATH": "0"}, paths)

    def timeless(metrics: list[str]) -> list[str]:
        out = []
        for m in metrics:
            name, _, rest = m.partition(":")
            value, _, kind = rest.partition("|")
            if name.endswith("request.duration"):
                assert float(value) >= 0.0, m
                value = "T"
            out.append(f"{name}:{value}|{kind}")
        return out

    assert timeless(fast) == timeless(slow)
    assert len(fast) == 9, fast
    assert "shop.gunicorn.request.status.500:1|c|@1.0|#env:test" in fast
    assert fast.count("shop.gunicorn.requests:1|c|@1.0|#env:test") == 3
    assert fast[0].startswith("shop.gunicorn.request.duration:")


@every_worker
def test_e7_gunicorn_serving_tls_sets_https(tmp_path, worker):
    """E7: when gunicorn serves TLS itself (--certfile/--keyfile), wsgi.url_scheme is https;
    UWSGI_SCHEME=http still forces http."""
    import ssl

    if not shutil.which("openssl"):
        pytest.skip("no openssl binary to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    args = ["--certfile", str(cert), "--keyfile", str(key)]
    with serving(tmp_path, worker, args, unix=False) as g:
        for extra, scheme in (([], "https"), ([("UWSGI_SCHEME", "http")], "http")):
            with socket.create_connection(g.tcp, timeout=10) as raw_sock:
                with context.wrap_socket(raw_sock, server_hostname="localhost") as s:
                    s.sendall(packet([GET, ("PATH_INFO", "/environ"), *extra]))
                    out = bytearray()
                    while True:
                        try:
                            chunk = s.recv(65536)
                        except (ssl.SSLError, ConnectionResetError):
                            break
                        if not chunk:
                            break
                        out += chunk
            reply = Reply(bytes(out))
            assert reply.status == 200, reply
            assert reply.json()["wsgi.url_scheme"] == scheme
