#!/usr/bin/env bash
# Set up (first time only) and open the dashboard on the embedded data and the bundled model.
# It listens on localhost only (.streamlit/config.toml); `--server.address 0.0.0.0` shares it on the LAN.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
