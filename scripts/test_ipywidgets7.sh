#!/usr/bin/env bash
# The explorer must also work with ipywidgets 7.7 (what Colab ships): run its unit tests in
# a second environment, .venv-ipywidgets7, that differs from .venv only in ipywidgets.
set -euo pipefail
cd "$(dirname "$0")/.."
V=.venv-ipywidgets7
if [ ! -x "$V/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$V"
fi
PIP=("$V/bin/python" -m pip install --quiet --disable-pip-version-check)
# The same torch build as .venv (TORCH_SPEC, TORCH_INDEX: see scripts/install_torch.sh).
bash scripts/install_torch.sh "$V/bin/python"
"${PIP[@]}" -e ".[test]" "ipywidgets==7.7.*"
"$V/bin/python" -c "import ipywidgets; print('ipywidgets', ipywidgets.__version__)"
# timm attention does not depend on ipywidgets; it is tested in the main environment
"$V/bin/python" -m pytest tests/test_explorer.py -k "not timm" -q -p no:cacheprovider
