#!/usr/bin/env bash
# Set up everything Tenpo needs on a fresh Debian 12 / Raspberry Pi OS machine, idempotently:
#   system packages through apt (only when missing, with sudo when not root), a virtualenv with the
#   project and its dependencies, and for tests a running PostgreSQL that accepts the test URL.
# Usage: scripts/setup.sh [--tests]
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[ "${1:-}" = "--tests" ] && want_tests=1

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
# The compiled EPC decoder (docs/rfid.md) needs a C compiler and the headers of the Python the venv uses.
command -v gcc >/dev/null || missing+=(gcc)
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  2>/dev/null || missing+=(python3-dev)
if [ "$want_tests" -eq 1 ]; then
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v chromium >/dev/null || missing+=(chromium)  # tests/test_hq_browser.py: the served monitor in a browser
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} with apt"
  apt_install "${missing[@]}"
fi

# Debian's mosquitto package starts a system broker; Tenpo's demo and tests start their own on free ports.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# The demo runs HQ on this machine, so it gets the hq extra; tests and bench also get dev (pytest, ruff,
# mypy). Versions come from constraints.txt, so two machines set up a month apart run the same ones.
# Reinstall when pyproject.toml or constraints.txt changed since the last install (a hash in the stamp).
extras=hq
[ "$want_tests" -eq 1 ] && extras=hq,dev
inputs=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
stamp=.venv/.tenpo-installed
installed=$(cat "$stamp" 2>/dev/null || true)
if [ "$installed" != "$inputs $extras" ] && [ "$installed" != "$inputs hq,dev" ]; then
  echo "setup: installing tenpo[$extras] with the versions in constraints.txt"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]"
  echo "$inputs $extras" > "$stamp"
fi

# The EPC codec compiled with mypyc into the venv (docs/rfid.md, about twice the tags per second), rebuilt
# when shared/epc.py changed. Without it the same codec runs as pure Python, so the appliance carries on;
# tests check both, so with --tests a failed build fails setup.
build_epc_native() {
  .venv/bin/python -c 'import mypyc' 2>/dev/null || .venv/bin/python -m pip install -q -c constraints.txt mypy || return 1
  .venv/bin/python scripts/build_epc_native.py --if-stale
}
if ! build_epc_native; then
  [ "$want_tests" -eq 1 ] && { echo "setup: the compiled EPC codec did not build" >&2; exit 1; }
  echo "setup: the compiled EPC codec did not build; the pure-Python codec runs instead" >&2
fi

if [ "$want_tests" -eq 1 ]; then
  url="${TENPO_TEST_POSTGRES_URL:-postgresql://postgres:postgres@127.0.0.1:5432/postgres}"
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ]; then
      echo "setup: starting PostgreSQL $version"
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if ! psql "$url" -qtAc 'select 1' >/dev/null 2>&1; then
    # A packaged cluster asks for a password over TCP: give the postgres role the one in the test URL.
    echo "setup: setting the postgres role's password for the test URL"
    as_root runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'"
  fi
  psql "$url" -qtAc 'select 1' >/dev/null || { echo "setup: PostgreSQL does not accept $url" >&2; exit 1; }
fi
