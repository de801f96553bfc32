"""The studies: the experiments beyond the base ViT, each with the command that makes its
files in `data/` (`python -m helpers.studies.NAME --help`). A notebook loads the shipped
result and reruns one cheap configuration live.

- `runner`: one model per (config, seed), the summaries and tables every study prints.
- `pos_embed` (notebook 02): learned vs sine-cosine vs no position table, other image sizes.
- `pooling` (04): CLS vs average vs attention pooling over seeds, and why attention pooling lags.
- `distill` (06): DeiT's distilled ViT, the CNN teacher, hard distillation, register models.
- `tokens` (06): token norms and probes, the test-time register, classifying every patch.
- `dino` (07): DINO-lite, self-distillation with no labels.
- `clip` (07): CLIP-lite, captions, a text encoder on the ViT's own blocks, InfoNCE.
- `practices` (08): the usual tips for the CLS token, each over several seeds.

They build on the ViT and its tools one level up; nothing there imports them.
"""
