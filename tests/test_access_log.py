"""The access log (G4), for every worker class: what ``--access-logfile`` gets is what
gunicorn's own ``Logger.access`` writes, whichever request cycle served the request.

``GUNICORN_UWSGI_FAST_PATH=0`` forces the Python request cycle, whose lines come from
gunicorn's ``Logger`` (``atoms()``, ``SafeAtoms``, ``_get_user``): that server is the
reference. A default server (the Rust cycle, wherever it serves with an access log) gets the
same requests, and its file must hold the same bytes for each of them (one line per
request served, none for a refused packet or a peer that hung up), once the atoms that
legitimately differ — the time (``t``), the timings (``T D M L``) and the pid (``p``) — are
masked; those are checked for their shape and for agreeing with one another instead. The
format uses every atom gunicorn documents, request headers (``{h}i``), response headers
(``{h}o``) and environ variables (``{v}e``), present and missing, and literal text with
quotes and ``%%``. Each request names itself in an ``X-Case`` header, logged first, so
lines are paired by request; that requests sent one after another are logged in that order
is a test of its own.

Then the file's life: ``--access-logfile -`` writes the same lines to stdout; a rename and
``USR1`` under concurrent load from two worker processes loses, splits and interleaves no
line, and the workers write on in the reopened file; a graceful ``TERM`` loses no line, not
even that of the request in flight; and a line reaches the file within a second of its
request on an idle server.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from support import (
    WORKERS,
    Gunicorn,
    Reply,
    connect,
    exchange,
    nginx_vars,
    packet,
    request_packet,
    require_worker,
    wait_until,
    worker_args,
    worker_id,
)

#: A time zone with a half-hour offset (POSIX rule, no tzdata needed: local time is UTC+5:30),
#: so that ``%(t)s`` in UTC, or without the minutes of the offset, cannot pass for local time.
TZ_ENV = {"TZ": "XST-05:30"}

#: Every atom of gunicorn's documentation, headers and environ variables (present, missing,
#: mixed case), literal text with quotes and ``%%``. Everything that may differ between two
#: servers is at the end, after `` |``, where nothing from the request can appear.
FORMAT = (
    "ACCESS case=%({x-case}i)s"
    ' h=%(h)s l=%(l)s u=%(u)s r="%(r)s" m=%(m)s U=%(U)s q=%(q)s H=%(H)s s=%(s)s'
    ' B=%(B)s b=%(b)s f="%(f)s" a="%(a)s"'
    ' ua="%({user-agent}i)s" xff="%({X-Forwarded-For}i)s" quote="%({x-quote}i)s"'
    " noi=%({x-never-sent}i)s"
    " ct=%({content-type}o)s cl=%({Content-Length}o)s xlen=%({X-LENGTH}o)s"
    " noo=%({x-never-set}o)s"
    ' ra=%({REMOTE_ADDR}e)s qs="%({QUERY_STRING}e)s" scheme=%({wsgi.url_scheme}e)s'
    " noe=%({NO_SUCH_VAR}e)s"
    " lit='it''s \"quoted\" 100%%'"
    " |t=%(t)s T=%(T)s D=%(D)s M=%(M)s L=%(L)s p=%(p)s"
)
PREFIX = b"ACCESS "

#: The masked tail of a line: the time, the four timings, the pid.
TAIL = re.compile(
    rb" \|t=\[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\]"
    rb" T=(\d+) D=(\d+) M=(\d+) L=(\d+)\.(\d{6}) p=<(\d+)>\Z"
)


def basic(credentials: bytes) -> str:
    """An ``Authorization: Basic`` value (as latin-1 text: the vars carry bytes)."""
    return "Basic " + base64.b64encode(credentials).decode()


@dataclass(frozen=True)
class Case:
    """One exchange of the comparison: ``data`` sent whole (``mode="whole"``), in two
    segments 50 ms apart (``"split"``), nothing at all (``"nothing"``) or half of it
    (``"half"``) before hanging up; ``status`` is the answer expected (None: closed with
    nothing written), ``lines`` the access lines it writes. Each request names its case in
    an ``X-Case`` header, logged first."""

    name: str
    data: bytes = b""
    status: int | None = 200
    lines: int = 1
    transport: str = "unix"
    mode: str = "whole"


def case(
    name: str,
    status: int | None = 200,
    headers: Sequence[tuple[str, str]] = (),
    lines: int = 1,
    mode: str = "whole",
    **kw: Any,
) -> Case:
    """A case whose request has the vars nginx sends (``support.nginx_vars``)."""
    pairs = nginx_vars(headers=[*headers, ("X-Case", name)], **kw)
    return Case(name, packet(pairs, kw.get("body", b"")), status, lines, mode=mode)


def bare(name: str, *pairs: tuple[str, str], status: int = 200, transport: str = "unix") -> Case:
    """A case whose request has only ``pairs`` (and ``X-Case``)."""
    return Case(name, packet([*pairs, ("HTTP_X_CASE", name)]), status, transport=transport)


def auth(name: str, value: str) -> Case:
    """A case whose request has ``Authorization: value`` (``%(u)s``, ``_get_user``)."""
    return case(name, path="/hello", headers=[("Authorization", value)])


GET = ("REQUEST_METHOD", "GET")

CASES = [
    case(
        "get-with-query",
        path="/hello",
        query="x=1&y=caf%C3%A9&z",
        headers=[("User-Agent", "curl/8.5.0"), ("Referer", "http://example.test/from")],
    ),
    # A peer that connects and says nothing, one that sends half a packet: no line (F6, X3).
    Case("hang-up-silent", status=None, lines=0, mode="nothing"),
    case("hang-up-half-packet", None, path="/hello", lines=0, mode="half"),
    case("utf8-path", 404, path="/caf\xc3\xa9", query="q=\xc3\xa9"),
    bare(
        "nginx-rewrite",
        GET,
        ("REQUEST_URI", "/original/path?from=nginx"),
        ("PATH_INFO", "/hello"),
        ("QUERY_STRING", "rewritten=1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "198.51.100.20"),
    ),
    case(
        "odd-headers",
        path="/hello",
        headers=[
            ("User-Agent", "says \"hi\" \\ and 'bye'"),
            ("X-Quote", '"'),
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Referer", 'http://example.test/?q="x"'),
            ("Authorization", basic(b"alice:s3cret")),
        ],
    ),
    case(
        "empty-header-values",
        path="/hello",
        headers=[("User-Agent", ""), ("Referer", ""), ("X-Quote", "")],
    ),
    case("long-user-agent", path="/hello", headers=[("User-Agent", "agent/" + "x" * 4000)]),
    case("non-ascii-user-agent", path="/hello", headers=[("User-Agent", "caf\xc3\xa9 \xff")]),
    auth("basic-lowercase-no-colon", "basic Ym9i"),
    auth("basic-upper-extra-spaces", "BASIC   Y2Fyb2w6cHc=  "),
    auth("basic-prefix-only", "Basicfoo " + basic(b"dave:x")[6:]),
    auth("basic-utf8-user", basic("jos\xe9:pw".encode())),
    auth("basic-quote-in-user", basic(b'ev"il:pw')),
    auth("basic-malformed-base64", "Basic !!!not-base64"),
    auth("basic-no-credentials", "Basic"),
    auth("basic-not-utf8", basic(b"\xff\xfe:pw")),
    auth("bearer", "Bearer abc.def"),
    case("head", method="HEAD", path="/hello"),
    case("no-content-204", 204, path="/nocontent"),
    case(
        "post-with-body",
        method="POST",
        path="/echo",
        body=b"a=1&b=2",
        content_type="application/x-www-form-urlencoded",
    ),
    # The last bytes of the body come later: the request the first receive did not bring
    # whole.
    case(
        "post-in-two-segments",
        method="POST",
        path="/echo",
        body=b"0123456789",
        mode="split",
    ),
    case("stream", path="/stream"),
    case("file-wrapper", path="/file"),
    case("short-body", path="/short"),
    case("long-body", path="/long"),
    case("sleep", path="/sleep", query="0.05"),
    # The application raises before starting its response: 500 (X2).
    case("app-raises", 500, path="/raise"),
    case("app-raises-late", path="/raise-late"),
    case("app-replaces-status", 500, path="/exc-info"),
    # A refused packet is answered by the protocol layer and logs no access line (X1).
    Case("protocol-error", packet([GET, ("CONTENT_LENGTH", "x")]), 400, 0),
    bare("no-remote-addr-unix", GET, ("PATH_INFO", "/hello")),
    bare("no-remote-addr-tcp", GET, ("PATH_INFO", "/hello"), transport="tcp"),
    bare("no-method", ("PATH_INFO", "/hello")),
    case("http10-https", path="/hello", SERVER_PROTOCOL="HTTP/1.0", HTTPS="on"),
    case("not-found", 404, path="/missing", query="a=%22b%22"),
]

#: The cases that log a line, in order.
LOGGED = [c.name for c in CASES for _ in range(c.lines)]


def send(server: Gunicorn, c: Case) -> int | None:
    """Plays ``c`` against ``server``; the status answered (None when nothing was)."""
    address = server.tcp if c.transport == "tcp" else server.unix
    assert address is not None
    if c.mode == "whole":
        raw = exchange(address, c.data)
    elif c.mode == "split":
        raw = exchange(address, [c.data[:-4], c.data[-4:]], delay=0.05)
    else:
        with connect(address) as s:
            if c.mode == "half":
                s.sendall(c.data[: len(c.data) // 2])
            s.shutdown(socket.SHUT_WR)
            raw = s.recv(65536)
    return Reply(raw).status if raw else None


def split_lines(data: bytes) -> list[bytes]:
    """The lines of a log, each ended by a newline (no partial last line)."""
    if not data:
        return []
    assert data.endswith(b"\n"), data[-300:]
    return data[:-1].split(b"\n")


def access_lines(data: bytes) -> list[bytes]:
    """The access lines (they start with ``ACCESS``) of a file that may hold other output."""
    return [line for line in split_lines(data) if line.startswith(PREFIX)]


def case_of(line: bytes) -> str:
    """The case a line logs (its ``X-Case``)."""
    m = re.match(rb"ACCESS case=(\S+) ", line)
    assert m is not None, line
    return m.group(1).decode()


@dataclass
class Masked:
    """A line cut into what must match the reference byte for byte and what may differ."""

    head: bytes
    time: datetime
    timings: tuple[int, int, int, int, int]  # T, D, M, L seconds, L microseconds
    pid: int


def mask(line: bytes) -> Masked:
    m = TAIL.search(line)
    assert m is not None, f"no time, timings and pid at the end of {line!r}"
    when = datetime.strptime(m.group(1).decode(), "%d/%b/%Y:%H:%M:%S %z")
    t, d, ms, ls, lus, pid = (int(g) for g in m.groups()[1:])
    return Masked(line[: m.start()], when, (t, d, ms, ls, lus), pid)


def by_case(lines: list[bytes]) -> dict[str, bytes]:
    """The lines keyed by their case; each case logs one line at most."""
    out: dict[str, bytes] = {}
    for line in lines:
        name = case_of(line)
        assert name not in out, f"two lines for {name}:\n {out[name]!r}\n {line!r}"
        out[name] = line
    return out


# -- the comparison -----------------------------------------------------------------------


@dataclass
class Logged:
    """A server of the comparison and what its access log held after ``CASES``."""

    server: Gunicorn
    log: Path
    statuses: list[int | None]
    data: bytes = b""

    def lines(self) -> list[bytes]:
        return access_lines(self.log.read_bytes()) if self.log.exists() else []


@pytest.fixture(scope="module", params=WORKERS, ids=worker_id)
def logged(request, tmp_path_factory) -> Iterator[dict[str, Logged]]:
    """Three servers of one worker class, each sent ``CASES`` in turn: ``fast`` (the
    default) and ``python`` (``GUNICORN_UWSGI_FAST_PATH=0``, the reference) log to a file,
    ``stdout`` (the default) to ``-``. Each is left idle, its lines of ``CASES`` in
    ``data``; a test that sends more waits for their lines before it ends."""
    worker = request.param
    require_worker(worker)
    name = worker_id(worker)
    servers: dict[str, Logged] = {}
    roles = {"fast": ({}, "file"), "python": ({"GUNICORN_UWSGI_FAST_PATH": "0"}, "file")}
    roles["stdout"] = ({}, "-")
    try:
        for role, (env, target) in roles.items():
            tmp = tmp_path_factory.mktemp(f"access-{role}-{name}")
            log = tmp / "access.log" if target == "file" else tmp / "gunicorn.stdout"
            args = ["--access-logfile", str(log) if target == "file" else "-"]
            g = Gunicorn(
                tmp,
                worker=worker,
                args=[*worker_args(worker), *args, "--access-logformat", FORMAT],
                env={**TZ_ENV, **env},
            )
            servers[role] = Logged(g.start(wait=False), log, [])
        for entry in servers.values():
            entry.server.wait_ready()
        for c in CASES:
            for entry in servers.values():
                entry.statuses.append(send(entry.server, c))
        for entry in servers.values():
            assert wait_until(lambda e=entry: len(e.lines()) >= len(LOGGED), timeout=10), (
                entry.lines()
            )
        time.sleep(0.3)  # no late line for a request that should have none
        for entry in servers.values():
            entry.data = entry.log.read_bytes()
        yield servers
    finally:
        for entry in servers.values():
            entry.server.stop()


def test_g4_cases_get_the_answers_they_are_about(logged):
    """G4 (the premise of the comparison): every server gave each case the answer it is
    meant to exercise — 200, 204, 404, a 500 from the application (X2), a 400 for a refused
    packet (X1), nothing for a peer that hung up (X3)."""
    expected = [c.status for c in CASES]
    for role, entry in logged.items():
        assert entry.statuses == expected, role


def test_g4_fast_path_lines_are_gunicorns_own(logged):
    """G4: the default server's access file holds, for each request, the bytes gunicorn's
    ``Logger.access`` wrote for it on the Python path (every documented atom,
    ``{h}i``/``{h}o``/``{v}e`` present and missing, ``SafeAtoms`` escaping, ``_get_user``
    on every kind of ``Authorization``, UTF-8 and latin-1 bytes), one line per request
    served and none for a refused packet or a peer that hung up; only ``t``, ``T D M L`` and
    ``p`` differ, and those are well formed: local time with its offset within seconds of
    the reference's, timings that agree with one another, the pid of the worker."""
    fast, python = logged["fast"], logged["python"]
    got_lines, want_lines = split_lines(fast.data), split_lines(python.data)
    assert len(want_lines) == len(LOGGED), want_lines
    assert len(got_lines) == len(LOGGED), got_lines
    got, want = by_case(got_lines), by_case(want_lines)
    assert sorted(want) == sorted(LOGGED)
    assert sorted(got) == sorted(LOGGED)
    for name in LOGGED:
        line, ref = got[name], want[name]
        a, b = mask(line), mask(ref)
        assert a.head == b.head, f"{name}:\n fast:   {line!r}\n python: {ref!r}"
        assert a.time.utcoffset() == b.time.utcoffset(), (name, line, ref)
        assert abs((a.time - b.time).total_seconds()) < 30, (name, line, ref)
        assert a.pid in fast.server.worker_pids(), (name, line)
        assert b.pid in python.server.worker_pids(), (name, ref)
        for m in (a, b):
            t, d, ms, ls, lus = m.timings
            assert (t, ms, ls * 1_000_000 + lus) == (d // 1_000_000, d // 1000, d), (name, m)
            assert d < 10_000_000, (name, m)
            if name == "sleep":
                assert d >= 50_000, (name, m)
    # The reference itself: gunicorn's local time in the server's time zone.
    assert mask(want_lines[0]).time.utcoffset().total_seconds() == 5.5 * 3600


def test_g4_reference_lines_read_as_gunicorn_documents(logged):
    """G4 (the reference, spot-checked): ``%(h)s`` is REMOTE_ADDR, ``%(u)s`` the Basic
    user, ``SafeAtoms`` escapes double quotes, missing headers and variables are ``-``."""
    lines = by_case(split_lines(logged["python"].data))
    first = lines["get-with-query"]
    assert first.startswith(
        b"ACCESS case=get-with-query h=203.0.113.9 l=- u=-"
        b' r="GET /hello?x=1&y=caf%C3%A9&z HTTP/1.1" m=GET'
        b" U=/hello q=x=1&y=caf%C3%A9&z H=HTTP/1.1 s=200 B=12 b=12"
        b' f="http://example.test/from" a="curl/8.5.0" ua="curl/8.5.0" xff="-" quote="-"'
        b" noi=- ct=text/plain cl=12 xlen=- noo=- ra=203.0.113.9"
        b" qs=\"x=1&y=caf%C3%A9&z\" scheme=http noe=- lit='it''s \"quoted\" 100%' |t=["
    ), first
    assert b" u=alice " in lines["odd-headers"]
    assert b' quote="\\"" ' in lines["odd-headers"]
    assert b" u=bob " in lines["basic-lowercase-no-colon"]
    assert b" u=- " in lines["basic-malformed-base64"]
    assert b" s=404 " in lines["utf8-path"]
    assert b' r="GET /original/path?from=nginx HTTP/1.1" ' in lines["nginx-rewrite"]
    assert b" h=127.0.0.1 " in lines["no-remote-addr-tcp"]
    assert b" scheme=https " in lines["http10-https"]
    assert b" H=HTTP/1.0 " in lines["http10-https"]
    assert b" s=500 " in lines["app-raises"]


def test_g4_access_logfile_dash_writes_the_same_lines_to_stdout(logged):
    """G4: ``--access-logfile -`` writes the same lines, whole, to the process's stdout
    (the test's capture holds stdout and stderr; access lines start with ``ACCESS``)."""
    out = logged["stdout"]
    # No access line is cut or glued to other output.
    stray = [line for line in split_lines(out.data) if b"case=" in line]
    assert all(line.startswith(PREFIX) for line in stray), stray
    got = by_case(access_lines(out.data))
    want = by_case(split_lines(logged["python"].data))
    assert sorted(got) == sorted(want)
    for name, line in got.items():
        assert mask(line).head == mask(want[name]).head, name
        assert mask(line).pid in out.server.worker_pids()


@pytest.mark.parametrize("role", ["fast", "python", "stdout"])
def test_g4_lines_come_in_the_order_of_the_requests(logged, role):
    """G4: requests one after another (each answered before the next is sent), ordinary
    ones and ones the application fails (X2), are logged in that order, as gunicorn's
    logging writes each line when its request ends."""
    entry = logged[role]
    first = [case_of(line) for line in access_lines(entry.data)]
    # Back to back, to one server: the ordinary cases and the failing ones, interleaved.
    before = len(entry.lines())
    paths = ["/hello", "/raise", "/nocontent", "/raise-late", "/hello", "/exc-info"] * 5
    for n, path in enumerate(paths):
        send(entry.server, case(f"order-{n}", None, path=path))
    assert wait_until(lambda: len(entry.lines()) >= before + len(paths), timeout=10)
    then = [case_of(line) for line in entry.lines()[before:]]
    assert (first, then) == (LOGGED, [f"order-{n}" for n in range(len(paths))])


@pytest.mark.parametrize("role", ["fast", "python"])
def test_g4_a_line_is_written_within_a_second(logged, role):
    """G4: on an idle server, the line of a request is in the file within a second of the
    response (a bound on any buffering of the writer, not a benchmark)."""
    entry = logged[role]
    before = len(entry.lines())
    time.sleep(0.3)  # idle
    assert send(entry.server, CASES[0]) == 200
    assert wait_until(lambda: len(entry.lines()) == before + 1, timeout=1.0, interval=0.01)


# -- the file's life ------------------------------------------------------------------------

SHORT_FORMAT = "ROT %(q)s %(s)s %(b)s %(p)s |%(t)s %(D)s"
SHORT_LINE = re.compile(
    rb"ROT c=(\d+)&n=(\d+) 200 12 <\d+> \|\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"
    rb" \d+\Z"
)


def short_server(tmp: Path, worker: str, log: Path, *extra: str) -> Gunicorn:
    args = [*worker_args(worker), "--access-logfile", str(log)]
    args += ["--access-logformat", SHORT_FORMAT, *extra]
    return Gunicorn(tmp, worker=worker, args=args, env=TZ_ENV, tcp=False)


def numbered(server: Gunicorn, client: int, n: int) -> None:
    raw = exchange(server.unix, request_packet(path="/hello", query=f"c={client}&n={n}"))
    assert raw.endswith(b"\r\n\r\nHello world\n"), raw[:200]


def parse_short(lines: list[bytes]) -> list[tuple[int, int]]:
    out = []
    for line in lines:
        m = SHORT_LINE.match(line)
        assert m is not None, f"partial or interleaved line: {line!r}"
        out.append((int(m.group(1)), int(m.group(2))))
    return out


CLIENTS = 4
PER_CLIENT = 500
MARKERS = 20


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_g4_usr1_reopens_the_file_under_load(tmp_path, worker):
    """G4: two workers under load from four concurrent clients; halfway the file is renamed
    and the arbiter gets ``USR1`` (gunicorn reopens its files and passes the signal to the
    workers). No line is lost, duplicated, cut or interleaved across the two files, the
    renamed file holds the first lines, and every request sent once the rotation is over
    is logged in the new file."""
    require_worker(worker)
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    g = short_server(tmp_path, worker, log, "--workers", "2")
    total = CLIENTS * PER_CLIENT
    done = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(c: int) -> None:
        nonlocal done
        try:
            for n in range(PER_CLIENT):
                numbered(g, c, n)
                with lock:
                    done += 1
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    with g:
        g.wait_ready(workers=2)
        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        try:
            assert wait_until(lambda: done >= total // 2 or errors, timeout=15, interval=0.001)
            os.rename(log, rotated)
            g.send(signal.SIGUSR1)
        finally:
            for t in threads:
                t.join(30)
        assert not errors, errors
        assert time.monotonic() - started < 20
        # Long after the signal: both workers write to the new file.
        assert wait_until(log.exists, timeout=5)
        time.sleep(0.3)
        for n in range(MARKERS):
            numbered(g, CLIENTS, n)
        assert g.stop() == 0
    before = parse_short(split_lines(rotated.read_bytes()))
    after = parse_short(split_lines(log.read_bytes()))
    assert before and after
    expected = [(c, n) for c in range(CLIENTS) for n in range(PER_CLIENT)]
    expected += [(CLIENTS, n) for n in range(MARKERS)]
    assert len(before) + len(after) == len(expected)
    assert sorted(before + after) == expected
    assert sorted(x for x in after if x[0] == CLIENTS) == [(CLIENTS, n) for n in range(MARKERS)]


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_g4_graceful_term_loses_no_line(tmp_path, worker):
    """G4, G2: requests served just before ``TERM``, and one still in flight when it
    arrives, all have their line in the file once the arbiter has exited."""
    require_worker(worker)
    log = tmp_path / "access.log"
    g = short_server(tmp_path, worker, log)
    result: dict[str, bytes] = {}

    def slow() -> None:
        result["raw"] = exchange(g.unix, request_packet(path="/sleep", query="0.5"))

    with g:
        for n in range(30):
            numbered(g, 0, n)
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)
        assert g.stop() == 0
        t.join(15)
    assert Reply(result["raw"]).status == 200
    lines = split_lines(log.read_bytes())
    slept = [line for line in lines if line.startswith(b"ROT 0.5 200 5 <")]
    assert len(slept) == 1, lines
    rest = [line for line in lines if line not in slept]
    assert sorted(parse_short(rest)) == [(0, n) for n in range(30)]
