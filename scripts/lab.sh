#!/usr/bin/env bash
# Open the series in JupyterLab (after scripts/setup.sh). Extra arguments go to jupyter lab.
# Written for bash 3.2 too (macOS): no empty arrays under `set -u`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  set -- --allow-root "$@"  # containers often run as root; JupyterLab refuses it otherwise
fi
exec .venv/bin/jupyter lab "$@" notebooks/00_overview.ipynb
