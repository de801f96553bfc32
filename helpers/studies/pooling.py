"""Notebook 04's pooling comparison: CLS vs average (GAP) vs attention pooling (MAP), many seeds.

Training every variant with several seeds takes minutes, longer than a notebook may run, so
it runs as a command and its results ship in `data/`:

    python -m helpers.studies.pooling --out data/pooling_runs.json

The record holds the command, the torch version, the thread count, the machine, the budget
and one row per run. Notebook 04 loads it (`load_record`), shows it, and retrains one run
(CLS, seed 0) live to show that the file matches the code. Training is bit-identical only
for the same torch version, thread count *and* kind of CPU; elsewhere a rerun lands near,
not on, the recorded number.

Two parts:
- "pooling": the five variants of `POOLS`, each with `SEEDS`, on the notebook's `BUDGET`;
- "map_lag": why does MAP lag? GAP and MAP (both without a CLS token) with a lower learning
  rate and with twice the steps, so that "needs another learning rate" and "needs more
  steps" can be told apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from ..checkpoint import atomic_write, claim_output, command_parser, parse_command
from ..data import ShapesDataset
from ..model import ViTConfig
from ..paths import data_file
from ..runtime import provenance
from ..train import TrainConfig
from .runner import compare_configs, summarize_runs

RECORD = "pooling_runs.json"
MAIN = dict(embed_dim=32, depth=2, num_heads=2)  # smaller than the shipped (64, 4, 4)
BUDGET = TrainConfig(epochs=1, batch_size=64, lr=3e-3, warmup_steps=50)  # 250 steps
N_TRAIN = 16_000  # images of the training split used (one pass = 250 steps of 64)
SEEDS = (0, 1, 2, 3, 4)
POOLS = {
    "CLS": dict(global_pool="token"),
    "GAP (+ unused CLS)": dict(global_pool="avg"),
    "MAP (+ unused CLS)": dict(global_pool="map"),
    "GAP, no CLS": dict(global_pool="avg", class_token=False),
    "MAP, no CLS": dict(global_pool="map", class_token=False),
}
# Why MAP lags: the same two read-outs without a CLS token, under two other budgets.
LAG_POOLS = ("GAP, no CLS", "MAP, no CLS")
LAG_BUDGETS = {
    "lr 3e-3, 250 steps": BUDGET,
    "lr 1e-3, 250 steps": replace(BUDGET, lr=1e-3),
    "lr 3e-3, 500 steps": replace(BUDGET, epochs=2),
}
LAG_SEEDS = (0, 1, 2)


def datasets() -> tuple[ShapesDataset, ShapesDataset]:
    """The training images (the first N_TRAIN of the train split) and the validation split."""
    return ShapesDataset("train", n=N_TRAIN), ShapesDataset("val")


def run_study(seeds=SEEDS, lag_seeds=LAG_SEEDS, progress: bool = True) -> dict:
    """Train every run of both parts on the CPU; returns {"pooling": rows, "map_lag": rows}.

    Rows are those of helpers.studies.runner.compare_configs; "map_lag" rows also carry
    "budget" (a key of LAG_BUDGETS). Runs of "map_lag" that "pooling" already made (the
    notebook's budget) are reused, not retrained."""
    train_set, val = datasets()
    base = ViTConfig(**MAIN)
    pooling = compare_configs(
        POOLS, train_set, val, BUDGET, seeds=seeds, base=base, progress=progress
    )
    lag = []
    for budget, cfg in LAG_BUDGETS.items():
        done = pooling if cfg == BUDGET else []
        configs = {name: POOLS[name] for name in LAG_POOLS}
        rows = compare_configs(
            configs, train_set, val, cfg, seeds=lag_seeds, base=base, progress=progress, done=done
        )
        lag += [dict(r, budget=budget) for r in rows]
    return {"pooling": pooling, "map_lag": lag}


def lag_summary(rows: list[dict]) -> list[dict]:
    """summarize_runs over the "map_lag" rows, one line per (budget, variant)."""
    named = [dict(r, name=f"{r['name']} · {r['budget']}") for r in rows]
    return summarize_runs(named)


def load_record(path=None) -> dict:
    """The shipped record (data/pooling_runs.json), or the one at `path`."""
    path = Path(path) if path is not None else data_file(RECORD)
    record = json.loads(path.read_text(encoding="utf-8"))
    missing = {"command", "torch", "threads", "pooling", "map_lag"} - set(record)
    if missing:
        raise ValueError(
            f"{path} is not a record of `python -m helpers.studies.pooling` (it lacks "
            f"{', '.join(sorted(missing))}): rebuild it with that command."
        )
    return record


def find_run(record: dict, name: str, seed: int) -> dict:
    """The recorded "pooling" run of variant `name` with `seed`."""
    for row in record["pooling"]:
        if row["name"] == name and row["seed"] == seed:
            return row
    raise KeyError(f"the record has no run {name!r} with seed {seed}: rebuild it.")


def main(argv=None) -> dict:
    p = command_parser(
        "helpers.studies.pooling",
        "Train notebook 04's pooling variants with several seeds; write a JSON record.",
        "the JSON record to write",
        f"data/{RECORD}",
    )
    p.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds per pooling variant")
    p.add_argument("--lag-seeds", type=int, default=len(LAG_SEEDS), help="seeds per MAP-lag run")
    a, out = parse_command(p, argv, ".json")
    for name in ("seeds", "lag_seeds"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}.")
    with claim_output(out, p):  # held from here: a second run to the same --out is refused
        runs = run_study(tuple(range(a.seeds)), tuple(range(a.lag_seeds)))
        record = {
            **provenance("helpers.studies.pooling", argv),
            "model": MAIN,
            "budget": asdict(BUDGET),
            "n_train": N_TRAIN,
            "eval": "accuracy on the 2 000 validation images",
            "lag_budgets": {k: asdict(v) for k, v in LAG_BUDGETS.items()},
            **runs,
        }
        atomic_write(out, (json.dumps(record, indent=1) + "\n").encode())
    n = len(runs["pooling"]) + len(runs["map_lag"])
    print(f"{n} runs -> {out}")
    return record


if __name__ == "__main__":
    main()
