"""The experiment runner: train one model per (config, seed) on the same budget, then
summarize and print the runs as a table (notebooks 04 and 08)."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..model import VisionTransformer, ViTConfig, count_parameters
from ..progress import progress_bar
from ..runtime import seed_everything
from ..stats import fixed
from ..train import TrainConfig, evaluate, train


def compare_configs(
    configs: dict,
    train_data,
    eval_data,
    cfg: TrainConfig | None = None,
    seeds=(0, 1, 2),
    base: ViTConfig | None = None,
    progress: bool = False,
    device: torch.device | str = "cpu",
    done: list[dict] = (),
    make_model=None,
    score=None,
    measure=None,
    train_kwargs: dict | None = None,
) -> list[dict]:
    """Train one model per (config, seed) on the same budget and evaluate it on `eval_data`.

    configs: {name: ViTConfig overrides on top of `base`}. The seed sets both the model's
    initialization and the training order (TrainConfig.seed). Returns one row per run:
    {"name", "seed", "accuracy", "seconds" (training only), "parameters"}.
    done: rows of runs already made the same way (e.g. a model trained earlier in a notebook);
    they are kept in their place and not trained again.

    Hooks for other tasks than classification from scratch (all optional):
    - make_model(overrides, base) -> model: builds the model (after seeding), e.g. from a
      checkpoint; default VisionTransformer(base, **overrides).
    - score(model, eval_data) -> {metric: value}: replaces {"accuracy": evaluate(...)}.
    - measure(model, hist, start) -> dict: more fields for the row (a learning curve, how far
      a parameter moved); `start` holds a copy of every parameter before training.
    - train_kwargs: more arguments for helpers.train.train (val_data, eval_every, loss_fn,
      lr_scale).
    """
    for hook, fn in (("make_model", make_model), ("score", score), ("measure", measure)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{hook} must be a function, got {type(fn).__name__}.")
    kwargs = dict(train_kwargs or {})
    val_data = kwargs.pop("val_data", None)
    cfg = cfg or TrainConfig()
    known = {(r["name"], r["seed"]): r for r in done}
    rows = []
    runs = [(name, seed) for name in configs for seed in seeds]
    bar = progress_bar(iterable=runs, desc="runs", unit="run", disable=not progress)
    for name, seed in bar:
        if (name, seed) in known:
            rows.append(dict(known[(name, seed)]))
            continue
        seed_everything(seed)
        if make_model is None:
            model = VisionTransformer(base, **configs[name]).to(device)
        else:
            model = make_model(configs[name], base).to(device)
        start = {k: v.detach().clone() for k, v in model.named_parameters()} if measure else None
        parameters = count_parameters(model)
        hist = train(model, train_data, val_data, replace(cfg, seed=seed), progress=False, **kwargs)
        scores = (
            {"accuracy": evaluate(model, eval_data)} if score is None else score(model, eval_data)
        )
        row = {"name": name, "seed": seed, **scores}
        row.update(seconds=hist.seconds[-1], parameters=parameters)
        if measure is not None:
            row.update(measure(model, hist, start))
        rows.append(row)
    return rows


def summarize_runs(rows: list[dict], keys=("accuracy", "seconds")) -> list[dict]:
    """Group rows by "name" (in order of first appearance): mean, std (n-1), min, max per key,
    the number of runs, and the parameter count (the same for every seed of a config)."""
    out = []
    for name in dict.fromkeys(r["name"] for r in rows):
        group = [r for r in rows if r["name"] == name]
        s = {"name": name, "runs": len(group), "parameters": group[0]["parameters"]}
        for key in keys:
            v = torch.tensor([float(r[key]) for r in group], dtype=torch.float64)
            s[key] = v.mean().item()
            s[f"{key}_std"] = v.std().item() if len(v) > 1 else 0.0
            s[f"{key}_min"], s[f"{key}_max"] = v.min().item(), v.max().item()
        out.append(s)
    return out


def format_table(
    summary,
    metric: str = "accuracy",
    label: str | None = None,
    percent: bool = True,
    digits: int = 1,
    time: bool = True,
) -> str:
    """An aligned text table of `summarize_runs` output (by default accuracy in %, time in s);
    the first column is as wide as the longest config name.

    metric: the summarized key to show (e.g. "r2"), under `label` (default: the key), in %
    when `percent`, with `digits` decimals; time=False leaves out the training time."""
    summary = list(summary)
    if summary and metric not in summary[0]:
        raise KeyError(f"the summary has no {metric!r}: summarize_runs(rows, keys=({metric!r},)).")
    label = label or metric
    unit, k = (" %", 100) if percent else ("", 1)
    w = max([len("config")] + [len(s["name"]) for s in summary])
    col = f"{label}{unit} (mean ± std)"
    wc = max(24, len(col))
    head = f"{'config':<{w}} {'runs':>4} {col:>{wc}} {'min–max' + unit:>12} "
    head += f"{'train s':>12} {'params':>8}" if time else f"{'params':>8}"
    lines = [head, "-" * len(head)]
    for s in summary:
        acc = f"{fixed(k * s[metric], digits)} ± {fixed(k * s[metric + '_std'], digits)}"
        rng = f"{fixed(k * s[metric + '_min'], digits)}–{fixed(k * s[metric + '_max'], digits)}"
        line = f"{s['name']:<{w}} {s['runs']:>4} {acc:>{wc}} {rng:>12} "
        if time:
            line += f"{s['seconds']:.1f} ± {s['seconds_std']:.1f}".rjust(12) + " "
        lines.append(line + f"{s['parameters']:>8,}")
    return "\n".join(lines)
