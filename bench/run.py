"""Benchmarks: ours vs gunicorn's own ``--protocol uwsgi`` vs the uWSGI server; each worker
class (sync, threads, gevent, ASGI) against gunicorn's own of the same kind (``--servers``), and
the ASGI worker against uvicorn and granian behind nginx's ``proxy_pass``.

Two parts, printed as one report and written to ``docs/benchmarks.md``:

* in process: parse + environ per request on each captured nginx packet;
* end to end: nginx (``uwsgi_pass`` + ``uwsgi_params``) in front of each server with one worker,
  loaded by ``wrk`` on loopback. nginx and wrk are pinned to CPU 0, the server to CPU 1; the
  figure that matters is the server worker's own CPU time divided by the requests it served.
  The HTTP servers (uvicorn, granian) sit behind ``proxy_pass`` with keep-alive upstream
  connections instead; nginx's own worker CPU per request is reported for every server.
  Rounds alternate the servers; medians are reported, with ratios against the uWSGI server
  (or, when it is not in the run, the first server of ``--servers``).

Run: ``./dev.sh bench`` (or ``.venv/bin/python bench/run.py --help``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import Nginx, free_port, vector, wait_until  # noqa: E402

VECTORS = [
    "nginx-get-browser.bin",
    "nginx-post-form.bin",
    "nginx-get-encoded-path.bin",
    "nginx-post-chunked.bin",
]
TICK = os.sysconf("SC_CLK_TCK")
SERVERS = (
    "ours",
    "gunicorn",
    "uwsgi",
    "ours-thread",
    "gunicorn-gthread",
    "ours-gevent",
    "gunicorn-gevent",
    "ours-log",
    "ours-hook",
    "ours-statsd",
    "gunicorn-statsd",
    "ours-thread-log",
    "ours-gevent-log",
    "gunicorn-log",
    "uwsgi-log",
    "ours-asgi",
    "gunicorn-asgi",
    "uvicorn",
    "granian",
)
#: The ASGI servers: they serve the ASGI version of an app (``asgi_apps.py``).
ASGI = ("ours-asgi", "gunicorn-asgi", "uvicorn", "granian")
#: The servers that speak HTTP, not uwsgi: nginx reaches them with ``proxy_pass``.
HTTP = ("uvicorn", "granian")
#: What runs without --servers: the sync workers and the uWSGI server.
DEFAULT_SERVERS = ("ours", "gunicorn", "uwsgi")
#: Threads of the threaded workers.
THREADS = 4
LABELS = {
    "ours": "gunicorn_uwsgi.SyncWorker",
    "gunicorn": "gunicorn --protocol uwsgi (sync)",
    "uwsgi": "uWSGI server (C)",
    "ours-thread": f"gunicorn_uwsgi.ThreadWorker --threads {THREADS}",
    "gunicorn-gthread": f"gunicorn --protocol uwsgi -k gthread --threads {THREADS}",
    "ours-gevent": "gunicorn_uwsgi.GeventWorker",
    "gunicorn-gevent": "gunicorn --protocol uwsgi -k gevent",
    "ours-log": "gunicorn_uwsgi.SyncWorker --access-logfile FILE",
    "ours-hook": "gunicorn_uwsgi.SyncWorker with a post_request hook",
    "ours-statsd": "gunicorn_uwsgi.SyncWorker --statsd-host (a listener on loopback)",
    "gunicorn-statsd": "gunicorn --protocol uwsgi (sync) --statsd-host",
    "ours-thread-log": f"gunicorn_uwsgi.ThreadWorker --threads {THREADS} --access-logfile FILE",
    "ours-gevent-log": "gunicorn_uwsgi.GeventWorker --access-logfile FILE",
    "gunicorn-log": "gunicorn --protocol uwsgi (sync) --access-logfile FILE",
    "uwsgi-log": "uWSGI server (C), its request logging --logto FILE",
    "ours-asgi": "gunicorn_uwsgi.ASGIWorker",
    "gunicorn-asgi": "gunicorn --protocol uwsgi -k asgi --asgi-loop uvloop",
    "uvicorn": "uvicorn --http httptools --loop uvloop (proxy_pass)",
    "granian": "granian --interface asgi (proxy_pass)",
}
#: gunicorn options of each gunicorn-based server.
WORKER_ARGS = {
    "ours": ["--worker-class", "gunicorn_uwsgi.SyncWorker"],
    "gunicorn": ["--protocol", "uwsgi"],
    "ours-thread": ["--worker-class", "gunicorn_uwsgi.ThreadWorker", "--threads", str(THREADS)],
    "gunicorn-gthread": [
        *("--protocol", "uwsgi", "--worker-class", "gthread"),
        *("--threads", str(THREADS)),
    ],
    "ours-gevent": ["--worker-class", "gunicorn_uwsgi.GeventWorker"],
    "gunicorn-gevent": ["--protocol", "uwsgi", "--worker-class", "gevent"],
    "ours-asgi": ["--worker-class", "gunicorn_uwsgi.ASGIWorker"],
    "gunicorn-asgi": ["--protocol", "uwsgi", "--worker-class", "asgi", "--asgi-loop", "uvloop"],
}
#: The servers with a request log, or a hook, run as the server they are named after plus it.
LOGGED = {
    "ours-log": "ours",
    "ours-hook": "ours",
    "ours-statsd": "ours",
    "gunicorn-statsd": "gunicorn",
    "ours-thread-log": "ours-thread",
    "ours-gevent-log": "ours-gevent",
    "gunicorn-log": "gunicorn",
    "uwsgi-log": "uwsgi",
}
#: The statsd servers' listener: bound for the whole run, never read (the kernel drops what
#: does not fit), so sends succeed as they do towards a real statsd daemon.
STATSD = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
STATSD.bind(("127.0.0.1", 0))
APPS = {"hello": "hello", "environ": "environ_json", "post64k": "post", "sleep10": "sleep10"}
#: The apps that have an ASGI version in ``asgi_apps.py``, under the same names.
ASGI_APPS = {"hello": "hello"}
#: The modules each server needs beyond gunicorn.
NEEDS = {
    "gunicorn-asgi": ("uvloop",),
    "uvicorn": ("uvicorn", "httptools", "uvloop"),
    "granian": ("granian",),
}


# -- in process ------------------------------------------------------------------------------


def bench_in_process(number: int) -> list[tuple[str, float, float]]:
    from gunicorn.config import Config
    from gunicorn.http import wsgi as gwsgi
    from gunicorn.uwsgi.parser import UWSGIParser as GParser

    from gunicorn_uwsgi import UWSGIParser
    from gunicorn_uwsgi import wsgi as owsgi

    cfg = Config()
    gcfg = Config()
    gcfg.set("protocol", "uwsgi")
    peer = ("127.0.0.1", 40000)
    server = ("127.0.0.1", 8000)
    rows = []
    for name in VECTORS:
        data = vector(name)

        def ours(data=data):
            req = next(UWSGIParser(cfg, [data], peer))
            owsgi.create(req, None, peer, server, cfg)

        def theirs(data=data):
            req = next(GParser(gcfg, [data], peer))
            gwsgi.create(req, None, peer, server, gcfg)

        o = min(timeit.repeat(ours, number=number, repeat=5)) / number * 1e6
        t = min(timeit.repeat(theirs, number=number, repeat=5)) / number * 1e6
        rows.append((name, o, t))
    return rows


# -- end to end ------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pinned(cpu: int, cmd: list[str]) -> list[str]:
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1:
        return ["taskset", "-c", str(cpu), *cmd]
    return cmd


class Server:
    """One server with one worker on ``address`` (``unix:/path`` or ``127.0.0.1:port``)."""

    def __init__(self, kind: str, app: str, address: str, tmp: Path) -> None:
        self.kind = kind
        self.address = address
        self.tmp = tmp
        py = sys.executable
        bindir = Path(py).parent
        base = LOGGED.get(kind, kind)
        request_log = tmp / f"{kind}-requests.log"
        module = "asgi_apps" if kind in ASGI else "apps"
        unix = address[5:] if address.startswith("unix:") else None
        host, _, port = address.rpartition(":")
        if base == "uvicorn":
            self.cmd = [
                py, "-m", "uvicorn", f"{module}:{app}", "--app-dir", str(ROOT / "bench"),
                "--http", "httptools", "--loop", "uvloop", "--workers", "1",
                "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip
            self.cmd += ["--uds", unix] if unix else ["--host", host, "--port", port]
        elif base == "granian":
            granian = str(bindir / "granian")
            usage = subprocess.run([granian, "--help"], capture_output=True, text=True).stdout
            self.cmd = [
                granian, "--interface", "asgi", "--workers", "1", "--http", "1",
                "--working-dir", str(ROOT / "bench"), "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip
            if re.search(r"--loop \[[^]]*uvloop", usage):
                self.cmd += ["--loop", "uvloop"]
            if unix and "--uds" not in usage:
                raise RuntimeError("this granian cannot bind a unix socket: use --transports tcp")
            self.cmd += ["--uds", unix] if unix else ["--host", host, "--port", port]
            self.cmd += [f"{module}:{app}"]
        elif base == "uwsgi":
            sock = address[5:] if address.startswith("unix:") else address
            self.cmd = [
                str(bindir / "uwsgi"),
                "--socket", sock,
                "--master", "--processes", "1", "--threads", "1",
                "--chdir", str(ROOT / "bench"), "--wsgi-file", "apps.py", "--callable", app,
                "--need-app", "--die-on-term",
            ]  # fmt: skip
            self.cmd += ["--logto", str(request_log)] if kind != base else ["--disable-logging"]
        else:
            cmd = [py, "-m", "gunicorn", f"{module}:{app}", "--workers", "1", "--bind", address]
            cmd += ["--chdir", str(ROOT / "bench"), "--log-level", "warning"]
            cmd += WORKER_ARGS[base]
            if kind.endswith("-log"):
                cmd += ["--access-logfile", str(request_log)]
            elif kind.endswith("-hook"):
                cmd += ["-c", str(ROOT / "bench" / "hooks.py")]
            elif kind.endswith("-statsd"):
                cmd += ["--statsd-host", f"127.0.0.1:{STATSD.getsockname()[1]}"]
            if (
                "--no-control-socket"
                in subprocess.run(
                    [py, "-m", "gunicorn", "--help"], capture_output=True, text=True
                ).stdout
            ):
                cmd += ["--no-control-socket"]
            self.cmd = cmd
        self.proc = None
        self.worker = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            pinned(1, self.cmd),
            stdin=subprocess.DEVNULL,
            stdout=open(self.tmp / f"{self.kind}.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        master = self.proc.pid
        log = self.tmp / f"{self.kind}.log"

        def ready() -> bool:
            if self.kind == "uvicorn":  # one worker: uvicorn serves in its own process
                return _connectable(self.address)
            if self.kind in HTTP:  # the worker binds the socket itself, once started
                return bool(children(master)) and _connectable(self.address)
            return bool(children(master))

        wait_until(lambda: self.proc.poll() is not None or ready(), timeout=30)
        if self.proc.poll() is not None or not ready():
            raise RuntimeError(f"{self.kind} did not start: {log}:\n{log.read_text()[-2000:]}")
        time.sleep(1.0)
        self.worker = master if self.kind == "uvicorn" else children(master)[0]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            uwsgi = LOGGED.get(self.kind, self.kind) == "uwsgi"
            self.proc.send_signal(signal.SIGINT if uwsgi else signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


POST_LUA = """
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


@dataclass
class Sample:
    rps: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_kib: int
    #: RSS change over the measured run, in percent of the RSS after the warm-up.
    rss_growth: float
    requests: int
    #: nginx's worker processes' own CPU time divided by the requests.
    nginx_us: float


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(url: str, duration: float, connections: int, script: Path | None) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(
        pinned(0, cmd), capture_output=True, text=True, timeout=duration + 60
    ).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {
        "requests": total,
        "errors": errors,
        "p50": _ms(lat.get("50", "nan")),
        "p99": _ms(lat.get("99", "nan")),
    }


@dataclass
class Case:
    app: str
    transport: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _connectable(address: str) -> bool:
    """Whether a server listens on ``address`` (``unix:/path`` or ``host:port``)."""
    if not address.startswith("unix:"):
        return _listening(int(address.rpartition(":")[2]))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(address[5:])
        return True
    except OSError:
        return False


def make_nginx(kind: str, run_dir: Path, address: str) -> Nginx:
    """nginx in front of ``kind`` on ``address``: ``uwsgi_pass``, or for the HTTP servers
    ``proxy_pass`` over HTTP/1.1 with keep-alive upstream connections, as in production."""
    if kind not in HTTP:
        return Nginx(run_dir, address)
    nginx = Nginx(
        run_dir, address, http_extra=f"upstream app {{ server {address}; keepalive 32; }}"
    )
    conf = nginx.conf.read_text()
    old = f"uwsgi_pass {address};\n            include uwsgi_params;"
    if old not in conf:
        raise RuntimeError(f"unexpected nginx config, no {old!r}: {nginx.conf}")
    new = (
        "proxy_pass http://app;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";'
    )
    nginx.conf.write_text(conf.replace(old, new))
    return nginx


def run_case(case: Case, servers, rounds, duration, connections, tmp: Path) -> None:
    script = None
    if case.app == "post64k":
        script = tmp / "post.lua"
        script.write_text(POST_LUA)
    missing = [k for k in servers if k in ASGI and case.app not in ASGI_APPS]
    if missing:
        print(f"  no ASGI version of {case.app}: not for {', '.join(missing)}", flush=True)
        servers = [k for k in servers if k not in missing]
    for r in range(rounds):
        order = list(servers) if r % 2 == 0 else list(reversed(servers))
        for kind in order:
            run_dir = Path(tempfile.mkdtemp(dir=tmp))
            if case.transport == "unix":
                address = f"unix:{run_dir}/app.sock"
            else:
                address = f"127.0.0.1:{free_port()}"
            app = ASGI_APPS[case.app] if kind in ASGI else APPS[case.app]
            server = Server(kind, app, address, run_dir)
            nginx = make_nginx(kind, run_dir, address)
            try:
                server.start()
                nginx.proc = subprocess.Popen(
                    pinned(0, [nginx.binary, "-p", str(nginx.prefix), "-c", str(nginx.conf)]),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                wait_until(lambda port=nginx.port: _listening(port), timeout=10)
                url = f"http://127.0.0.1:{nginx.port}/"
                run_wrk(url, 1, connections, script)  # warm-up
                nginx_workers = children(nginx.proc.pid)
                nginx_before = sum(cpu_seconds(p) for p in nginx_workers)
                before = cpu_seconds(server.worker)
                rss_before = rss_kib(server.worker)
                result = run_wrk(url, duration, connections, script)
                after = cpu_seconds(server.worker)
                nginx_after = sum(cpu_seconds(p) for p in nginx_workers)
                rss_after = rss_kib(server.worker)
                sample = Sample(
                    rps=result["requests"] / duration,
                    cpu_us=(after - before) / max(result["requests"], 1) * 1e6,
                    p50_ms=result["p50"],
                    p99_ms=result["p99"],
                    errors=result["errors"],
                    rss_kib=rss_after,
                    rss_growth=(rss_after - rss_before) / max(rss_before, 1) * 100,
                    requests=result["requests"],
                    nginx_us=(nginx_after - nginx_before) / max(result["requests"], 1) * 1e6,
                )
                case.samples.setdefault(kind, []).append(sample)
                print(
                    f"  {case.app:8} {case.transport:4} round {r + 1} {kind:8} "
                    f"{sample.rps:8.0f} req/s {sample.cpu_us:7.1f} us/req "
                    f"nginx {sample.nginx_us:5.1f} us/req "
                    f"p50 {sample.p50_ms:.2f} ms errors {sample.errors}",
                    flush=True,
                )
            finally:
                nginx.stop()
                server.stop()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def versions(servers=()) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import gunicorn

    import gunicorn_uwsgi

    out = {"gunicorn": gunicorn.__version__, "gunicorn-uwsgi-rs": gunicorn_uwsgi.__version__}
    uwsgi = Path(sys.executable).parent / "uwsgi"
    if uwsgi.exists():
        out["uWSGI"] = subprocess.run(
            [str(uwsgi), "--version"], capture_output=True, text=True
        ).stdout.strip()
    if any(kind in ASGI for kind in servers):
        for package in ("uvicorn", "httptools", "uvloop", "granian"):
            try:
                out[package] = version(package)
            except PackageNotFoundError:
                pass
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    out["nginx"] = nginx.split("/")[-1]
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    out["wrk"] = (wrk.stdout or wrk.stderr).split()[1] if (wrk.stdout or wrk.stderr) else "?"
    out["Python"] = platform.python_version()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        commit = "?"
    out["commit"] = commit
    return out


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, {platform.machine()}"


def report(in_process, cases: list[Case], args) -> str:
    lines = ["## In process: parse + environ per request", ""]
    lines += [
        "| packet | gunicorn_uwsgi (µs) | gunicorn 27 uwsgi (µs) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for name, ours, theirs in in_process:
        lines.append(f"| `{name}` | {ours:.2f} | {theirs:.2f} | {theirs / ours:.1f}x |")
    # The yardstick: the uWSGI server, or else the first server of --servers that ran.
    ran = [k for k in ["uwsgi", *args.servers.split(",")] if any(k in c.samples for c in cases)]
    baseline = ran[0] if ran else "uwsgi"
    name = "uWSGI" if baseline == "uwsgi" else LABELS.get(baseline, baseline)
    the = "the uWSGI server" if baseline == "uwsgi" else name
    lines += ["", "## End to end through nginx", ""]
    lines += [
        f"One worker each; wrk `-t1 -c{args.connections} -d{args.duration}s`, "
        f"{args.rounds} alternating rounds, medians. CPU/req is the worker process's own "
        "user+system time divided by the requests it served; the ratio column compares it "
        f"with {the} measured in the same run. nginx CPU/req is the same for nginx's worker "
        "(`uwsgi_pass`, or `proxy_pass` for the HTTP servers).",
        "",
        f"| app | transport | server | req/s | CPU µs/req | ratio vs {name} | nginx CPU µs/req "
        "| p50 ms | p99 ms | errors | RSS MiB | RSS growth (requests) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        base = median([s.cpu_us for s in case.samples.get(baseline, [])])
        for kind in SERVERS:
            samples = case.samples.get(kind)
            if not samples:
                continue
            cpu = median([s.cpu_us for s in samples])
            ratio = f"{cpu / base:.2f}" if base == base else "-"
            lines.append(
                f"| {case.app} | {case.transport} | {LABELS[kind]} "
                f"| {median([s.rps for s in samples]):.0f} | {cpu:.1f} | {ratio} "
                f"| {median([s.nginx_us for s in samples]):.1f} "
                f"| {median([s.p50_ms for s in samples]):.2f} "
                f"| {median([s.p99_ms for s in samples]):.2f} "
                f"| {sum(s.errors for s in samples)} "
                f"| {median([s.rss_kib for s in samples]) / 1024:.1f} "
                f"| {max(s.rss_growth for s in samples):+.1f} % "
                f"({max(s.requests for s in samples)}) |"
            )
    return "\n".join(lines) + "\n"


def write_report(path: Path, text: str, section: str) -> None:
    """Replaces what stands between the ``section``'s results markers in ``path``, keeping the
    rest of the file; the markers are appended when missing."""
    start, end = f"<!-- results:{section}:start -->", f"<!-- results:{section}:end -->"
    block = f"{start}\n{text}{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old and end in old:
        head, _, rest = old.partition(start)
        _, _, tail = rest.partition(end)
        path.write_text(head + block + tail)
    else:
        path.write_text(old.rstrip() + "\n\n" + block + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--section",
        default="sync",
        help="which results section of --out this run replaces: sync, workers, logging, asgi",
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--apps", default="hello,environ,post64k", help=f"comma-separated, of: {', '.join(APPS)}"
    )
    parser.add_argument("--transports", default="unix,tcp")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated, of: {', '.join(SERVERS)}",
    )
    parser.add_argument("--number", type=int, default=20000, help="in-process iterations")
    parser.add_argument(
        "--out",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="the report goes between the results markers of this file (made if missing)",
    )
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)} (known: {', '.join(SERVERS)})")
    if not (Path(sys.executable).parent / "uwsgi").exists():
        for kind in ("uwsgi", "uwsgi-log"):
            if kind in servers:
                print(f"uWSGI is not installed in this virtualenv (pip install uwsgi): no {kind}")
                servers.remove(kind)
    for kind, modules in NEEDS.items():
        lacking = [m for m in modules if importlib.util.find_spec(m) is None]
        if kind in servers and lacking:
            print(f"not installed in this virtualenv (pip install {' '.join(lacking)}): no {kind}")
            servers.remove(kind)
    if "ours-asgi" in servers:
        try:
            import gunicorn_uwsgi

            gunicorn_uwsgi.ASGIWorker  # noqa: B018
        except (AttributeError, ImportError) as exc:
            print(f"gunicorn_uwsgi.ASGIWorker is not there ({exc}): no ours-asgi")
            servers.remove("ours-asgi")

    print("in process: parse + environ", flush=True)
    in_process = bench_in_process(args.number)
    for name, o, t in in_process:
        print(f"  {name:28} ours {o:6.2f} us  gunicorn {t:6.2f} us  ({t / o:.1f}x)")

    cases = [
        Case(app, transport)
        for app in args.apps.split(",")
        for transport in args.transports.split(",")
        if app and transport
    ]
    with tempfile.TemporaryDirectory(prefix="gunicorn-uwsgi-bench-") as tmp:
        for case in cases:
            print(f"end to end: {case.app} over {case.transport}", flush=True)
            run_case(case, servers, args.rounds, args.duration, args.connections, Path(tmp))

    header = ["## Run", ""]
    header += [f"- machine: {machine()}"]
    header += [f"- {k}: {v}" for k, v in versions(servers).items()]
    header += [f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    text = "\n".join(header) + "\n" + report(in_process, cases, args)
    print()
    print(text)
    write_report(Path(args.out), text, args.section)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
