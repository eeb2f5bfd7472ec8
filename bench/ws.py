"""WebSocket benchmark: ``gunicorn_uwsgi.ASGIWorker`` behind nginx ``uwsgi_pass`` against
uvicorn (``--ws websockets``) behind ``proxy_pass`` and gunicorn 27's own ASGI worker
(``-k asgi --protocol uwsgi``) behind ``uwsgi_pass``, on one echo application
(``bench/ws_app.py``).

Each server runs one worker on a unix socket, with nginx in front of it (``bench/run.py``'s
servers and nginx, its ``/proc`` readings and report header). The client is the ``websockets``
library (asyncio, compression off) in this process, pinned with nginx to CPU 0; the server is
on CPU 1. For each server, in alternating rounds:

* 1 000 idle connections (handshake done, the application waiting in ``receive``) opened
  through nginx: the worker's RSS before and after, per connection; then one echo on each;
* 64-byte text messages over one connection, each sent once the previous echo came back, for
  ``--seconds`` or ``--messages``: the worker's own CPU time (user + system) per message, and
  nginx's worker's;
* 1 MiB binary messages the same way (``--seconds`` or ``--big-messages``): messages and MiB
  per second, and CPU per message.

Medians over the rounds; ratios are between servers of the same run (the machine is shared).

Run: ``.venv/bin/python bench/ws.py [--seconds N] [--out docs/benchmarks.md]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from run import (
    HTTP,
    NEEDS,
    ROOT,
    Server,
    children,
    cpu_seconds,
    machine,
    make_nginx,
    median,
    rss_kib,
    versions,
    write_report,
)

SERVERS = ("ours-asgi", "uvicorn", "gunicorn-asgi")
LABELS = {
    "ours-asgi": "gunicorn_uwsgi.ASGIWorker (uwsgi_pass)",
    "uvicorn": "uvicorn --ws websockets --http httptools --loop uvloop (proxy_pass)",
    "gunicorn-asgi": "gunicorn --protocol uwsgi -k asgi --asgi-loop uvloop (uwsgi_pass)",
}
SMALL = "x" * 64
BIG = os.urandom(1 << 20)
MIB = 1 << 20
#: Connections opened at once while the idle ones ramp up (below nginx's listen backlog).
BATCH = 100


@dataclass
class Sample:
    #: 64-byte messages: echoes per second, the worker's and nginx's CPU per message (µs).
    rate: float = float("nan")
    cpu_us: float = float("nan")
    nginx_us: float = float("nan")
    messages: int = 0
    #: 1 MiB messages: echoes per second, the worker's and nginx's CPU per message (ms).
    big_rate: float = float("nan")
    big_cpu_ms: float = float("nan")
    big_nginx_ms: float = float("nan")
    big_messages: int = 0
    #: Idle connections: how many were open, the worker's RSS before and after (KiB), nginx's
    #: worker's RSS growth (KiB).
    idle: int = 0
    rss_before: int = 0
    rss_after: int = 0
    nginx_rss: int = 0
    errors: int = 0


def ws_server(kind: str, address: str, run_dir: Path, connections: int) -> Server:
    """``bench/run.py``'s server of ``kind``, on the echo application of ``ws_app.py``."""
    server = Server(kind, "echo", address, run_dir)
    if "asgi_apps:echo" not in server.cmd:
        raise RuntimeError(f"unexpected command for {kind}: {server.cmd}")
    server.cmd = ["ws_app:echo" if a == "asgi_apps:echo" else a for a in server.cmd]
    if kind == "uvicorn":
        server.cmd += ["--ws", "websockets"]
    else:  # gunicorn's default of 1000 would refuse the last idle connections
        server.cmd += ["--worker-connections", str(connections + 100)]
    return server


def ws_nginx(kind: str, run_dir: Path, address: str, connections: int):
    """``bench/run.py``'s nginx for ``kind`` with room for the idle connections (two
    descriptors each) and, for ``proxy_pass``, the upgrade headers. ``uwsgi_pass`` needs no
    change: nginx passes ``Upgrade`` and ``Connection`` as uwsgi vars and tunnels after a 101."""
    nginx = make_nginx(kind, run_dir, address)
    conf = nginx.conf.read_text()
    events = "events { worker_connections 256; }"
    new = (
        f"worker_rlimit_nofile {4 * connections + 1024};\n"
        f"events {{ worker_connections {2 * connections + 256}; }}"
    )
    replace = [(events, new)]
    if kind in HTTP:
        replace.append(
            (
                'proxy_set_header Connection "";',
                "proxy_set_header Upgrade $http_upgrade;\n"
                '            proxy_set_header Connection "upgrade";',
            )
        )
    for old, text in replace:
        if old not in conf:
            raise RuntimeError(f"unexpected nginx config, no {old!r}: {nginx.conf}")
        conf = conf.replace(old, text)
    nginx.conf.write_text(conf)
    return nginx


async def connect(uri: str):
    from websockets.asyncio.client import connect as ws_connect

    ws = await ws_connect(
        uri,
        compression=None,
        max_size=4 * MIB,
        ping_interval=None,
        open_timeout=20,
        close_timeout=5,
    )
    if ws.response.headers.get("Sec-WebSocket-Extensions"):
        await ws.close()
        raise RuntimeError(f"an extension was negotiated: {ws.response.headers}")
    return ws


async def echoes(ws, payload, seconds: float, limit: int) -> tuple[int, float, int]:
    """Sends ``payload`` and waits for its echo, again and again, for at most ``seconds`` and
    ``limit`` messages: (messages, elapsed seconds, wrong echoes)."""
    n = wrong = 0
    start = time.perf_counter()
    deadline = start + seconds
    while n < limit and time.perf_counter() < deadline:
        await ws.send(payload)
        if await ws.recv() != payload:
            wrong += 1
        n += 1
    return n, time.perf_counter() - start, wrong


async def bounded_echoes(ws, payload, seconds: float, limit: int) -> tuple[int, float, int]:
    return await asyncio.wait_for(echoes(ws, payload, seconds, limit), seconds + 30)


async def idle_connections(uri: str, worker: int, nginx_pid: int, args, s: Sample) -> None:
    nginx_workers = children(nginx_pid)
    await asyncio.sleep(1.0)
    s.rss_before = rss_kib(worker)
    nginx_before = sum(rss_kib(p) for p in nginx_workers)
    conns = []
    failures = 0
    deadline = time.monotonic() + 60
    try:
        while len(conns) < args.connections and failures < BATCH and time.monotonic() < deadline:
            batch = min(BATCH, args.connections - len(conns))
            got = await asyncio.gather(
                *(connect(uri) for _ in range(batch)), return_exceptions=True
            )
            for ws in got:
                if isinstance(ws, BaseException):
                    failures += 1
                    print(f"    connect failed: {ws!r}", flush=True)
                else:
                    conns.append(ws)
        await asyncio.sleep(1.0)  # the worker takes the last connections in
        s.idle = len(conns)
        s.rss_after = rss_kib(worker)
        s.nginx_rss = sum(rss_kib(p) for p in nginx_workers) - nginx_before
        # Every connection still works: one echo each.
        results = await asyncio.gather(
            *(bounded_echoes(ws, "ping", 10, 1) for ws in conns), return_exceptions=True
        )
        wrong = sum(1 for r in results if isinstance(r, BaseException) or r[0] != 1 or r[2])
        s.errors += wrong + args.connections - len(conns)
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    await asyncio.sleep(1.0)  # the worker finishes with the closed connections


async def one_connection(uri, worker, nginx_pid, payload, seconds, limit) -> tuple:
    """(messages, seconds, worker CPU seconds, nginx CPU seconds, errors) over one connection."""
    nginx_workers = children(nginx_pid)
    async with await connect(uri) as ws:
        await bounded_echoes(ws, payload, 0.3, 50)  # this connection's first buffers
        cpu = cpu_seconds(worker)
        nginx_cpu = sum(cpu_seconds(p) for p in nginx_workers)
        n, elapsed, wrong = await bounded_echoes(ws, payload, seconds, limit)
        cpu = cpu_seconds(worker) - cpu
        nginx_cpu = sum(cpu_seconds(p) for p in nginx_workers) - nginx_cpu
    return n, elapsed, cpu, nginx_cpu, wrong


async def session(uri: str, worker: int, nginx_pid: int, args) -> Sample:
    s = Sample()
    # Warm-up: small messages only, so that no 1 MiB buffer is in the RSS before the idle
    # connections; each measured connection warms up with its own size first.
    async with await connect(uri) as ws:
        await bounded_echoes(ws, SMALL, 0.5, 2000)
    try:
        await idle_connections(uri, worker, nginx_pid, args, s)
    except Exception as exc:
        s.errors += 1
        print(f"    idle connections failed: {exc!r}", flush=True)
    try:
        n, elapsed, cpu, nginx_cpu, wrong = await one_connection(
            uri, worker, nginx_pid, SMALL, args.seconds, args.messages
        )
        s.messages, s.rate = n, n / elapsed
        s.cpu_us, s.nginx_us = cpu / max(n, 1) * 1e6, nginx_cpu / max(n, 1) * 1e6
        s.errors += wrong
    except Exception as exc:
        s.errors += 1
        print(f"    64 B echoes failed: {exc!r}", flush=True)
    try:
        n, elapsed, cpu, nginx_cpu, wrong = await one_connection(
            uri, worker, nginx_pid, BIG, args.seconds, args.big_messages
        )
        s.big_messages, s.big_rate = n, n / elapsed
        s.big_cpu_ms, s.big_nginx_ms = cpu / max(n, 1) * 1e3, nginx_cpu / max(n, 1) * 1e3
        s.errors += wrong
    except Exception as exc:
        s.errors += 1
        print(f"    1 MiB echoes failed: {exc!r}", flush=True)
    return s


def run_server(kind: str, tmp: Path, args) -> Sample:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    address = f"unix:{run_dir}/app.sock"
    server = ws_server(kind, address, run_dir, args.connections)
    nginx = ws_nginx(kind, run_dir, address, args.connections)
    try:
        server.start()
        nginx.start()  # on CPU 0, as this process
        uri = f"ws://127.0.0.1:{nginx.port}/echo"
        return asyncio.run(session(uri, server.worker, nginx.proc.pid, args))
    finally:
        nginx.stop()
        server.stop()


def report(samples: dict[str, list[Sample]], args) -> str:
    ran = [k for k in SERVERS if samples.get(k)]

    def med(kind: str, attr: str) -> float:
        return median([getattr(s, attr) for s in samples.get(kind, [])])

    base = med("ours-asgi", "cpu_us")
    uvicorn_rate = med("uvicorn", "big_rate")
    lines = ["## WebSocket echo through nginx", ""]
    lines += [
        f"One worker each, nginx to the server over a unix socket; alternating rounds "
        f"({args.rounds}), medians. The client is `websockets` (asyncio, compression off) in the "
        "benchmark's process, pinned with nginx to CPU 0, the server to CPU 1; its own CPU is "
        "not counted. CPU is the worker process's own user+system time (`/proc/<pid>/stat`) "
        "divided by the messages it echoed, nginx CPU the same for nginx's worker.",
        "",
        f"### 64-byte text messages, one connection, each sent after the previous echo "
        f"({args.seconds:g} s or {args.messages} messages)",
        "",
        "| server | messages/s | worker CPU µs/msg | ratio vs ASGIWorker | nginx CPU µs/msg "
        "| messages | errors (all three parts) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ran:
        cpu = med(kind, "cpu_us")
        lines.append(
            f"| {LABELS[kind]} | {med(kind, 'rate'):.0f} | {cpu:.1f} | {cpu / base:.2f} "
            f"| {med(kind, 'nginx_us'):.1f} | {max(s.messages for s in samples[kind])} "
            f"| {sum(s.errors for s in samples[kind])} |"
        )
    lines += [
        "",
        f"### 1 MiB binary messages, one connection, each sent after the previous echo "
        f"({args.seconds:g} s or {args.big_messages} messages)",
        "",
        "MiB/s counts each message once (it crosses nginx twice, there and back).",
        "",
        "| server | messages/s | MiB/s | rate, % of uvicorn's | worker CPU ms/msg "
        "| nginx CPU ms/msg | messages |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ran:
        rate = med(kind, "big_rate")
        share = f"{rate / uvicorn_rate * 100:.0f} %" if uvicorn_rate == uvicorn_rate else "-"
        lines.append(
            f"| {LABELS[kind]} | {rate:.1f} | {rate:.1f} | {share} "
            f"| {med(kind, 'big_cpu_ms'):.2f} | {med(kind, 'big_nginx_ms'):.2f} "
            f"| {max(s.big_messages for s in samples[kind])} |"
        )
    lines += [
        "",
        f"### {args.connections} idle connections through nginx",
        "",
        "Opened in batches of 100 after the warm-up; RSS read 1 s after the last one opened, "
        "then every connection echoes one message.",
        "",
        "| server | worker RSS before MiB | with the connections MiB | KiB per connection "
        "| nginx KiB per connection | connections |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ran:
        per = median([(s.rss_after - s.rss_before) / max(s.idle, 1) for s in samples[kind]])
        nginx_per = median([s.nginx_rss / max(s.idle, 1) for s in samples[kind]])
        lines.append(
            f"| {LABELS[kind]} | {med(kind, 'rss_before') / 1024:.1f} "
            f"| {med(kind, 'rss_after') / 1024:.1f} | {per:.1f} | {nginx_per:.1f} "
            f"| {min(s.idle for s in samples[kind])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="each measured loop")
    parser.add_argument("--messages", type=int, default=200_000, help="at most, 64 B")
    parser.add_argument("--big-messages", type=int, default=5_000, help="at most, 1 MiB")
    parser.add_argument("--connections", type=int, default=1000, help="idle connections")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument(
        "--out",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="the report replaces the websocket results section of this file",
    )
    args = parser.parse_args()
    servers = [k for k in args.servers.split(",") if k]
    unknown = [k for k in servers if k not in SERVERS]
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)} (known: {', '.join(SERVERS)})")
    if importlib.util.find_spec("websockets") is None:
        sys.exit("not installed in this virtualenv: pip install websockets")
    for kind, modules in NEEDS.items():
        lacking = [m for m in modules if importlib.util.find_spec(m) is None]
        if kind in servers and lacking:
            print(f"not installed in this virtualenv (pip install {' '.join(lacking)}): no {kind}")
            servers.remove(kind)
    want = 4 * args.connections + 1024  # the clients here; nginx and the server inherit it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        sys.exit(f"needs {want} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # the client and nginx; the servers pin themselves to 1
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())

    samples: dict[str, list[Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="gunicorn-uwsgi-ws-") as tmp:
        for r in range(args.rounds):
            order = servers if r % 2 == 0 else list(reversed(servers))
            for kind in order:
                s = run_server(kind, Path(tmp), args)
                samples.setdefault(kind, []).append(s)
                print(
                    f"  round {r + 1} {kind:13} 64 B: {s.rate:6.0f}/s {s.cpu_us:6.1f} us/msg "
                    f"nginx {s.nginx_us:5.1f} us | 1 MiB: {s.big_rate:5.1f}/s "
                    f"{s.big_cpu_ms:5.2f} ms/msg | idle: {s.idle} "
                    f"{(s.rss_after - s.rss_before) / max(s.idle, 1):5.1f} KiB/conn "
                    f"| errors {s.errors}",
                    flush=True,
                )

    info = {}
    for key, value in versions(servers).items():
        if key == "nginx":
            info["websockets"] = version("websockets")
        if key not in ("uWSGI", "granian", "wrk"):  # not in this benchmark
            info[key] = value
    header = ["## Run", ""]
    header += [f"- machine: {machine()}"]
    header += [f"- {k}: {v}" for k, v in info.items()]
    header += [f"- load average at the start: {load}"]
    header += [f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    text = "\n".join(header) + "\n" + report(samples, args)
    print()
    print(text)
    write_report(Path(args.out), text, "websocket")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
