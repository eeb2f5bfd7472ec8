"""End to end: the nginx configurations users actually write, through a real nginx in front of a
real gunicorn, once per worker class (``SyncWorker``, ``ThreadWorker`` with 4 threads,
``GeventWorker``).

``include uwsgi_params;`` followed by a ``uwsgi_param`` that overrides one of its params makes nginx
send that var twice (V3): the TLS setup gunicorn documents (a ``listen … ssl`` server with
``uwsgi_param HTTPS on``, where the stock params already send ``HTTPS on``), Debian's
``HTTP_HOST $host`` replaced by ``$http_host``, ``REMOTE_ADDR`` from ``X-Real-IP``, ``SERVER_NAME``
and ``SERVER_PORT``, ``SCRIPT_NAME``. A location without ``include uwsgi_params`` sends no
``REQUEST_METHOD`` at all (V6).

One gunicorn per worker class (serving ``apps.configs``: the environ and the body as JSON for any
request, Django for a request with ``X-Django``) and one nginx in front of it, with a plain server
and a TLS server on a self-signed certificate made at test time, are shared by the module.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import re
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import LogMark
from test_frameworks import require_module

from support import (
    WORKERS,
    Gunicorn,
    Nginx,
    Reply,
    exchange,
    free_port,
    require_worker,
    vector,
    wait_until,
    worker_args,
    worker_id,
)

pytestmark = pytest.mark.nginx

#: The Host a client sends to a site on a non-default port.
HOST_WITH_PORT = "example.com:8443"
#: The client address a load balancer in front of nginx reports in X-Real-IP.
REAL_IP = "198.51.100.7"
MISSING_PARAMS = "include uwsgi_params"


@dataclass
class Site:
    gunicorn: Gunicorn
    nginx: Nginx
    tls_port: int
    cert: Path
    access_log: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        tls: bool = False,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        if not tls:
            return self.nginx.request(method, path, body=body, headers=headers)
        context = ssl.create_default_context(cafile=str(self.cert))
        conn = http.client.HTTPSConnection("127.0.0.1", self.tls_port, timeout=30, context=context)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def inspect(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        tls: bool = False,
    ) -> tuple[dict[str, Any], bytes]:
        """A request answered 200 by ``apps.configs``: (the environ, the request body)."""
        status, _, data = self.request(method, path, body=body, headers=headers, tls=tls)
        assert status == 200, (
            status,
            data[:300],
            self.gunicorn.log()[-2000:],
            self.nginx.error_log()[-1000:],
        )
        payload = json.loads(data)
        return payload["environ"], payload["body"].encode("latin-1")


# -- the certificate -------------------------------------------------------------------------


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day: with the openssl
    CLI, else with the ``cryptography`` package; neither is a failure, never a skip."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl")
    if openssl:
        subprocess.run(
            [
                openssl,
                *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
                *("-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key)),
                *("-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return cert, key
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        pytest.fail(
            "cannot make the test's TLS certificate: neither the openssl CLI "
            "(apt-get install openssl) nor the cryptography package is installed"
        )
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


# -- the servers -----------------------------------------------------------------------------


def _config(upstream: str, tls_port: int, cert: Path, key: Path) -> tuple[str, str]:
    """The ``location`` blocks of the plain server, and the TLS server."""

    def passing(extra: str = "") -> str:
        return f"include uwsgi_params; {extra} uwsgi_pass {upstream};"

    locations = f"""
        location /host/ {{ {passing("uwsgi_param HTTP_HOST $http_host;")} }}
        location = /url/ {{ {passing("uwsgi_param HTTP_HOST $http_host;")} }}
        location /real-ip/ {{ {passing("uwsgi_param REMOTE_ADDR $http_x_real_ip;")} }}
        location /server/ {{
            {passing("uwsgi_param SERVER_NAME www.example.org; uwsgi_param SERVER_PORT 8443;")}
        }}
        location /mount/ {{
            {passing("uwsgi_param SCRIPT_NAME /elsewhere; uwsgi_param SCRIPT_NAME /mount;")}
            uwsgi_modifier1 30;
        }}
        location /length/ {{ {passing("uwsgi_param CONTENT_LENGTH 5;")} }}
        location /bare/ {{ uwsgi_pass {upstream}; }}
        location /bare-query/ {{ uwsgi_param QUERY_STRING $query_string; uwsgi_pass {upstream}; }}
        location /empty/ {{ uwsgi_pass_request_headers off; uwsgi_pass {upstream}; }}
    """
    tls_server = f"""
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ {passing("uwsgi_param HTTPS on;")} }}
        location /account/ {{
            {passing("uwsgi_param HTTPS on; uwsgi_param HTTP_HOST $http_host;")}
        }}
    }}
    """
    return locations, tls_server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module", params=WORKERS, ids=worker_id)
def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    certificate: tuple[Path, Path],
) -> Iterator[Site]:
    worker = request.param
    require_worker(worker)
    tmp = tmp_path_factory.mktemp(f"configs-{worker_id(worker)}")
    access_log = tmp / "access.log"
    args = ["--access-logfile", str(access_log), *worker_args(worker)]
    with Gunicorn(tmp, app="apps.configs:app", worker=worker, unix=False, args=args) as g:
        upstream = f"{g.tcp[0]}:{g.tcp[1]}"
        tls_port = free_port()
        locations, tls_server = _config(upstream, tls_port, *certificate)
        with Nginx(tmp, upstream, locations=locations, http_extra=tls_server) as n:
            yield Site(g, n, tls_port, certificate[0], access_log)


def missing_params_warnings(site: Site, pid: int) -> list[str]:
    """The WARNING lines of worker ``pid`` that say ``include uwsgi_params`` is missing."""
    return [
        line
        for line in site.gunicorn.log().splitlines()
        if f"[{pid}] [WARNING]" in line and MISSING_PARAMS in line
    ]


# -- TLS termination -------------------------------------------------------------------------


def test_tls_listener_with_https_on_V3_E7(site: Site) -> None:
    """V3, E7: the TLS setup gunicorn documents: `listen … ssl` with `include uwsgi_params;
    uwsgi_param HTTPS on;`. nginx sends HTTPS twice (the stock `$https` and the override, both
    `on`); the repeat collapses, the request is served, and the application sees https."""
    environ, _ = site.inspect("GET", "/shop/?q=1", headers={"Host": "shop.example.test"}, tls=True)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTPS"] == "on"
    assert environ["REQUEST_SCHEME"] == "https"
    assert environ["HTTP_HOST"] == "shop.example.test"
    assert environ["QUERY_STRING"] == "q=1"
    assert environ["SERVER_PORT"] == str(site.tls_port)


def test_tls_listener_with_https_on_and_host_override_V3_E7(site: Site) -> None:
    """V3, E7: the live form of the vector nginx-tls-override.bin: TLS, `HTTPS on` and
    `HTTP_HOST $http_host` after the include: https, and the Host with its port (the last
    HTTP_HOST), not Debian's `$host` nor the two joined."""
    environ, _ = site.inspect("GET", "/account/", headers={"Host": HOST_WITH_PORT}, tls=True)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTPS"] == "on"
    assert environ["HTTP_HOST"] == HOST_WITH_PORT


def test_tls_override_vector_V3_E7(site: Site) -> None:
    """V3, E7: the captured packet nginx-tls-override.bin (HTTPS `on` twice, HTTP_HOST
    `example.com` then `example.com:8443`) sent straight to the uwsgi socket is served with
    https and the last HTTP_HOST."""
    reply = Reply(exchange(site.gunicorn.tcp, vector("nginx-tls-override.bin")))
    assert reply.status == 200, (reply, site.gunicorn.log()[-2000:])
    environ = reply.json()["environ"]
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTPS"] == "on"
    assert environ["HTTP_HOST"] == HOST_WITH_PORT
    assert environ["PATH_INFO"] == "/account/"


# -- include, then override ------------------------------------------------------------------


def test_http_host_override_keeps_the_port_V3(site: Site) -> None:
    """V3: `uwsgi_param HTTP_HOST $http_host;` after Debian's `HTTP_HOST $host`: the last one
    wins, so the Host keeps its port."""
    environ, _ = site.inspect("GET", "/host/page", headers={"Host": HOST_WITH_PORT})
    assert environ["HTTP_HOST"] == HOST_WITH_PORT
    assert environ["wsgi.url_scheme"] == "http"


def test_http_host_override_through_django_V3(site: Site) -> None:
    """V3: Django behind `uwsgi_param HTTP_HOST $http_host;` answers 200 (no DisallowedHost, no
    400 from the worker) and builds absolute URLs with the Host the client sent."""
    require_module("django")
    status, _, body = site.request(
        "GET", "/url/", headers={"Host": HOST_WITH_PORT, "X-Django": "1"}
    )
    assert status == 200, (status, body[:500], site.gunicorn.log()[-2000:])
    got = json.loads(body)
    assert got["host"] == HOST_WITH_PORT
    assert got["external"] == f"http://{HOST_WITH_PORT}/url/"


def test_remote_addr_from_x_real_ip_V3_E4(site: Site) -> None:
    """V3, E4: `uwsgi_param REMOTE_ADDR $http_x_real_ip;` after the include: the application
    and gunicorn's access log (%(h)s) both see the last REMOTE_ADDR, the client the balancer
    reported, not nginx's `$remote_addr`."""
    marker = uuid.uuid4().hex
    environ, _ = site.inspect("GET", f"/real-ip/?{marker}", headers={"X-Real-IP": REAL_IP})
    assert environ["REMOTE_ADDR"] == REAL_IP
    lines: list[str] = []

    def logged() -> bool:
        if site.access_log.exists():
            text = site.access_log.read_text(errors="replace")
            lines[:] = [ln for ln in text.splitlines() if marker in ln]
        return bool(lines)

    assert wait_until(logged, timeout=10), site.gunicorn.log()[-2000:]
    assert lines[0].startswith(REAL_IP + " "), lines[0]


def test_server_name_and_port_override_V3_E5(site: Site) -> None:
    """V3, E5: `uwsgi_param SERVER_NAME …; uwsgi_param SERVER_PORT …;` after the include: the
    overrides reach the application."""
    environ, _ = site.inspect("GET", "/server/x")
    assert environ["SERVER_NAME"] == "www.example.org"
    assert environ["SERVER_PORT"] == "8443"


def test_script_name_override_strips_by_the_last_V3_E3_F4(site: Site) -> None:
    """V3, E3, F4: SCRIPT_NAME set twice (a params snippet's value, then the location's
    `/mount`; Debian's uwsgi_params sends none, so the config writes both) with
    `uwsgi_modifier1 30`: the last one is the environ's SCRIPT_NAME and the one PATH_INFO is
    stripped by."""
    environ, _ = site.inspect("GET", "/mount/page?x=1")
    assert environ["SCRIPT_NAME"] == "/mount"
    assert environ["PATH_INFO"] == "/page"
    assert environ["QUERY_STRING"] == "x=1"


# -- no include uwsgi_params -----------------------------------------------------------------


def _assert_pep3333_get(environ: dict[str, Any], query: str) -> None:
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == ""
    assert environ["SCRIPT_NAME"] == ""
    assert environ["QUERY_STRING"] == query
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_NAME"]
    assert environ["SERVER_PORT"]
    assert environ["wsgi.url_scheme"] == "http"


def test_no_uwsgi_params_served_as_get_with_one_warning_V6(site: Site) -> None:
    """V6: locations with `uwsgi_pass` and no `include uwsgi_params` (nothing, or only
    `uwsgi_param QUERY_STRING`; nginx still sends the request headers), and one with
    `uwsgi_pass_request_headers off` too (an empty vars block): each request is served as GET
    with the keys PEP 3333 requires, and the worker logs exactly one WARNING that names
    `include uwsgi_params`, however many such requests it served."""
    pids = set()
    for _ in range(3):
        environ, _ = site.inspect("GET", "/bare/")
        _assert_pep3333_get(environ, "")
        pids.add(environ["pid"])
        environ, _ = site.inspect("GET", "/bare-query/?a=1&b=2")
        _assert_pep3333_get(environ, "a=1&b=2")
        pids.add(environ["pid"])
        environ, _ = site.inspect("GET", "/empty/?a=1")
        _assert_pep3333_get(environ, "")
        assert not any(k.startswith("HTTP_") for k in environ), environ
        pids.add(environ["pid"])
    assert len(pids) == 1, pids
    (pid,) = pids
    assert wait_until(lambda: missing_params_warnings(site, pid), timeout=10), site.gunicorn.log()[
        -3000:
    ]
    warnings = missing_params_warnings(site, pid)
    assert len(warnings) == 1, warnings
    assert "REQUEST_METHOD" in warnings[0], warnings[0]


# -- CONTENT_LENGTH twice ----------------------------------------------------------------------


def test_content_length_twice_different_is_400_V3(site: Site) -> None:
    """V3, X1: `uwsgi_param CONTENT_LENGTH 5;` after the include on a POST of another length:
    nginx sends two different CONTENT_LENGTHs, the body framing is ambiguous, and the worker
    answers 400 (relayed by nginx) with one WARNING line."""
    mark = LogMark(site.gunicorn)
    status, _, body = site.request(
        "POST",
        "/length/",
        body=b"eleven byte",
        headers={"Content-Type": "text/plain"},
    )
    assert status == 400, (status, body[:300], mark.new())
    # The worker's own plain-text answer, relayed by nginx (not an nginx error page).
    assert body.startswith(b"400 Bad Request"), body[:300]
    line = mark.wait_for(r"\[WARNING\].*CONTENT_LENGTH")
    assert len(mark.lines("WARNING")) == 1, mark.new()
    assert "Traceback" not in mark.new(), line


def test_content_length_twice_same_is_served_V3(site: Site) -> None:
    """V3, B1: the same override on a POST of exactly 5 bytes: the two CONTENT_LENGTHs agree,
    the repeat collapses, and the application reads the whole body."""
    mark = LogMark(site.gunicorn)
    environ, body = site.inspect(
        "POST", "/length/", body=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert environ["CONTENT_LENGTH"] == "5"
    assert environ["REQUEST_METHOD"] == "POST"
    assert body == b"hello"
    assert not re.search(r"\[WARNING\]|\[ERROR\]", mark.new()), mark.new()
