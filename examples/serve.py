"""The run command: nginx (uwsgi_pass + the stock uwsgi_params) in front of gunicorn with
gunicorn_uwsgi.SyncWorker on a unix socket, serving examples/app.py; prints a few responses.

Everything runs on loopback and in a temporary folder, and is stopped at the end.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support import Gunicorn, Nginx  # noqa: E402


def show(nginx: Nginx, method: str, path: str, body: bytes | None = None) -> None:
    status, headers, data = nginx.request(method, path, body=body)
    print(f"$ curl -X {method} http://127.0.0.1:{nginx.port}{path}")
    print(f"HTTP {status} {headers.get('Content-Type', '')}")
    print(data.decode("utf-8", "replace"))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gunicorn-uwsgi-demo-") as tmp:
        tmp_path = Path(tmp)
        gunicorn = Gunicorn(
            tmp_path,
            app="app:app",
            tcp=False,
            unix=True,
            args=["--chdir", str(HERE), "--log-level", "info"],
        )
        with gunicorn, Nginx(tmp_path, f"unix:{gunicorn.unix}") as nginx:
            print(f"nginx on http://127.0.0.1:{nginx.port} -> uwsgi_pass unix:{gunicorn.unix}\n")
            show(nginx, "GET", "/")
            show(nginx, "GET", "/whoami?lang=en")
            show(nginx, "POST", "/upload", body=b"x" * 100_000)
            show(nginx, "GET", "/missing")
        print("gunicorn log:")
        print(gunicorn.log())
    return 0


if __name__ == "__main__":
    sys.exit(main())
