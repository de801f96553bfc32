#!/usr/bin/env bash
# Install PyTorch into the environment of the given Python, unless it already has torch:
#
#     bash scripts/install_torch.sh .venv/bin/python
#
# Shared by scripts/setup.sh and scripts/test_ipywidgets7.sh, so both venvs get the same build.
#   TORCH_SPEC   what to install (default torch==2.13.0)
#   TORCH_INDEX  the index to take it from; set but empty: pip's default index (PyPI).
# With TORCH_INDEX unset, on Linux without an NVIDIA GPU, torch comes from PyTorch's CPU index
# (a wheel of about 190 MB instead of about 2.7 GB of torch + CUDA packages from PyPI); when
# that index cannot be reached within a few seconds, from the default index instead.
set -euo pipefail
PY=$1
SPEC=${TORCH_SPEC:-torch==2.13.0}
CPU_INDEX=https://download.pytorch.org/whl/cpu
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

if "$PY" -c "import torch" 2>/dev/null; then
  exit 0
fi

INDEX=""
WHAT="==> installing $SPEC"
if [ -n "${TORCH_INDEX+set}" ]; then
  INDEX=$TORCH_INDEX
elif [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
  && [ ! -e /proc/driver/nvidia ]; then
  # One try, 5 s at most (10 s with the name lookup): no retries, no long pip time-outs.
  if timeout 10 "$PY" - "$CPU_INDEX/torch/" 2>/dev/null <<'PYTHON'
import sys
import urllib.request

urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=5)
PYTHON
  then
    INDEX=$CPU_INDEX
  else
    WHAT="==> $CPU_INDEX cannot be reached: installing $SPEC from the default index instead"
  fi
fi

if [ -n "$INDEX" ]; then
  echo "$WHAT from $INDEX"
  "${PIP[@]}" "$SPEC" --index-url "$INDEX"
else
  echo "$WHAT"
  "${PIP[@]}" "$SPEC"
fi
