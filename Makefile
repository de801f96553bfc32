.PHONY: lab setup test benchmark checkpoint data site slides

lab: setup  ## set up (first time) and open the series in JupyterLab
	bash scripts/lab.sh

setup:
	bash scripts/setup.sh

test:  ## install what the tests need, then lint + unit tests + notebooks + browser test
	bash scripts/setup.sh --dev
	bash scripts/test.sh

site:  ## build the static site from the committed notebooks into build/site/ (no execution)
	bash scripts/setup.sh --site
	.venv/bin/python scripts/build_site.py

slides:  ## build one reveal.js lecture deck per notebook into build/slides/ (no execution)
	bash scripts/setup.sh --site
	.venv/bin/python scripts/build_slides.py

benchmark:  ## print the speed and memory tables of the README (about 50 minutes on 2 cores)
	.venv/bin/python benchmarks/training.py
	.venv/bin/python benchmarks/recipes.py --jobs 2
	.venv/bin/python benchmarks/notebooks.py
	.venv/bin/python benchmarks/widget_latency.py

checkpoint:  ## rebuild the shipped checkpoint (about 3 minutes on 2 CPU cores)
	.venv/bin/python -m helpers.train --out data/vit_shapes.pt

PY := .venv/bin/python
R := data/rebuilt
data:  ## rebuild every shipped file of data/ into data/rebuilt/ (about two and a half hours on 2 CPU cores)
	mkdir -p $(R)
	$(PY) -m helpers.train --out $(R)/vit_shapes.pt --force
	$(PY) -m helpers.train --depth 8 --out $(R)/vit_shapes_depth8.pt --threads 1 --force
	$(PY) -m helpers.train --snapshots 40,120,400 --out $(R)/vit_shapes_snapshots.pt --threads 1 --force
	$(PY) -m helpers.studies.pos_embed --threads 1 --out $(R)/pos_embed_runs.json --force
	$(PY) -m helpers.studies.pooling --threads 1 --out $(R)/pooling_runs.json --force
	$(PY) -m helpers.studies.distill teacher --out $(R)/cnn_teacher.pt --epochs 8 --threads 1 --force
	$(PY) -m helpers.studies.distill student --teacher data/cnn_teacher.pt --out $(R)/deit_student.pt --epochs 4 --threads 1 --force
	for r in 0 1 4; do $(PY) -m helpers.studies.distill vit --reg-tokens $$r --out $(R)/vit_reg$$r.pt --epochs 4 --threads 1 --force; done
	$(PY) -m helpers.studies.distill curve --teacher data/cnn_teacher.pt --out $(R)/distill_curve.json --threads 1 --force
	$(PY) -m helpers.studies.tokens --out $(R)/patch_vs_cls.json --threads 1 --force
	$(PY) -m helpers.studies.clip --out $(R)/clip_lite.pt --threads 1 --force
	$(PY) -m helpers.studies.dino --out $(R)/dino_vit.pt --threads 1 --force
	$(PY) -m helpers.studies.dino --ablations --out $(R)/dino_ablations.json --threads 1 --force
	$(PY) -m helpers.studies.dino --ablations --only recipe --seeds 1,2 --with-init --out $(R)/dino_seeds.json --threads 1 --force
	$(PY) -m helpers.studies.practices --threads 1 --out $(R)/practices_runs.json --force
