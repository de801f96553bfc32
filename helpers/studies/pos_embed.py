"""Notebook 02's comparison of position tables: learned vs fixed 2D sine-cosine vs none.

Each kind trains the small ViT of notebook 04 (helpers.studies.pooling.MAIN, BUDGET) with a few
seeds, then is scored on the validation images at 32x32 and at 48x48, on a canvas (objects
keep their size) and upscaled (objects grow). That takes minutes, so it runs as a command
whose record ships in `data/`:

    python -m helpers.studies.pos_embed --threads 1 --out data/pos_embed_runs.json

The record also holds one cheap run, `CHECK` (no position table, seed 0, 100 steps), that
notebook 02 retrains live (`run_check`) to show that the file matches the code: the same
accuracy to the last digit for the same torch version, thread count and kind of CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import atomic_write, claim_output, command_parser, parse_command
from ..data import ShapesDataset
from ..model import VisionTransformer, ViTConfig, adapt_to_image_size
from ..paths import data_file
from ..progress import progress_bar
from ..runtime import provenance, seed_everything
from ..train import evaluate, train
from .pooling import BUDGET, MAIN, N_TRAIN

RECORD = "pos_embed_runs.json"
KINDS = {"learned": "learn", "sine-cosine": "sincos", "none": "none"}  # name -> pos_embed
SEEDS = (0, 1, 2)
SCORES = ("32x32", "48x48 canvas", "48x48 upscaled")
CHECK = {"kind": "none", "seed": 0, "n_train": 6_400}  # 100 steps of 64: seconds, not minutes


def canvas(images: torch.Tensor, size: int = 48, seed: int = 0) -> torch.Tensor:
    """(B, 3, 32, 32) -> (B, 3, size, size): each image in the middle of a canvas of the
    dataset's dark background noise, so objects keep their size and stay on the patch grid
    when (size - 32) / 2 is a multiple of the patch size."""
    B, C, H, W = images.shape
    if (size - H) % 2 or size < H:
        raise ValueError(f"size={size} must be >= {H} and differ from it by an even number.")
    gen = torch.Generator().manual_seed(seed)
    out = torch.randint(0, 48, (B, 1, size, size), generator=gen).float().div(255)
    out = out.repeat(1, C, 1, 1)
    o = (size - H) // 2
    out[:, :, o : o + H, o : o + W] = images
    return out


def upscale(images: torch.Tensor, size: int = 48) -> torch.Tensor:
    """The same scene at size x size (bilinear): objects grow and their edges blur."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def eval_sets(val: ShapesDataset) -> dict:
    """{score name: (images, labels)} for SCORES."""
    x, y = val.batch(torch.arange(len(val)))
    return {"32x32": (x, y), "48x48 canvas": (canvas(x), y), "48x48 upscaled": (upscale(x), y)}


def run_one(kind: str, seed: int, train_set, sets: dict, device="cpu") -> dict:
    """Train one model with position table `kind` (a key of KINDS) and score it."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {tuple(KINDS)}.")
    seed_everything(seed)
    model = VisionTransformer(ViTConfig(**MAIN), pos_embed=KINDS[kind]).to(device)
    train(model, train_set, None, replace(BUDGET, seed=seed), progress=False)
    big = adapt_to_image_size(model, 48)
    row = {"name": kind, "seed": seed}
    for name, data in sets.items():
        row[name] = evaluate(model if name == "32x32" else big, data)
    return row


def check_data() -> tuple[ShapesDataset, ShapesDataset]:
    """The CHECK run's training images and the validation images."""
    return ShapesDataset("train", n=CHECK["n_train"]), ShapesDataset("val")


def run_check(data=None, device="cpu") -> float:
    """Train the cheap CHECK run and return its 32x32 validation accuracy.
    data: check_data(), made earlier (say, while little memory is in use), or None."""
    train_set, val = data if data is not None else check_data()
    return run_one(CHECK["kind"], CHECK["seed"], train_set, {"32x32": val}, device)["32x32"]


def run_study(seeds=SEEDS, progress: bool = True) -> list[dict]:
    train_set, sets = ShapesDataset("train", n=N_TRAIN), eval_sets(ShapesDataset("val"))
    runs = [(kind, seed) for kind in KINDS for seed in seeds]
    bar = progress_bar(iterable=runs, desc="runs", unit="run", disable=not progress)
    return [run_one(kind, seed, train_set, sets) for kind, seed in bar]


def load_record(path=None) -> dict:
    """The shipped record (data/pos_embed_runs.json), or the one at `path`."""
    path = Path(path) if path is not None else data_file(RECORD)
    record = json.loads(path.read_text(encoding="utf-8"))
    missing = {"command", "torch", "threads", "runs", "check"} - set(record)
    if missing:
        raise ValueError(
            f"{path} is not a record of `python -m helpers.studies.pos_embed` (it lacks "
            f"{', '.join(sorted(missing))}): rebuild it with that command."
        )
    return record


def format_scores(rows: list[dict]) -> str:
    """A text table: per kind, the mean and min-max over seeds of every score, in %."""
    head = f"{'position table':<14} {'seeds':>5}" + "".join(f"{s:>24}" for s in SCORES)
    lines = [head, "-" * len(head)]
    for kind in dict.fromkeys(r["name"] for r in rows):
        group = [r for r in rows if r["name"] == kind]
        cells = ""
        for s in SCORES:
            v = [100 * r[s] for r in group]
            cells += f"{sum(v) / len(v):>10.1f} ({min(v):.1f}–{max(v):.1f})".rjust(24)
        lines.append(f"{kind:<14} {len(group):>5}{cells}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = command_parser(
        "helpers.studies.pos_embed",
        "Train notebook 02's position-table variants with several seeds.",
        "the JSON record to write",
        f"data/{RECORD}",
    )
    p.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds per variant")
    a, out = parse_command(p, argv, ".json")
    if a.seeds < 1:
        p.error(f"--seeds must be >= 1, got {a.seeds}.")
    with claim_output(out, p):  # held from here: a second run to the same --out is refused
        rows = run_study(tuple(range(a.seeds)))
        record = {
            **provenance("helpers.studies.pos_embed", argv),
            "model": MAIN,
            "budget": asdict(BUDGET),
            "n_train": N_TRAIN,
            "eval": "accuracy on the 2 000 validation images: 32x32, and 48x48 canvas / upscaled",
            "runs": rows,
            "check": {**CHECK, "32x32": run_check()},
        }
        atomic_write(out, (json.dumps(record, indent=1) + "\n").encode())
    print(f"{len(rows)} runs -> {out}")
    return record


if __name__ == "__main__":
    main()
