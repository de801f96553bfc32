#!/usr/bin/env bash
# Lint, unit tests, every notebook under nbval, and the browser test of the explorer widget.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> ruff"
.venv/bin/ruff check helpers tests notebooks benchmarks scripts
.venv/bin/ruff format --check helpers tests benchmarks notebooks scripts
echo "==> shellcheck"
SCRIPTS=(scripts/*.sh .ci/run postBuild)
if command -v shellcheck >/dev/null; then
  shellcheck "${SCRIPTS[@]}"
elif [ -n "${CI:-}" ]; then
  echo "shellcheck is not installed: scripts/setup.sh --dev installs it" >&2
  exit 1
else
  echo "shellcheck is not installed: the shell scripts are not linted (CI lints them)"
fi
echo "==> the explorer's unit tests under ipywidgets 7.7 (Colab's version)"
bash scripts/test_ipywidgets7.sh
echo "==> pytest: unit tests, notebooks (nbval), browser test"
.venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-current-env \
  --nbval-cell-timeout=300 -p no:cacheprovider -q "$@"
