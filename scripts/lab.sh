#!/usr/bin/env bash
# Open the series in JupyterLab (after scripts/setup.sh). Extra arguments go to jupyter lab.
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=()
[ "$(id -u)" = 0 ] && ARGS+=(--allow-root)  # containers often run as root; JupyterLab refuses it otherwise
exec .venv/bin/jupyter lab "${ARGS[@]}" "$@" notebooks/00_overview.ipynb
