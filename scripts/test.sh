#!/usr/bin/env bash
# Lint, unit tests, every notebook under nbval, and the browser test of the explorer widget.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> ruff"
.venv/bin/ruff check helpers tests notebooks benchmarks
echo "==> the explorer's unit tests under ipywidgets 7.7 (Colab's version)"
bash scripts/test_ipywidgets7.sh
echo "==> pytest: unit tests, notebooks (nbval), browser test"
.venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-current-env \
  --nbval-cell-timeout=300 -p no:cacheprovider -q "$@"
