#!/usr/bin/env bash
# Creates .venv (installing Debian's python3-venv first when the interpreter cannot make one)
# and installs the project from requirements.lock: every dependency at its locked version, each
# file checked against its locked sha256 (pip --require-hashes), then the project itself without
# dependencies. Re-runs pip only when pyproject.toml or requirements.lock changed.
# The lock holds the test extras too (one locked set for `make run`, `make test` and CI);
# `make lock` regenerates it after pyproject.toml's dependencies change.
set -euo pipefail
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv >/dev/null 2>&1; then
    # Debian ships venv/ensurepip separately (python3-venv); install it and try again.
    rm -rf .venv
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv "python${ver}-venv" >/dev/null \
      || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv .venv
  fi
fi
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q -U pip >/dev/null
  # Exactly the locked set, hash-checked (setuptools and wheel, which build the project, included).
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements.lock
  # The project itself (editable), built with the locked setuptools; its dependencies are above.
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e ".${extras:+[$extras]}"
  .venv/bin/python -m pip check >/dev/null || {
    echo "requirements.lock does not satisfy pyproject.toml: run \`make lock\`" >&2; .venv/bin/python -m pip check >&2; exit 1; }
  touch "$stamp"
fi
