#!/usr/bin/env bash
# gunicorn-uwsgi-rs: the two commands.
#
#   ./dev.sh run    build into .venv and serve examples/app.py through nginx -> gunicorn ->
#                   gunicorn_uwsgi.SyncWorker, printing a few responses
#   ./dev.sh test   install what is missing, build, run cargo test, clippy, fmt, ruff and the
#                   type checks (mypy --strict, stubtest), the docs site (mkdocs build --strict)
#                   and the whole pytest suite (nginx end-to-end tests, Flask, Django, the
#                   gunicorn 23-26 matrix, and the wrk soak, fault and scale-out runs included;
#                   GUNICORN_UWSGI_SOAK_SECONDS sets the soak, 60 s by default)
#   ./dev.sh bench  the benchmarks (see docs/benchmarks.md)
#   ./dev.sh nginx-tests DIR [--no-build] [SERVER...]
#                   nginx's own uwsgi tests (DIR: an exported nginx-tests checkout) against each
#                   worker class through tests/nginx_tests/uwsgi; SERVER is SyncWorker, ThreadWorker,
#                   GeventWorker (all three by default) or uwsgi, the real uWSGI server, for the
#                   baseline (see docs/development.md)
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_updated=
apt_install() {
  command -v apt-get >/dev/null || { echo "please install: $*" >&2; return 1; }
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# System packages: only what is missing is installed.
ensure_system() {
  local want=()
  command -v python3 >/dev/null || want+=(python3)
  python3 -c 'import ensurepip, venv' 2>/dev/null || want+=(python3-venv)
  command -v cc >/dev/null || want+=(gcc libc6-dev)
  command -v cargo >/dev/null || want+=(cargo rustc)
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || want+=(nginx)
  [ -f /etc/nginx/uwsgi_params ] || want+=(nginx-common)
  command -v wrk >/dev/null || want+=(wrk)    # the load generator of the soak, fault and bench runs
  if [ ${#want[@]} -gt 0 ]; then
    log "installing ${want[*]}"
    apt_install "${want[@]}"
  fi
  # nginx from Debian is enabled as a service on install; the tests start their own.
  command -v cargo >/dev/null && { cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1 \
    || { command -v rustup >/dev/null && rustup component add clippy rustfmt; } || true; }
}

ensure_venv() {
  if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  log "installing Python build and test dependencies"
  "$PY" -m pip install -q --disable-pip-version-check "maturin>=1.5,<2" "gunicorn>=23" pytest ruff \
    "gevent>=24.10.1" mypy flask django mkdocs starlette fastapi python-multipart uvloop websockets \
    channels "$@"
}

build() {
  log "building the extension (release) into $VENV"
  VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --release -q
}

cmd_run() {
  ensure_system
  ensure_venv
  build
  log "serving examples/app.py: nginx -> uwsgi_pass -> gunicorn (gunicorn_uwsgi.SyncWorker)"
  "$PY" examples/serve.py
}

cmd_test() {
  ensure_system
  ensure_venv
  build
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy -D warnings"
  cargo clippy --all-targets -- -D warnings
  log "cargo test"
  cargo test
  log "ruff"
  "$VENV/bin/ruff" check python tests examples bench
  "$VENV/bin/ruff" format --check python tests examples bench
  log "mypy --strict"
  "$VENV/bin/mypy" --strict python/gunicorn_uwsgi
  log "mypy.stubtest gunicorn_uwsgi._native"
  "$PY" -m mypy.stubtest --allowlist stubtest-allowlist.txt gunicorn_uwsgi._native
  log "mkdocs build --strict"
  local site
  site=$(mktemp -d)
  "$VENV/bin/mkdocs" build --strict --quiet --site-dir "$site" || { rm -rf "$site"; return 1; }
  rm -rf "$site"
  log "pytest"
  local rc=0
  "$PY" -m pytest tests "$@" || rc=$?
  if [ "$rc" = 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    return 1
  fi
  return "$rc"
}

cmd_bench() {
  ensure_system
  ensure_venv uwsgi uvicorn httptools uvloop granian websockets
  build
  "$PY" bench/run.py "$@"
}

NGINX_TESTS=(uwsgi.t uwsgi_body.t uwsgi_ssl.t uwsgi_ssl_certificate.t uwsgi_ssl_certificate_vars.t
  uwsgi_ssl_verify.t)

cmd_nginx_tests() {
  local dir=${1:-}
  [ -n "$dir" ] && [ -f "$dir/lib/Test/Nginx.pm" ] || {
    echo "usage: $0 nginx-tests DIR [--no-build] [SERVER...]: DIR is an nginx-tests checkout" >&2; return 2; }
  dir=$(cd "$dir" && pwd)
  shift
  local build=1 servers=() s
  for s in "$@"; do
    case "$s" in
      --no-build) build= ;;
      SyncWorker | ThreadWorker | GeventWorker | uwsgi) servers+=("$s") ;;
      *) echo "unknown server '$s': SyncWorker, ThreadWorker, GeventWorker or uwsgi" >&2; return 2 ;;
    esac
  done
  [ ${#servers[@]} -gt 0 ] || servers=(SyncWorker ThreadWorker GeventWorker)
  command -v prove >/dev/null || { echo "prove (perl) is needed" >&2; return 1; }
  if [ -n "$build" ]; then
    ensure_system
    if [[ " ${servers[*]} " = *" uwsgi "* ]]; then ensure_venv uwsgi; else ensure_venv; fi
    build
  fi
  # The shim hides the binary's =dynamic modules from Test::Nginx (Debian ships them apart); as
  # root, nginx's workers run as nobody and could not read the tests' 0700 directories.
  local real=${TEST_NGINX_BINARY:-$(command -v nginx || echo /usr/sbin/nginx)}
  local globals=${TEST_NGINX_GLOBALS:-}
  [ -n "$globals" ] || [ "$(id -u)" != 0 ] || globals='user root;'
  local out rc=0 path t tap pass plan failed
  out=$(mktemp -d)
  log "nginx-tests uwsgi*.t, $("$real" -v 2>&1 | sed 's/.*: //'): passed/planned subtests per file"
  for s in "${servers[@]}"; do
    if [ "$s" = uwsgi ]; then path="$VENV/bin:$PATH"; else path="$ROOT/tests/nginx_tests:$PATH"; fi
    for t in "${NGINX_TESTS[@]}"; do
      tap=$out/$s.$t.log
      (cd "$dir" && env PATH="$path" GUNICORN_UWSGI_WORKER="$s" GUNICORN_UWSGI_NGINX="$real" \
        TEST_NGINX_BINARY="$ROOT/tests/nginx_tests/nginx" TEST_NGINX_GLOBALS="$globals" \
        prove -v "$t" >"$tap" 2>&1) || rc=1
      pass=$(grep -c '^ok ' "$tap" || true)
      plan=$(sed -n 's/^1\.\.\([0-9]*\).*/\1/p' "$tap" | head -1)
      failed=$(sed -n 's/^not ok [0-9]* - //p' "$tap" | paste -sd ';' | sed 's/;/; /g')
      # A test that dies (the server did not start, say) stops before its subtests.
      [ "$pass" = "${plan:-}" ] || [ -n "$failed" ] || failed=$(grep -m1 ' line [0-9]*\.$' "$tap" || true)
      printf '%-13s %-30s %3s/%-3s %s\n' "$s" "$t" "$pass" "${plan:-?}" "${failed:+failed: $failed}"
    done
  done
  echo "prove output: $out" >&2
  return "$rc"
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  nginx-tests) shift; cmd_nginx_tests "$@" ;;
  *) echo "usage: $0 run|test|bench|nginx-tests DIR" >&2; exit 2 ;;
esac
