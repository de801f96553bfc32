.PHONY: lab setup test benchmark checkpoint

lab: setup  ## set up (first time) and open the series in JupyterLab
	bash scripts/lab.sh

setup:
	bash scripts/setup.sh

test:  ## install what the tests need, then lint + unit tests + notebooks + browser test
	bash scripts/setup.sh --dev
	bash scripts/test.sh

benchmark:  ## print the speed and memory tables of the README
	.venv/bin/python benchmarks/training.py
	.venv/bin/python benchmarks/notebooks.py
	.venv/bin/python benchmarks/widget_latency.py

checkpoint:  ## rebuild the shipped checkpoint (about 3 minutes on 2 CPU cores)
	.venv/bin/python -m helpers.train --out data/vit_shapes.pt
