#!/usr/bin/env bash
# Set up the series in ./.venv: PyTorch, then `pip install -e ".[lab]"` (pyproject.toml holds
# the one list of dependencies). `--dev` installs ".[dev]" instead (the tests, ruff,
# Playwright, the site's builder), timm, MathJax and reveal.js for the site and the slides (npm,
# into .vendor/) and Debian's chromium (browser test) and shellcheck (lint of the scripts).
# `--site` installs only what `make site` and `make slides` need: ".[lab,site]" and the JS.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=0
SITE=0
[ "${1:-}" = "--dev" ] && DEV=1 && SITE=1
[ "${1:-}" = "--site" ] && SITE=1
# npm packages that the site and the lecture decks ship (scripts/build_site.py, build_slides.py)
JS_PACKAGES=(mathjax@3.2.2 reveal.js@5.2.1)

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# PyTorch first, so that nothing later pulls a multi-GB CUDA build (TORCH_SPEC, TORCH_INDEX:
# see scripts/install_torch.sh).
bash scripts/install_torch.sh .venv/bin/python

echo "==> installing the Python packages"
if [ "$DEV" = 1 ]; then
  "${PIP[@]}" -e ".[dev]"
  # --no-deps: timm's torchvision dependency pins one exact torch build.
  "${PIP[@]}" --no-deps "timm==1.0.31"
elif [ "$SITE" = 1 ]; then
  "${PIP[@]}" -e ".[lab,site]"
else
  "${PIP[@]}" -e ".[lab]"
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ "$DEV" = 1 ]; then
  set --  # the Debian packages still missing
  [ -x /usr/bin/chromium ] || set -- "$@" chromium
  command -v shellcheck >/dev/null || set -- "$@" shellcheck
  if [ "$#" -gt 0 ] && ! command -v apt-get >/dev/null; then
    echo "==> no apt-get here to install $*: the browser test needs /usr/bin/chromium and is" \
      "skipped outside CI; the shell scripts are linted only where shellcheck is installed"
  elif [ "$#" -gt 0 ]; then
    echo "==> installing Debian's $* (browser test, lint of the shell scripts)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
fi
# MathJax and reveal.js for the site and the decks: vendored from npm, so that no page loads
# them from a CDN.
if [ "$SITE" = 1 ] && { [ ! -f .vendor/node_modules/mathjax/es5/tex-svg-full.js ] ||
  [ ! -f .vendor/node_modules/reveal.js/dist/reveal.js ]; }; then
  if command -v npm >/dev/null; then
    echo "==> installing ${JS_PACKAGES[*]} for the site and the slides (npm, into .vendor/)"
    npm install --no-audit --no-fund --silent --prefix .vendor "${JS_PACKAGES[@]}"
  elif [ "$DEV" = 1 ]; then
    echo "==> npm is not installed: the site, the slides and their tests need MathJax and" \
      "reveal.js from npm; install Node.js, then run this again"
  else
    echo "npm is not installed: make site and make slides need it (install Node.js)" >&2
    exit 1
  fi
fi
echo "==> ready: .venv/bin/python $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
