#!/usr/bin/env bash
# Create .venv with everything the dashboard and the tests need, and the package itself installed
# editable (the `stmgt` command; `stmgt` importable from anywhere). Idempotent: fast when done.
# torch is pinned to the CPU build that installs offline on the project's machines; with a GPU,
# install the CUDA wheel of the same version into .venv first and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements-installed
if [ ! -f "$stamp" ] || ! cmp -s <(cat requirements.txt requirements-dev.txt pyproject.toml) "$stamp"; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  cat requirements.txt requirements-dev.txt pyproject.toml > "$stamp"
fi
