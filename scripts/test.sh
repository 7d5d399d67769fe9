#!/usr/bin/env bash
# Set up (first time only), check the code with ruff and run every test: unit, page (AppTest) and
# real-browser (e2e).
# The browser tests drive Debian's Chromium; it is installed here when missing (needs root/sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
