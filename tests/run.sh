#!/usr/bin/env bash
# The one test command (README "Running the tests"; .ci/run calls it). It installs everything the
# tests need by itself: Debian tools (shellcheck, busybox, dash, curl, wget, openssl, perl,
# systemd for systemd-analyze, postgresql for a real database server), a test venv with the
# project and its test packages; then it runs ruff and the whole pytest suite, the real TestGen
# end-to-end test included.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# tool:Debian package (shasum comes with perl)
for pair in shellcheck:shellcheck busybox:busybox dash:dash curl:curl wget:wget openssl:openssl shasum:perl \
    systemd-analyze:systemd; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# A real PostgreSQL server for tests/test_database.py (tests/pg_server.py runs its initdb).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python="${DK_TEST_PYTHON:-python3}"
venv=".venv-test"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt -e .

"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check src tests bench build.py
# Independent tests in parallel: most of their time is spent waiting on the installer and TestGen.
# Handed out one at a time (--maxschedchunk 1), no test waits queued behind the real TestGen tests,
# which conftest.py hands out first, each to a worker of its own.
exec "$venv/bin/python" -m pytest -n 4 --maxschedchunk 1 "$@"
