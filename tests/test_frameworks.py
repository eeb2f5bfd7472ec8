"""Flask and Django behind a real nginx (``uwsgi_pass`` + the stock ``uwsgi_params``), served by
``gunicorn_uwsgi.SyncWorker``: forms, a 10 MiB multipart upload, a streamed response, absolute
URLs and redirects under ``HTTPS on``, the real client address, and an application mounted under
a ``SCRIPT_NAME`` prefix.

Each framework gets one gunicorn (TCP on 127.0.0.1) and one nginx with two servers in front of
it: plain HTTP, and a second one that sets ``uwsgi_param HTTPS on`` as a TLS-terminating nginx
would. The applications are ``apps/flask_app.py`` and ``apps/django_app.py``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from support import IN_CI, SYNC, Gunicorn, Nginx, free_port

#: A second loopback address for the client, so that the real client (nginx's ``$remote_addr``)
#: differs from the peer gunicorn sees (nginx itself, 127.0.0.1).
OTHER_CLIENT = "127.0.0.2"
HOST = "shop.example.test"

APPS = {"flask": "apps.flask_app:app", "django": "apps.django_app:application"}


@dataclass
class Site:
    framework: str
    gunicorn: Gunicorn
    nginx: Nginx
    https_port: int
    tmp: Path

    def route(self, name: str) -> str:
        """Flask routes are ``/name``, Django's ``/name/``."""
        return f"/{name}/" if self.framework == "django" else f"/{name}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        https: bool = False,
        source: str | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        port = self.https_port if https else self.nginx.port
        conn = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=30, source_address=(source, 0) if source else None
        )
        try:
            conn.request(method, path, body=body, headers={"Host": HOST, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, **kw: Any) -> Any:
        status, _, body = self.request(method, path, **kw)
        assert status == 200, (status, body[:500], self.gunicorn.log()[-3000:])
        return json.loads(body)


def require_module(name: str) -> None:
    """A missing framework fails the test in CI and skips it elsewhere."""
    try:
        __import__(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{name} is not installed (pip install {name})")
        pytest.skip(f"{name} is not installed")


def _nginx_config(upstream: str, https_port: int) -> tuple[str, str]:
    """The ``location`` blocks of the plain server, and the HTTPS-on server."""

    def passing(extra: str = "") -> str:
        return f"include uwsgi_params; {extra} uwsgi_pass {upstream};"

    locations = f"""
        location /prefix/ {{ {passing("uwsgi_param SCRIPT_NAME /prefix; uwsgi_modifier1 30;")} }}
        location /stream {{ {passing("uwsgi_buffering off;")} }}
    """
    https_server = f"""
    server {{
        listen 127.0.0.1:{https_port};
        server_name localhost;
        location / {{ {passing("uwsgi_param HTTPS on;")} }}
    }}
    """
    return locations, https_server


@pytest.fixture(scope="module", params=sorted(APPS))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    framework = request.param
    require_module(framework)
    tmp = tmp_path_factory.mktemp(framework)
    with Gunicorn(tmp, app=APPS[framework], worker=SYNC, unix=False) as g:
        host, port = g.tcp
        https_port = free_port()
        locations, https_server = _nginx_config(f"{host}:{port}", https_port)
        with Nginx(tmp, f"{host}:{port}", locations=locations, http_extra=https_server) as n:
            yield Site(framework, g, n, https_port, tmp)


def test_form_post_B1(site: Site) -> None:
    """B1: an urlencoded form POST reaches the framework's form parser whole."""
    body = urlencode([("name", "Zoë & co"), ("tag", "a"), ("tag", "b")]).encode()
    got = site.json(
        "POST",
        site.route("form"),
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert got == {"name": "Zoë & co", "tags": ["a", "b"]}


def _multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "----gunicorn-uwsgi-" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    out += data + f"\r\n--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def test_multipart_upload_10mib_B1(site: Site) -> None:
    """B1: a 10 MiB multipart upload arrives byte for byte: the size and SHA-256 the
    framework computes match what was sent."""
    data = os.urandom(1 << 20) * 10
    body, content_type = _multipart({"note": "ten mebibytes"}, "blob.bin", data)
    got = site.json("POST", site.route("upload"), body=body, headers={"Content-Type": content_type})
    assert got == {
        "filename": "blob.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "ten mebibytes",
    }


def test_streamed_response_R3(site: Site) -> None:
    """R3: a streamed response (no Content-Length) reaches the client as it is produced: the
    first chunk arrives while the application still waits before producing the rest, and the
    body ends at close."""
    gate = site.tmp / f"gate-{uuid.uuid4().hex}"
    conn = http.client.HTTPConnection("127.0.0.1", site.nginx.port, timeout=30)
    try:
        conn.request("GET", f"{site.route('stream')}?gate={gate}", headers={"Host": HOST})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Length") is None
        started = time.monotonic()
        first = resp.read1(64)
        assert first == b"first\n"
        # The application holds the rest for up to 10 s, until the gate exists.
        assert time.monotonic() - started < 5
        gate.touch()
        rest = resp.read()
    finally:
        conn.close()
    assert first + rest == b"first\nsecond\nthird\n"


def test_absolute_urls_http_E7(site: Site) -> None:
    """E7, E5: without HTTPS on, absolute URLs are http:// with the Host the client asked for."""
    got = site.json("GET", site.route("url"))
    assert got["scheme"] == "http"
    assert got["is_secure"] is False
    assert got["host"] == HOST
    assert got["external"] == f"http://{HOST}{site.route('url')}"


def test_absolute_urls_https_on_E7(site: Site) -> None:
    """E7: nginx's `uwsgi_param HTTPS on` makes url_for(_external=True) and
    build_absolute_uri() https:// URLs, with the client's Host."""
    got = site.json("GET", site.route("url"), https=True)
    assert got["scheme"] == "https"
    assert got["is_secure"] is True
    assert got["host"] == HOST
    assert got["external"] == f"https://{HOST}{site.route('url')}"


def test_redirect_https_on_E7(site: Site) -> None:
    """E7: a redirect to an absolute URL built by the framework has the https scheme and the
    client's host when nginx sets HTTPS on; plain http otherwise."""
    status, headers, _ = site.request("GET", site.route("redirect"), https=True)
    assert status == 302
    assert headers["Location"] == f"https://{HOST}{site.route('done')}"
    status, headers, _ = site.request("GET", site.route("redirect"))
    assert status == 302
    assert headers["Location"] == f"http://{HOST}{site.route('done')}"
    status, _, body = site.request("GET", site.route("done"))
    assert (status, body) == (200, b"done")


def test_remote_addr_is_real_client_E4(site: Site) -> None:
    """E4: request.remote_addr / request.META["REMOTE_ADDR"] is the client nginx saw
    (127.0.0.2), not nginx's own address (127.0.0.1) that gunicorn accepted from."""
    got = site.json("GET", site.route("client"), source=OTHER_CLIENT)
    assert got == {"remote_addr": OTHER_CLIENT}


def test_script_name_prefix_E3_E2(site: Site) -> None:
    """E3, E2, F4: mounted under /prefix (`uwsgi_param SCRIPT_NAME /prefix; uwsgi_modifier1
    30;`), the application routes on the path without the prefix and generates prefixed URLs."""
    got = site.json("GET", "/prefix" + site.route("url") + "?q=1")
    assert got["path"] == "/prefix" + site.route("url")
    assert got["external"] == f"http://{HOST}/prefix{site.route('url')}"
    assert got["full_url"] == f"http://{HOST}/prefix{site.route('url')}?q=1"
    if site.framework == "flask":
        assert got["script_root"] == "/prefix"
    else:
        assert got["script_name"] == "/prefix"
    status, headers, _ = site.request("GET", "/prefix" + site.route("redirect"))
    assert status == 302
    assert headers["Location"] == f"http://{HOST}/prefix{site.route('done')}"
