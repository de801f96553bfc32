.PHONY: lab setup test benchmark checkpoint

lab: setup  ## set up (first time) and open the series in JupyterLab
	.venv/bin/jupyter lab notebooks/00_overview.ipynb

setup:
	bash scripts/setup.sh

test:  ## install what the tests need, then lint + unit tests + notebooks + browser test
	bash scripts/setup.sh --dev
	bash scripts/test.sh

benchmark:
	.venv/bin/python benchmarks/run.py

checkpoint:  ## rebuild the shipped checkpoint (about 3 minutes on 2 CPU cores)
	.venv/bin/python -m helpers.train --out data/vit_shapes.pt
