"""Idle connections held by one ASGIWorker: the worker's memory as more and more requests wait.

Opens up to ``--connections`` uwsgi connections to one worker (a unix socket, no nginx: nginx
would need as many worker connections of its own), each a complete request to an application
that waits for ``http.disconnect``, and prints the worker's resident memory at each step, then
after every client has gone. Bounded: every connection is closed at the end, the run stops
after ``--seconds``.

    .venv/bin/python bench/idle.py --connections 10000
"""

from __future__ import annotations

import argparse
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import request_packet  # noqa: E402

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive())["type"] != "http.disconnect":
        pass
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pid(arbiter: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(arbiter)], capture_output=True, text=True)
        if out.stdout.split():
            return int(out.stdout.split()[0])
        time.sleep(0.1)
    raise RuntimeError("no worker started")


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="ramps, each after all clients left")
    ap.add_argument("--seconds", type=float, default=120.0)
    args = ap.parse_args()
    want = args.connections + 256  # each process: the clients here, the worker its own
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        sys.exit(f"needs {want} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    tmp = Path(tempfile.mkdtemp(prefix="idle-"))
    (tmp / "idle_app.py").write_text(APP)
    sock = tmp / "app.sock"
    gunicorn = [
        sys.executable, "-m", "gunicorn", "idle_app:app", "--chdir", str(tmp),
        "-k", "gunicorn_uwsgi.ASGIWorker", "--workers", "1", "--bind", f"unix:{sock}",
        "--worker-connections", str(args.connections + 100), "--backlog", "2048",
        "--timeout", "600", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(gunicorn, stderr=open(tmp / "gunicorn.log", "w"))
    started = time.monotonic()
    clients: list[socket.socket] = []
    try:
        pid = worker_pid(server.pid)
        while not sock.exists():
            time.sleep(0.05)
        time.sleep(1.0)
        packet = request_packet(path="/wait")
        print(f"worker {pid}: {rss_kib(pid) / 1024:.1f} MiB with no connection")
        step = max(1, args.connections // args.steps)
        for round_ in range(1, args.rounds + 1):
            while len(clients) < args.connections and time.monotonic() - started < args.seconds:
                for _ in range(min(step, args.connections - len(clients))):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(str(sock))
                    s.sendall(packet)
                    clients.append(s)
                time.sleep(1.0)  # the worker takes the connections in
                mib = rss_kib(pid) / 1024
                print(f"round {round_}: {mib:.1f} MiB with {len(clients)} requests waiting")
            for s in clients:
                s.close()
            clients.clear()
            time.sleep(2.0)
            print(f"round {round_}: {rss_kib(pid) / 1024:.1f} MiB after every client left")
    finally:
        for s in clients:
            s.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
