#!/usr/bin/env bash
# Create .venv with everything the dashboard and the tests need, and the package itself installed
# editable (the `stmgt` command; `stmgt` importable from anywhere). Idempotent: fast when done.
# torch is pinned to the CPU build that installs offline on the project's machines; with a GPU,
# install the CUDA wheel of the same version into .venv first and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements-installed
if [ ! -f "$stamp" ] || ! cmp -s <(cat requirements.txt requirements-dev.txt pyproject.toml) "$stamp"; then
  # Said, not silent: a first install took 2 min 20 s on a busy 2-core machine (torch is most of it).
  echo "setup: installing the dashboard's packages into .venv (torch, streamlit, …);" \
       "the first time takes about 2–3 minutes, an update less" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  cat requirements.txt requirements-dev.txt pyproject.toml > "$stamp"
  echo "setup: done" >&2
fi
