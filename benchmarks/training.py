"""Benchmark: where a training step's time goes, its throughput beside timm's VisionTransformer
at the same configuration and batch, its share of the machine's matmul peak, and the shipped
recipe's time to 97% test accuracy.

    python benchmarks/training.py [--threads N] [--rounds 5] [--steps 20] [--no-recipe]

1. Profile: the operators that take a training step's time (torch.profiler, self CPU time).
2. Throughput, interleaved: the same training step (AdamW, cross-entropy, the same batches)
   for our model, timm's VisionTransformer built from the same config, and variants of ours
   that change one thing each (the candidates for a faster step), alternating in rounds
   so that a change of load on the machine hits every variant alike.
3. FLOPs per image (torch.utils.flop_counter, forward + backward) and the float32 matmul peak
   measured at the GEMM shapes of the model: achieved FLOP/s as a share of that peak.
4. The shipped recipe (`python -m helpers.train` defaults, the same seed): test accuracy every
   50 steps, evaluation time not counted; time to 97% and the final accuracy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from helpers.data import ShapesDataset
from helpers.model import Attention, VisionTransformer, ViTConfig, count_parameters
from helpers.paths import data_file
from helpers.runtime import seed_everything
from helpers.timm_adapter import import_timm_vit, timm_kwargs
from helpers.train import TrainConfig, evaluate, train

TARGET = 0.97


def table(rows, head=("measure", "value")) -> str:
    """Rows of equal length as an aligned text table."""
    rows = [tuple(str(c) for c in r) for r in rows]
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: " | ".join(c.ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(head), "-+-".join("-" * x for x in w), *map(line, rows)])


def explicit_attention(self, x, attn_mask=None, return_attention=False):
    """Attention.forward with the softmax written out (matmul, softmax, matmul) instead of
    the fused scaled_dot_product_attention kernel: one of the variants measured below."""
    y, att = Attention.forward(self, x, attn_mask, return_attention=True)
    return (y, att) if return_attention else y


def make_step(model, batches, fused: bool = False):
    """One training step of the shipped recipe on `model` (AdamW, cross-entropy), cycling
    through `batches`; returns step() -> None."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=fused)
    it = {"i": 0}

    def step():
        x, y = batches[it["i"] % len(batches)]
        it["i"] += 1
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def variants(cfg: ViTConfig) -> dict:
    """name -> (model, fused AdamW?): ours, timm's, and ours with one change each."""
    seed_everything(0)
    ours = VisionTransformer(cfg)
    out = {"ours (shipped step)": (ours, False)}
    timm_cls = import_timm_vit()
    if timm_cls is not None:
        seed_everything(0)
        out["timm VisionTransformer"] = (timm_cls(**timm_kwargs(cfg)), False)
    seed_everything(0)
    out["ours + fused AdamW"] = (VisionTransformer(cfg), True)
    seed_everything(0)
    explicit = VisionTransformer(cfg)
    for block in explicit.blocks:
        block.attn.forward = explicit_attention.__get__(block.attn)
    out["ours, attention written out"] = (explicit, False)
    return out


def throughput(cfg, batches, rounds: int, steps: int) -> dict:
    """Images/s of each variant: `rounds` rounds of `steps` steps each, interleaved."""
    runs = {
        name: make_step(m.train(), batches, fused) for name, (m, fused) in variants(cfg).items()
    }
    for step in runs.values():  # warm-up
        for _ in range(3):
            step()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, step in runs.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append(time.perf_counter() - t)
    B = batches[0][0].shape[0]
    return {name: B * steps / statistics.median(t) for name, t in times.items()}


def flops_per_image(model, x, y) -> float:
    """FLOPs of one forward + backward pass, per image (torch.utils.flop_counter)."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def matmul_peak(cfg: ViTConfig, batch: int, repeats: int = 20) -> tuple[float, str]:
    """The best float32 GFLOP/s of torch.mm over the GEMM shapes of a training step
    (forward, and the two products of each backward), and the shape that reached it."""
    M, D = batch * (cfg.num_patches + cfg.num_prefix_tokens), cfg.embed_dim
    H = int(cfg.embed_dim * cfg.mlp_ratio)
    shapes = set()
    for k, n in ((D, 3 * D), (D, D), (D, H), (H, D)):  # qkv, proj, fc1, fc2
        shapes |= {(M, k, n), (M, n, k), (n, M, k)}  # forward, input grad, weight grad
    best, where = 0.0, ""
    for m, k, n in sorted(shapes):
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        gflops = 2 * m * k * n * repeats / (time.perf_counter() - t) / 1e9
        if gflops > best:
            best, where = gflops, f"({m} x {k}) @ ({k} x {n})"
    return best, where


def profile_table(model, batches, steps: int = 10, top: int = 8) -> str:
    """The operators with the most self CPU time over `steps` training steps."""
    step = make_step(model.train(), batches)
    for _ in range(3):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [
        (
            e.key[:60],
            f"{100 * e.self_cpu_time_total / total:.1f}%",
            f"{e.self_cpu_time_total / 1e3 / steps:.1f}",
            f"{e.count // steps}",
        )
        for e in events[:top]
    ]
    return table(rows, ("operator", "share of step", "ms per step", "calls per step"))


def recipe_rows(cfg: TrainConfig) -> list:
    """Train the shipped recipe; its throughput, time to 97% and final accuracy."""
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    train_ds, test_ds = ShapesDataset("train"), ShapesDataset("test")
    data_seconds = time.perf_counter() - t0
    model = VisionTransformer(ViTConfig())
    hist = train(model, train_ds, test_ds, cfg, progress=False, eval_every=50)
    compute = hist.val_seconds[-1]
    images = len(hist.step_loss) * cfg.batch_size
    hit = next((i for i, a in enumerate(hist.val_acc) if a >= TARGET), None)
    shipped = json.loads(data_file("vit_shapes.json").read_text())["test_accuracy"]
    final = evaluate(model, test_ds)
    return [
        ("dataset generation (20k train + 2k test)", f"{data_seconds:.1f} s"),
        ("training throughput, helpers.train.train()", f"{images / compute:,.0f} images/s"),
        (
            f"time to {TARGET:.0%} test accuracy",
            f"{hist.val_seconds[hit]:.0f} s (step {hist.val_step[hit]} of {len(hist.step_loss)},"
            f" {hist.val_acc[hit]:.2%})"
            if hit is not None
            else "not reached",
        ),
        (f"full recipe ({cfg.epochs} epochs)", f"{compute:.0f} s, test accuracy {final:.2%}"),
        (
            "shipped checkpoint",
            f"test accuracy {shipped:.2%} (rebuilt - shipped: {100 * (final - shipped):+.2f} points)",
        ),
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    ap.add_argument("--no-recipe", action="store_true", help="skip the full recipe (minutes)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, tcfg = ViTConfig(), TrainConfig()
    data = ShapesDataset("val")
    batches = [data.batch(torch.arange(i, i + tcfg.batch_size)) for i in range(0, 1280, 128)]
    seed_everything(0)
    model = VisionTransformer(cfg)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads; torch "
        f"{torch.__version__}; model: embed_dim {cfg.embed_dim}, depth {cfg.depth}, "
        f"{count_parameters(model):,} parameters; batch {tcfg.batch_size}\n"
    )
    print("Where a training step's time goes (torch.profiler, 10 steps):")
    print(profile_table(model, batches) + "\n")

    speed = throughput(cfg, batches, args.rounds, args.steps)
    flops = flops_per_image(VisionTransformer(cfg), *batches[0])
    peak, shape = matmul_peak(cfg, tcfg.batch_size)
    ref = speed.get("timm VisionTransformer")
    rows = [
        (
            name,
            f"{ips:,.0f}",
            f"{ips / ref:.2f}x" if ref else "(timm not installed)",
            f"{100 * ips * flops / 1e9 / peak:.0f}%",
        )
        for name, ips in speed.items()
    ]
    print(
        f"Training step, interleaved ({args.rounds} rounds x {args.steps} steps, median); "
        f"{flops / 1e6:.0f} MFLOP per image (forward + backward); float32 matmul peak at the "
        f"model's shapes {peak:.0f} GFLOP/s, at {shape}:"
    )
    print(table(rows, ("variant", "images/s", "vs timm", "share of matmul peak")) + "\n")
    if not args.no_recipe:
        print("The shipped recipe (python -m helpers.train):")
        print(table(recipe_rows(tcfg)))


if __name__ == "__main__":
    main()
