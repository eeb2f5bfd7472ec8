"""Soak: a bounded run of mixed load through a real nginx into one gunicorn worker of each
class, every response checked.

The mix (tests/load.py): GETs, POSTs of 1 to 64 KiB read in full and hashed by the
application, GETs with about 8 KiB of headers, GETs of 1 and 32 KiB bodies — each body compared
byte for byte with the expected one. After a warm-up, the run must show no non-2xx answer, no
wrong body, no socket error (a response cut short is a read error), no worker restart (the
same worker pid from start to end) and a flat worker memory: ``VmRSS`` at the end within 5 % of
``VmRSS`` after the warm-up. Nothing above INFO is logged meanwhile.

``GUNICORN_UWSGI_SOAK_SECONDS`` sets the SyncWorker's run (default 60 s); the ThreadWorker and
the GeventWorker run a third of it. The figures are printed (``pytest -s``) and recorded in
docs/security.md and docs/deploy.md; none is asserted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from e2e_helpers import LogMark
from load import NGINX_HTTP, Wrk, cpu_seconds, rss_kib, standard_mix

from support import (
    SYNC,
    WORKERS,
    Gunicorn,
    Nginx,
    require_worker,
    worker_args,
    worker_id,
)

SOAK_SECONDS = float(os.environ.get("GUNICORN_UWSGI_SOAK_SECONDS", "60"))
#: Seconds of load before the memory baseline is taken.
WARM_UP = 5
#: Connections wrk keeps open.
CONNECTIONS = 64
#: Allowed change of the worker's resident memory over the run, in percent.
RSS_TOLERANCE = 5.0


def soak_seconds(worker: str) -> float:
    return SOAK_SECONDS if worker == SYNC else max(5.0, SOAK_SECONDS / 3)


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_soak_through_nginx(tmp_path: Path, worker: str) -> None:
    """Mixed load at 64 connections through nginx into one worker: every answer a whole,
    correct 200, no socket error, the same worker throughout, RSS flat within 5 %."""
    require_worker(worker)
    args = [*worker_args(worker), "--log-level", "info"]
    seconds = soak_seconds(worker)
    with Gunicorn(tmp_path, app="apps.load:app", worker=worker, args=args) as g:
        assert g.unix is not None
        with Nginx(tmp_path, f"unix:{g.unix}", http_extra=NGINX_HTTP) as nginx:
            url = f"http://127.0.0.1:{nginx.port}"
            with Wrk(tmp_path, url, standard_mix(), connections=CONNECTIONS) as wrk:
                warm = wrk.run(WARM_UP)
                warm.assert_clean()
                pids = g.live_worker_pids()
                assert len(pids) == 1, g.output()
                pid = pids[0]
                mark = LogMark(g)
                rss_start = rss_kib(pid)
                cpu_start = cpu_seconds(pid)
                samples = [rss_start]
                wrk.start(seconds)
                while wrk.proc is not None and wrk.proc.poll() is None:
                    time.sleep(min(5.0, seconds / 4))
                    samples.append(rss_kib(pid))
                result = wrk.wait()
                rss_end = rss_kib(pid)
                cpu = cpu_seconds(pid) - cpu_start
            assert g.live_worker_pids() == [pid], g.output()
            assert g.worker_pids() == [pid], "the worker was restarted"
        growth = (rss_end - rss_start) / rss_start * 100
        print(
            f"\nsoak {worker_id(worker)}: {result.summary()}; worker CPU "
            f"{cpu / max(result.requests, 1) * 1e6:.0f} us/request; RSS {rss_start} KiB after "
            f"the warm-up, {rss_end} KiB at the end ({growth:+.2f} %), "
            f"min {min(samples)} max {max(samples)} KiB"
        )
        result.assert_clean()
        assert result.checked == result.requests, result.summary()
        assert abs(growth) <= RSS_TOLERANCE, (rss_start, rss_end, samples)
        assert "Traceback" not in mark.new()
        assert not mark.lines("WARNING") and not mark.lines("ERROR"), mark.new()
