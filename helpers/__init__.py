"""Reusable code for the "Inside the CLS token" notebooks, laid out by job.

The ViT and its tools, at this level, in the order data flows through them:
- `data` (shapes in clutter, generated from a seed) -> `model` (the ViT in one file) ->
  `train` (the loop, evaluation, the checkpoint command) -> `checkpoint` (safe files with
  their config) -> `attention` and `probes` (maps, rollout, layer-by-layer read-outs) ->
  `plots` (figures, one colormap for attention).
- `runtime` (seed, threads, device, provenance) with `paths` (where the shipped files are)
  and `progress` (one progress bar); `images` (uploaded pictures as model inputs);
  `timm_adapter` (all the series knows about timm); `claims` (the claims index).

Built on top of those, one package per job:
- `explorer/`: the attention explorer, live widget and kernel-free page.
- `exercises/`: `core` and one module of checked exercises per notebook.
- `studies/`: the experiments that make `data/`, each a `python -m helpers.studies.NAME`
  command, and their runner.

Imports run one way, down this list; nothing here imports a notebook, and nothing at this
level imports the packages below it (tests/test_layout.py walks the graph).
"""
