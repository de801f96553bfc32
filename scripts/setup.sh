#!/usr/bin/env bash
# Set up the series in ./.venv. `--dev` adds what the tests need (ruff, Playwright, timm and
# Debian's Chromium for the browser test). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# PyTorch first, so that nothing later pulls a multi-GB CUDA build. Default: 2.13.0, whose
# CPU build lies on disk on this project's machines. Elsewhere set TORCH_SPEC (and, for the
# small CPU build on Linux, TORCH_INDEX=https://download.pytorch.org/whl/cpu).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "==> installing ${TORCH_SPEC:-torch==2.13.0}"
  "${PIP[@]}" "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
fi

echo "==> installing the Python packages"
if [ "$DEV" = 1 ]; then
  "${PIP[@]}" -r requirements-dev.txt
  "${PIP[@]}" --no-deps "timm==1.0.31"
else
  "${PIP[@]}" -r requirements.txt
fi
"${PIP[@]}" --no-deps -e .

if [ "$DEV" = 1 ] && [ ! -x /usr/bin/chromium ] && ! command -v apt-get >/dev/null; then
  echo "==> no apt-get here: the browser test needs /usr/bin/chromium and will be skipped"
elif [ "$DEV" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Debian's chromium for the browser test"
  SUDO=""
  [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "==> ready: .venv/bin/python $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
