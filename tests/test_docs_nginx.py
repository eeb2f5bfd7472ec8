"""The nginx configuration the docs give, served through a real nginx (B1, V3).

Debian's ``/etc/nginx/uwsgi_params`` ends with ``uwsgi_param HTTP_HOST $host;`` (the host name
without the port); the README and docs/usage.md give the override that passes the client's
``Host`` header instead. The override is taken from each page as written and must bring the port
to the application: nginx sends ``HTTP_HOST`` twice and the last one wins (V3).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support import Gunicorn, Nginx

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_HOST = re.compile(r"^\s*uwsgi_param\s+HTTP_HOST\s+\$host;", re.M)
OVERRIDE = re.compile(r"^\s*uwsgi_param\s+HTTP_HOST\s+\$http_host;", re.M)


def documented_location(page: str) -> list[str]:
    """The directives of the page's nginx block that overrides ``HTTP_HOST``, ``uwsgi_pass``
    left out (the test's own upstream replaces it)."""
    blocks = re.findall(r"```nginx\n(.*?)```", (ROOT / page).read_text(), re.S)
    found = [b for b in blocks if OVERRIDE.search(b)]
    assert len(found) == 1, f"{page}: no nginx block with uwsgi_param HTTP_HOST $http_host;"
    lines = [x.strip() for x in found[0].splitlines()]
    directives = [x for x in lines if x.endswith(";") and not x.startswith("uwsgi_pass ")]
    assert directives.index("include uwsgi_params;") < next(
        i for i, x in enumerate(directives) if OVERRIDE.match(x)
    ), f"{page}: the override must come after the include"
    return directives


def host_seen(n: Nginx, path: str, host: str) -> str:
    status, _, body = n.request("GET", path, headers={"Host": host})
    assert status == 200, body[:500]
    return json.loads(body)["HTTP_HOST"]


@pytest.mark.nginx
@pytest.mark.parametrize("page", ["README.md", "docs/usage.md"])
def test_documented_http_host_override_brings_the_port_B1_V3(page: str, tmp_path: Path) -> None:
    text = (ROOT / page).read_text()
    assert "uwsgi_param HTTP_HOST $host;" in text, f"{page} does not name Debian's line"
    assert "last one wins" in text
    directives = documented_location(page)
    with Gunicorn(tmp_path, unix=False) as g:
        assert g.tcp is not None
        upstream = f"127.0.0.1:{g.tcp[1]}"
        location = f"location /environ {{ uwsgi_pass {upstream}; {' '.join(directives)} }}"
        with Nginx(tmp_path, upstream, locations=location) as n:
            host = f"localhost:{n.port}"
            stock = (n.prefix / "conf" / "uwsgi_params").read_text()
            # The stock location: Debian's file sends $host (no port); nginx's own sends the
            # Host header as it came.
            expected = "localhost" if DEBIAN_HOST.search(stock) else host
            assert host_seen(n, "/hello/stock", host) == expected
            # The documented override, after the include: the client's Host header, port and all.
            assert host_seen(n, "/environ", host) == host, g.log()[-2000:]
        assert "Traceback" not in g.log()
