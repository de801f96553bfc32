"""The experiment runner: train one model per (config, seed) on the same budget, then
summarize and print the runs as a table (notebooks 04 and 08)."""

from __future__ import annotations

from dataclasses import replace

import torch

from .model import VisionTransformer, ViTConfig, count_parameters
from .progress import progress_bar
from .runtime import seed_everything
from .train import TrainConfig, evaluate, train


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
) -> list[dict]:
    """Train one model per (config, seed) on the same budget and evaluate it on `eval_data`.

    configs: {name: ViTConfig overrides on top of `base`}. The seed sets both the model's
    initialization and the training order (TrainConfig.seed). Returns one row per run:
    {"name", "seed", "accuracy", "seconds" (training only), "parameters"}.
    done: rows of runs already made the same way (e.g. a model trained earlier in a notebook);
    they are kept in their place and not trained again.
    """
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
        model = VisionTransformer(base, **configs[name]).to(device)
        hist = train(model, train_data, None, replace(cfg, seed=seed), progress=False)
        rows.append(
            {
                "name": name,
                "seed": seed,
                "accuracy": evaluate(model, eval_data),
                "seconds": hist.seconds[-1],
                "parameters": count_parameters(model),
            }
        )
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


def format_table(summary) -> str:
    """An aligned text table of `summarize_runs` output (accuracy in %, time in s); the first
    column is as wide as the longest config name."""
    summary = list(summary)
    w = max([len("config")] + [len(s["name"]) for s in summary])
    head = f"{'config':<{w}} {'runs':>4} {'accuracy % (mean ± std)':>24} {'min–max %':>12} "
    head += f"{'train s':>12} {'params':>8}"
    lines = [head, "-" * len(head)]
    for s in summary:
        acc = f"{100 * s['accuracy']:.1f} ± {100 * s['accuracy_std']:.1f}"
        rng = f"{100 * s['accuracy_min']:.1f}–{100 * s['accuracy_max']:.1f}"
        sec = f"{s['seconds']:.1f} ± {s['seconds_std']:.1f}"
        lines.append(
            f"{s['name']:<{w}} {s['runs']:>4} {acc:>24} {rng:>12} {sec:>12} {s['parameters']:>8,}"
        )
    return "\n".join(lines)
