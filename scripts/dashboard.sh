#!/usr/bin/env bash
# Set up (first time only) and open the dashboard on the embedded data and the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
