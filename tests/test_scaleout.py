"""Scale-out: one nginx in front of three gunicorn instances (each its own arbiter with one
SyncWorker, on its own port, as on three hosts), under load, while one instance is lost —
killed outright (``SIGKILL`` to its arbiter and worker) or stopped gracefully (``TERM``).

nginx is configured as docs/deploy.md recommends::

    upstream pool {
        least_conn;
        server 127.0.0.1:<port> max_fails=1 fail_timeout=10s;   # one per instance
        ...
    }
    uwsgi_next_upstream error timeout non_idempotent;
    uwsgi_next_upstream_tries 2;
    uwsgi_connect_timeout 2s;

``non_idempotent`` lets nginx pass a POST to the next instance too. Without it, a POST whose
connection was reset after nginx had written it is answered 502: that happens to the requests
an instance had accepted into its listen queue but not yet read when it goes away — with a
graceful ``TERM`` as well, since a worker that stops accepting leaves its backlog to be reset —
and to the request a killed worker was serving. The application here (``apps.load``) has no
side effects, so a retried POST is harmless; an application with side effects must weigh
that (docs/deploy.md). ``uwsgi_next_upstream_tries 2`` bounds the passing on: without it a
request slower than ``uwsgi_read_timeout`` is tried on every instance in turn.

The clients (wrk, every body checked) must see no error at all: no non-2xx, no socket error, no
wrong body. nginx's access log (``$upstream_addr``) shows the traffic spread over the three
instances before the loss, and over the two survivors after it.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from load import (
    NGINX_HTTP,
    Wrk,
    access_log_directive,
    read_access_log,
    small_mix,
    standard_mix,
)

from support import SYNC, Gunicorn, Nginx, wait_until

INSTANCES = 3
#: Seconds of load; the instance is lost after LOSS_AT seconds.
LOAD_SECONDS = 8
LOSS_AT = 2.5
CONNECTIONS = 32


@dataclass
class Pool:
    instances: list[Gunicorn]
    nginx: Nginx
    access_log: Path

    def address(self, g: Gunicorn) -> str:
        assert g.tcp is not None
        return f"{g.tcp[0]}:{g.tcp[1]}"


def upstream_block(instances: list[Gunicorn]) -> str:
    servers = "\n".join(
        f"        server 127.0.0.1:{g.tcp[1]} max_fails=1 fail_timeout=10s;"
        for g in instances
        if g.tcp
    )
    return f"""
    upstream pool {{
        least_conn;
{servers}
    }}
    uwsgi_next_upstream error timeout non_idempotent;
    uwsgi_next_upstream_tries 2;
    uwsgi_connect_timeout 2s;
"""


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    instances = []
    try:
        for i in range(INSTANCES):
            home = tmp_path / f"instance-{i}"
            home.mkdir()
            g = Gunicorn(
                home,
                app="apps.load:app",
                worker=SYNC,
                unix=False,
                args=["--workers", "1", "--log-level", "info"],
            )
            instances.append(g)
            g.start()
        access_log = tmp_path / "access.log"
        nginx = Nginx(
            tmp_path,
            "pool",
            locations=access_log_directive(access_log),
            http_extra=NGINX_HTTP + upstream_block(instances),
        ).start()
        try:
            yield Pool(instances, nginx, access_log)
        finally:
            nginx.stop()
    finally:
        for g in instances:
            g.stop()


def kill_instance(g: Gunicorn) -> None:
    """SIGKILL to the arbiter and its workers at once: a host that disappears."""
    assert g.proc is not None
    pids = [g.proc.pid, *g.live_worker_pids()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    g.proc.wait(10)
    assert wait_until(lambda: not g.live_worker_pids(), timeout=10)


def stop_instance(g: Gunicorn) -> None:
    """TERM to the arbiter: the requests in flight finish, then it exits."""
    g.send(signal.SIGTERM)
    assert g.proc is not None and g.proc.wait(30) == 0


@pytest.mark.parametrize("how", ["sigkill", "term"])
def test_losing_an_instance_under_load_shows_no_error(pool: Pool, how: str) -> None:
    """Three instances behind ``least_conn``; one is lost under load (SIGKILL of its
    processes, or a graceful TERM). wrk sees no error at all — no non-2xx, no socket error, no
    wrong body — and the requests after the loss are spread over the two survivors."""
    # Killed outright, an instance may die in the middle of writing a response: the mix
    # then keeps every answer small enough to leave in one write, so that nginx has either
    # the whole answer or nothing and can retry (a response cut after nginx started passing
    # it on cannot be retried).
    mix = small_mix() if how == "sigkill" else standard_mix()
    url = f"http://127.0.0.1:{pool.nginx.port}"
    victim = pool.instances[0]
    with Wrk(pool.nginx.prefix, url, mix, connections=CONNECTIONS) as wrk:
        wrk.start(LOAD_SECONDS)
        time.sleep(LOSS_AT)
        lost_at = time.time()
        if how == "sigkill":
            kill_instance(victim)
        else:
            stop_instance(victim)
        gone_at = time.time()
        result = wrk.wait()
    time.sleep(1.5)  # nginx flushes its access log every second
    log = read_access_log(pool.access_log)
    before = Counter(e.upstreams[-1] for e in log if e.at < lost_at and e.upstreams)
    after = Counter(e.upstreams[-1] for e in log if e.at > gone_at + 0.5 and e.upstreams)
    retried = [e for e in log if len(e.upstreams) > 1]
    lost = pool.address(victim)
    survivors = [pool.address(g) for g in pool.instances[1:]]
    print(
        f"\nscale-out, {how} of one instance of {INSTANCES}: {result.summary()}; "
        f"served before the loss {dict(before)}, after {dict(after)}; "
        f"{len(retried)} requests passed on to another instance: "
        f"{Counter(tuple(e.upstream_statuses) for e in retried)}"
    )
    result.assert_clean()
    assert all(before[pool.address(g)] > 0 for g in pool.instances), before
    assert after[lost] == 0, after
    total = sum(after.values())
    assert total > 0, after
    for address in survivors:
        assert after[address] >= 0.2 * total, after
    for entry in log:
        assert entry.status in (200, 499), entry  # 499: in flight when wrk stopped
