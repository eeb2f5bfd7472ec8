"""The built wheel, and the gunicorn versions it supports (G1, A1, F7, B1).

One wheel is built per session (``maturin build --release``): it must be an abi3 wheel
(``cp39-abi3``) whose version is Cargo.toml's, and ``maturin sdist`` must build an sdist. The
pages that open with ``pip install gunicorn-uwsgi-rs`` must say how to install from a clone
until the first release, with wheel globs that match this wheel.

Then, for each older gunicorn line (23.0, 24, 25, 26: the latest release of each), a virtualenv
under ``.venv-matrix/<version>`` (git-ignored, reused between runs; the wheel is reinstalled only
when it changed) gets that gunicorn and the wheel, and a smoke subset runs from it behind a real
nginx: a GET, a POST echo, a protocol error (HTTP sent to the uwsgi port: 400) and the default
allow list (127.0.0.1,::1: a peer on 127.0.0.2 gets 403, also on gunicorn 23, which has no
``uwsgi_allow_ips`` setting), with ``SyncWorker``, ``ThreadWorker`` and the entry point
``egg:gunicorn-uwsgi-rs#sync``. A last virtualenv gets the wheel alone, so pip resolves its
dependencies (the latest gunicorn): the clean-install check. The whole suite runs on the latest
gunicorn in ``.venv`` itself.

The extras: the wheel alone (that last virtualenv) and the wheel with each extra pyproject.toml
declares (``.venv-matrix/extra-<name>``, installed as ``<wheel>[<name>]``) must boot every worker
class the install is meant to support, each serving a GET and a POST echo: ``SyncWorker`` and
``ThreadWorker`` everywhere, ``GeventWorker`` too with ``[gevent]`` (so nothing gunicorn's gevent
worker imports may be missing from that extra). A virtualenv is made again from nothing when the
wheel's declared dependencies change, so a reused one never hides a missing dependency.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import (
    GEVENT,
    SYNC,
    THREAD,
    Gunicorn,
    Nginx,
    Reply,
    ask,
    read_all,
    request_packet,
    worker_args,
    worker_id,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MATRIX_DIR = ROOT / ".venv-matrix"
#: The latest release of each older gunicorn line; the newest gunicorn runs the whole suite.
GUNICORN_VERSIONS = ["23.0.0", "24.1.1", "25.3.0", "26.2.0"]
#: The virtualenv that gets the wheel alone, with whatever gunicorn pip picks for it.
LATEST = "latest"
EGG_SYNC = "egg:gunicorn-uwsgi-rs#sync"
ASGI = "gunicorn_uwsgi.ASGIWorker"
EGG_ASGI = "egg:gunicorn-uwsgi-rs#asgi"
PIP_TIMEOUT = 600


def declared_extras() -> list[str]:
    """The extras pyproject.toml declares (``[project.optional-dependencies]``)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return sorted(project.get("optional-dependencies", {}))


#: The installs whose worker classes must boot: the wheel alone (``""``), then with each extra.
EXTRAS = ["", *declared_extras()]


def extra_workers(extra: str) -> list[str]:
    """The worker classes an install with ``extra`` supports: gevent's needs ``[gevent]``; the
    ASGI worker runs on asyncio's loop without an extra, on uvloop with ``[asgi]``."""
    return [SYNC, THREAD, GEVENT, ASGI] if extra == "gevent" else [SYNC, THREAD, ASGI]


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)
    assert match, "no version in Cargo.toml's [package]"
    return match.group(1)


def _run(cmd: list[str], timeout: float = PIP_TIMEOUT, **kw: object) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _maturin() -> str:
    local = Path(sys.executable).parent / "maturin"
    found = str(local) if local.exists() else shutil.which("maturin")
    assert found, "maturin is not installed (pip install maturin)"
    return found


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([_maturin(), "build", "--release", "-o", str(out)], cwd=ROOT)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _pip(python: Path, *args: str) -> None:
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args])


def wheel_dependencies(wheel: Path) -> list[str]:
    """The wheel's ``Requires-Dist`` and ``Provides-Extra`` lines, as pip reads them."""
    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(metadata).decode()
    return [line for line in text.splitlines() if line.startswith(("Requires-Dist:", "Provides-"))]


def matrix_venv(name: str, wheel: Path, extra: str = "") -> Path:
    """``.venv-matrix/<name>`` with gunicorn ``name`` (or, for ``latest`` and ``extra-*``, the
    wheel's own dependencies, with ``extra``) and this wheel installed; created once, again
    from nothing when the wheel's dependencies change, the wheel refreshed when it changed."""
    venv = MATRIX_DIR / name
    python = _venv_python(venv)
    ready = venv / ".ready"
    wanted = "\n".join([f"{name} [{extra}]", *wheel_dependencies(wheel)]) + "\n"
    if not ready.exists() or ready.read_text() != wanted:
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)])
        if extra:
            _pip(python, f"{wheel}[{extra}]")
        elif name == LATEST:
            _pip(python, str(wheel))
        else:
            _pip(python, f"gunicorn=={name}", str(wheel))
        ready.write_text(wanted)
    stamp = venv / ".wheel-sha256"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != digest:
        _pip(python, "--no-deps", "--force-reinstall", str(wheel))
        stamp.write_text(digest + "\n")
    return python


def describe(python: Path) -> dict[str, object]:
    """What the virtualenv's interpreter sees: versions, where the package was imported from,
    gunicorn's settings and this distribution's metadata."""
    code = """
import importlib.metadata as md, json, gunicorn, gunicorn_uwsgi
from gunicorn.config import KNOWN_SETTINGS
print(json.dumps({
    "gunicorn": gunicorn.__version__,
    "version": gunicorn_uwsgi.__version__,
    "dist_version": md.version("gunicorn-uwsgi-rs"),
    "file": gunicorn_uwsgi.__file__,
    "settings": sorted(s.name for s in KNOWN_SETTINGS),
    "requires": md.requires("gunicorn-uwsgi-rs") or [],
    "workers": sorted(e.name for e in md.entry_points(group="gunicorn.workers")),
}))
"""
    return json.loads(_run([str(python), "-c", code], timeout=60, cwd="/"))


# -- the wheel and the sdist -----------------------------------------------------------------


def test_wheel_is_abi3_with_the_cargo_version_G1(wheel: Path) -> None:
    """G1: one abi3 wheel for CPython >= 3.9 (manylinux), versioned from Cargo.toml."""
    name = wheel.name
    assert name.startswith(f"gunicorn_uwsgi_rs-{cargo_version()}-"), name
    assert "-cp39-abi3-" in name, name
    assert "manylinux" in name, name


def test_sdist_builds(tmp_path: Path) -> None:
    """``maturin sdist`` builds a source distribution with the Rust and Python sources."""
    _run([_maturin(), "sdist", "-o", str(tmp_path)], cwd=ROOT)
    sdists = list(tmp_path.glob("*.tar.gz"))
    assert len(sdists) == 1, sdists
    assert sdists[0].name == f"gunicorn_uwsgi_rs-{cargo_version()}.tar.gz"
    with tarfile.open(sdists[0]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for wanted in ("Cargo.toml", "pyproject.toml", "src/lib.rs", "python/gunicorn_uwsgi/py.typed"):
        assert wanted in names, (wanted, sorted(names))


# -- installing from a clone, as the docs say -----------------------------------------------

#: The pages that open with ``pip install gunicorn-uwsgi-rs``.
INSTALL_DOCS = ["README.md", "docs/index.md", "docs/usage.md"]


def install_section(page: str) -> str:
    """A page's lines from its first ``pip install gunicorn-uwsgi-rs`` to the next heading
    (a ``#`` line outside a code block)."""
    lines = (ROOT / page).read_text().splitlines()
    start = next(i for i, x in enumerate(lines) if "pip install gunicorn-uwsgi-rs" in x)
    section, fenced = [], True  # the first match is inside the page's first ``sh`` block
    for line in lines[start:]:
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            break
        section.append(line)
    return "\n".join(section)


@pytest.mark.parametrize("page", INSTALL_DOCS)
def test_install_from_a_clone_is_documented_G1(page: str, wheel: Path, tmp_path: Path) -> None:
    """Until the first release nothing is on PyPI: right after ``pip install
    gunicorn-uwsgi-rs`` each page says how to install from a clone (``pip install .``, or
    ``maturin build --release`` and the wheel), with globs that match the wheel maturin builds
    and a ``[gevent]`` spelling that the shell turns into ``<wheel file>[gevent]``."""
    section = install_section(page)
    assert "PyPI" in section, section
    assert re.search(r"^pip install \.(\s|$)", section, re.M), section
    assert "'.[gevent]'" in section, section
    assert "maturin build --release" in section, section
    globs = re.findall(r"target/wheels/(\S+?\.whl)", section)
    assert globs, section
    for glob in globs:
        assert fnmatch.fnmatchcase(wheel.name, glob), (glob, wheel.name)
    # The documented gevent command, expanded by bash next to a target/wheels holding the wheel.
    line = next(x for x in section.splitlines() if "target/wheels" in x and "[gevent]" in x)
    command = line.split("#", 1)[0].strip()
    assert command.startswith("pip install "), line
    (tmp_path / "target" / "wheels").mkdir(parents=True)
    (tmp_path / "target" / "wheels" / wheel.name).symlink_to(wheel)
    argument = command.removeprefix("pip install ")
    expanded = _run(["bash", "-c", f"printf '%s\\n' {argument}"], timeout=10, cwd=tmp_path)
    assert expanded.splitlines() == [f"target/wheels/{wheel.name}[gevent]"], (command, expanded)


# -- clean installs, one per gunicorn version ------------------------------------------------


@pytest.fixture(scope="module", params=[*GUNICORN_VERSIONS, LATEST])
def env(request: pytest.FixtureRequest, wheel: Path) -> Iterator[tuple[str, Path, dict]]:
    python = matrix_venv(request.param, wheel)
    yield request.param, python, describe(python)


def test_clean_install_metadata_G1(env: tuple[str, Path, dict]) -> None:
    """G1: the wheel installs into a clean virtualenv (next to the chosen gunicorn): the package
    is imported from it, ``__version__`` and the distribution are Cargo.toml's version, the
    ``gunicorn.workers`` entry points are there and the ``gevent`` extra asks for gevent."""
    name, python, info = env
    venv = python.parent.parent
    assert Path(str(info["file"])).resolve().is_relative_to(venv.resolve()), info["file"]
    assert info["version"] == info["dist_version"] == cargo_version()
    if name != LATEST:
        assert info["gunicorn"] == name
    assert info["workers"] == ["asgi", "gevent", "sync", "thread"]
    requires = [r.replace(" ", "").replace("'", '"') for r in info["requires"]]  # type: ignore[union-attr]
    assert any(r.startswith("gevent>=") and 'extra=="gevent"' in r for r in requires), requires
    assert any(r.startswith("gunicorn>=23") for r in requires), requires


def _server(tmp: Path, python: Path, info: dict, worker: str, args: list[str]) -> Gunicorn:
    app = "apps.echo:asgi" if worker in (ASGI, EGG_ASGI) else "apps.echo:app"
    g = Gunicorn(tmp, app=app, worker=worker, unix=False, args=args)
    g.cmd[0] = str(python)
    if "control_socket_disable" not in info["settings"]:
        g.cmd = [a for a in g.cmd if a != "--no-control-socket"]
    # Only the virtualenv's own packages: nothing from the development tree.
    g.env.pop("VIRTUAL_ENV", None)
    return g


@pytest.mark.nginx
@pytest.mark.parametrize(
    ("worker", "args"),
    [(SYNC, []), (THREAD, ["--threads", "2"]), (EGG_SYNC, []), (ASGI, []), (EGG_ASGI, [])],
    ids=["sync", "thread", "egg-sync", "asgi", "egg-asgi"],
)
def test_smoke_behind_nginx_G1_F7_A1(
    env: tuple[str, Path, dict], worker: str, args: list[str], tmp_path: Path
) -> None:
    """G1: the worker class (or its entry point) serves a GET and a POST echo through nginx
    (B1); F7: HTTP sent to the uwsgi port gets a 400 that names the mistake; A1: with no
    allow-list option, the documented default 127.0.0.1,::1 applies (127.0.0.2 gets 403)."""
    _, python, info = env
    with _server(tmp_path, python, info, worker, args) as g:
        assert g.tcp is not None
        with Nginx(tmp_path, f"127.0.0.1:{g.tcp[1]}") as n:
            status, _, body = n.request("GET", "/hello")
            assert (status, body) == (200, b"Hello world\n"), g.output()[-3000:]
            payload = bytes(range(256)) * 1024
            status, headers, body = n.request("POST", "/echo", body=payload)
            assert status == 200
            assert headers["X-Length"] == str(len(payload))
            assert body == payload

        with socket.create_connection(g.tcp, timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reply = Reply(read_all(s))
        assert reply.status == 400
        assert b"speaking HTTP" in reply.body

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.bind(("127.0.0.2", 0))
            s.connect(g.tcp)
            s.sendall(request_packet(path="/hello"))
            assert Reply(read_all(s)).status == 403
        assert "Traceback" not in g.log()


# -- clean installs, one per extra -----------------------------------------------------------


@pytest.fixture(scope="module")
def extra_env(request: pytest.FixtureRequest, wheel: Path) -> Iterator[tuple[str, Path, dict]]:
    extra = request.param
    python = matrix_venv(f"extra-{extra}" if extra else LATEST, wheel, extra)
    yield extra, python, describe(python)


def test_every_extra_is_covered(wheel: Path) -> None:
    """The extras the wheel declares are the ones the boot test below installs."""
    provided = [
        line.split(":", 1)[1].strip()
        for line in wheel_dependencies(wheel)
        if line.startswith("Provides-Extra:")
    ]
    assert sorted(provided) == EXTRAS[1:]
    assert "gevent" in provided


@pytest.mark.parametrize(
    ("extra_env", "worker"),
    [(extra, worker) for extra in EXTRAS for worker in extra_workers(extra)],
    ids=[f"{extra or 'no-extra'}-{worker_id(w)}" for extra in EXTRAS for w in extra_workers(extra)],
    indirect=["extra_env"],
)
def test_extra_boots_its_worker_classes_G1(
    extra_env: tuple[str, Path, dict], worker: str, tmp_path: Path
) -> None:
    """G1: ``pip install <wheel>`` (or ``<wheel>[extra]``) into a clean virtualenv is enough
    for each worker class that install supports to boot and serve a GET and a POST echo."""
    _, python, info = extra_env
    with _server(tmp_path, python, info, worker, worker_args(worker)) as g:
        assert g.tcp is not None
        reply = ask(g.tcp, request_packet(path="/hello"))
        assert (reply.status, reply.body) == (200, b"Hello world\n"), g.output()[-3000:]
        payload = bytes(range(256)) * 64
        reply = ask(g.tcp, request_packet(method="POST", path="/echo", body=payload))
        assert (reply.status, reply.body) == (200, payload)
        assert f"Using worker: {worker}" in g.log(), g.log()[-3000:]
        assert "Traceback" not in g.log(), g.log()[-3000:]
        if worker == ASGI:
            # [asgi] brings uvloop, which the worker then runs on (asgi_loop auto).
            loop = "uvloop" if extra_env[0] == "asgi" else "asyncio"
            assert f"ASGI event loop: {loop}" in g.log(), g.log()[-3000:]
