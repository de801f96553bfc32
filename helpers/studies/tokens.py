"""Reading every token, not just CLS: hidden states and their norms (registers, Darcet et
al., ICLR 2024), a test-time register (Jiang et al., NeurIPS 2025), linear probes, and
direct patch classification (a shared head on every patch token), with the command that
compares patch classification with CLS pooling over seeds (notebook 06):

    python -m helpers.studies.tokens --out data/patch_vs_cls.json

Every function takes the series' VisionTransformer or a subclass (helpers.studies.distill's
DistilledViT included): it reads `model.embed`, `model.blocks` and `model.norm`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import torch
import torch.nn as nn

from ..checkpoint import atomic_write, claim_output, command_parser, parse_command
from ..data import ShapesDataset
from ..model import VisionTransformer, ViTConfig, as_images, count_parameters
from ..probes import block_states
from ..progress import progress_bar
from ..runtime import model_device, provenance, seed_everything
from ..train import TrainConfig, evaluate, train
from .runner import format_table, summarize_runs


def num_prefix(model) -> int:
    """Tokens before the patches: CLS, registers (and DIST in a distilled ViT)."""
    return int(getattr(type(model), "num_prefix_tokens", model.cfg.num_prefix_tokens))


@torch.no_grad()
def hidden_states(model, images, batch_size: int = 500) -> torch.Tensor:
    """Every token at every depth, (L + 2, B, T, D), on the CPU: helpers.probes.block_states
    (the blocks' input, then the output of each block), and last the final tokens after
    `model.norm` (what the heads read)."""
    states = block_states(model, images, batch_size)  # (L + 1, B, T, D)
    device = model_device(model)
    final = torch.cat([model.norm(s.to(device)).cpu() for s in states[-1].split(batch_size)])
    return torch.cat([states, final[None]])  # (L + 2, B, T, D)


def cosine_per_layer(states: torch.Tensor, i: int = 0, j: int = 1) -> torch.Tensor:
    """Mean cosine similarity of tokens i and j at every depth, (L + 2,), from hidden_states."""
    return torch.cosine_similarity(states[:, :, i], states[:, :, j], dim=-1).mean(dim=1)


def outlier_stats(norms: torch.Tensor, num_prefix_tokens: int, factor: float = 2.0) -> dict:
    """Per depth, over all patch tokens of all images: the median norm, the largest norm / the
    median, and the fraction of patch tokens with a norm above `factor` x the median (the
    paper's high-norm outliers stand far above the rest: 2.37% of DINOv2 ViT-g's tokens)."""
    p = norms[..., num_prefix_tokens:].flatten(1)  # (L + 2, B * N)
    med = p.median(dim=1).values
    return {
        "median": med,
        "max_over_median": p.max(dim=1).values / med,
        "fraction_high": (p > factor * med[:, None]).double().mean(dim=1),
    }


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int) -> float:
    """Accuracy of a least-squares linear classifier (one-hot targets, with a bias) fit on
    (train_x, train_y) and scored on (test_x, test_y): what a token's features hold."""
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("features and labels must have the same length.")

    def design(x):
        return torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)

    Y = torch.nn.functional.one_hot(train_y, num_classes).double()
    W = torch.linalg.lstsq(design(train_x), Y).solution
    return ((design(test_x) @ W).argmax(1) == test_y).double().mean().item()


# --------------------------------------------------------------------------------------
# A register added at test time (Jiang et al., NeurIPS 2025)
# --------------------------------------------------------------------------------------


@torch.no_grad()
def mlp_activations(model, images, layer: int) -> torch.Tensor:
    """The MLP hidden activations (after GELU) of block `layer`, (B, T, hidden)."""
    seen = []
    handle = model.blocks[layer].mlp.act.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        model.eval()(as_images(images).to(model_device(model)))
    finally:
        handle.remove()
    return seen[0].cpu()


@torch.no_grad()
def register_neurons(model, images, top_k: int = 4) -> list[tuple[int, int]]:
    """The `top_k` (layer, neuron) pairs of the MLPs whose activation is most concentrated
    on one patch: per image, the neuron's largest activation over the patches minus its
    median, averaged over the images. Jiang et al. find the outliers' "register neurons"
    this way: a few neurons fire hard on the few outlier patches and barely elsewhere."""
    P, scores = num_prefix(model), []
    for layer in range(len(model.blocks)):
        act = mlp_activations(model, images, layer)[:, P:]  # (B, N, hidden)
        score = (act.max(dim=1).values - act.median(dim=1).values).mean(0)  # (hidden,)
        scores += [(s.item(), layer, n) for n, s in enumerate(score)]
    scores.sort(reverse=True)
    return [(layer, n) for _, layer, n in scores[:top_k]]


@torch.no_grad()
def add_test_time_register(model: VisionTransformer, neurons) -> VisionTransformer:
    """A copy of `model` with one extra, untrained register token (after the prefix), into
    which the chosen MLP neurons' activations move (Jiang et al., NeurIPS 2025): at each
    (layer, neuron), the new token takes the neuron's largest activation over the patches,
    and every patch gets 0. The token and its position slot are zeros; no weight changes.

    The copy is a plain VisionTransformer with reg_tokens + 1 (the moves are forward hooks
    on its MLP activations), so every tool of the series reads it as it reads a model.
    """
    if type(model) is not VisionTransformer:
        raise TypeError("a test-time register is added to the series' plain ViT only.")
    hidden = model.blocks[0].mlp.fc1.out_features
    for layer, n in neurons:
        if not (0 <= layer < len(model.blocks) and 0 <= n < hidden):
            raise ValueError(
                f"no neuron ({layer}, {n}): layers run 0..{len(model.blocks) - 1}, neurons "
                f"0..{hidden - 1}."
            )
    cfg = replace(model.cfg, reg_tokens=model.cfg.reg_tokens + 1)
    new = VisionTransformer(cfg).to(model_device(model))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    r = cfg.num_prefix_tokens - 1  # the new token's index
    D = cfg.embed_dim
    zero = torch.zeros(1, 1, D, device=model_device(model))
    old_reg = state.get("reg_token")
    state["reg_token"] = zero if old_reg is None else torch.cat([old_reg, zero], dim=1)
    if "pos_embed" in state:
        pe = state["pos_embed"]  # (1, P + N, D) -> (1, P + 1 + N, D)
        state["pos_embed"] = torch.cat([pe[:, :r], zero, pe[:, r:]], dim=1)
    new.load_state_dict(state)

    def mover(chosen):
        def hook(module, inputs, out):  # out: (B, T, hidden)
            out = out.clone()
            for n in chosen:
                out[:, r, n] = out[:, r + 1 :, n].max(dim=1).values
                out[:, r + 1 :, n] = 0.0
            return out

        return hook

    for layer in sorted({layer for layer, _ in neurons}):
        chosen = [n for lay, n in neurons if lay == layer]
        new.blocks[layer].mlp.act.register_forward_hook(mover(chosen))
    return new.eval()


# --------------------------------------------------------------------------------------
# Direct patch classification
# --------------------------------------------------------------------------------------


class PatchClassifierViT(VisionTransformer):
    """Classify every patch token with one shared head and average the logits: no summary
    token at all. Built on the "avg" config (its `fc_norm` normalizes each token), and
    by default without a CLS token:

        model = PatchClassifierViT(embed_dim=32)           # class_token=False, "avg"
        model.patch_logits(model.forward_features(x))      # (B, N, classes): one vote each

    Since the head is linear, the mean of the patch logits is the head applied to the mean of
    the normalized patch tokens: average pooling with the LayerNorm moved before the mean.
    """

    def __init__(self, cfg: ViTConfig | None = None, **overrides):
        overrides = {"global_pool": "avg", "class_token": False, **overrides}
        super().__init__(cfg, **overrides)
        if self.cfg.global_pool != "avg":
            raise ValueError(
                'patch classification reuses the "avg" model (LayerNorm per patch token, then '
                f'the head): use global_pool="avg", not {self.cfg.global_pool!r}.'
            )

    def patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final tokens (B, T, D) -> one prediction per patch token, (B, N, classes)."""
        P = self.cfg.num_prefix_tokens
        return self.head(self.head_drop(self.fc_norm(x[:, P:])))  # (B, N, classes)

    def forward_head(self, x: torch.Tensor, return_attention=False):
        logits = self.patch_logits(x).mean(dim=1)  # (B, classes): the mean of the votes
        return (logits, None) if return_attention else logits


class MajorityVote(nn.Module):
    """A PatchClassifierViT scored by majority vote of its patches (one-hot class counts;
    ties go to the class with the larger mean logit)."""

    def __init__(self, model: PatchClassifierViT):
        super().__init__()
        self.model = model

    def forward(self, x):
        per_patch = self.model.patch_logits(self.model.forward_features(x))  # (B, N, C)
        votes = nn.functional.one_hot(per_patch.argmax(-1), per_patch.shape[-1]).sum(1)  # (B, C)
        return votes.double() + 1e-3 * per_patch.mean(1).softmax(-1).double()


# The comparison's budget: small enough that the notebook reruns one run live in seconds.
COMPARE_MODEL = dict(embed_dim=32, depth=2, num_heads=4)
COMPARE_TRAIN = TrainConfig(epochs=2, n_train=6000, batch_size=64, lr=3e-3, warmup_steps=50)
COMPARE_CONFIGS = {
    "CLS token": (VisionTransformer, {}),
    "mean pooling (GAP)": (VisionTransformer, {"global_pool": "avg", "class_token": False}),
    "patch classification": (PatchClassifierViT, {}),
}


def compare_run(
    name: str, seed: int, train_data, test_data, progress: bool = False, return_model=False
):
    """Train one comparison model (COMPARE_CONFIGS[name], seed) and return its rows: one,
    or two for patch classification (mean of logits, and majority vote); with
    return_model=True, (rows, the trained model)."""
    cls, kw = COMPARE_CONFIGS[name]
    seed_everything(seed)
    model = cls(**COMPARE_MODEL, **kw)
    hist = train(model, train_data, None, replace(COMPARE_TRAIN, seed=seed), progress=progress)
    row = {"seed": seed, "seconds": hist.seconds[-1], "parameters": count_parameters(model)}
    rows = [{"name": name, "accuracy": evaluate(model, test_data), **row}]
    if cls is PatchClassifierViT:
        vote = evaluate(MajorityVote(model), test_data)
        rows.append({"name": "patch classification (vote)", "accuracy": vote, **row})
    return (rows, model) if return_model else rows


def main(argv=None) -> dict:
    p = command_parser(
        "helpers.studies.tokens",
        "Compare CLS pooling, mean pooling and direct patch classification over seeds at one "
        "small budget; write the runs and their summary to a JSON file.",
        "the JSON results file to write",
        "data/patch_vs_cls.json",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    a, out = parse_command(p, argv, ".json")  # also checks each seed's range
    if len(a.seeds) < 1:
        p.error("give at least one seed.")
    if twice := sorted({s for s in a.seeds if a.seeds.count(s) > 1}):
        p.error(
            f"--seeds gives {', '.join(map(str, twice))} more than once: the same seed is the "
            f"same run, not another one; give each seed once (e.g. --seeds 0 1 2)."
        )
    with claim_output(out, p):  # held from here: a second run to the same --out is refused
        train_ds = ShapesDataset("train", n=COMPARE_TRAIN.n_train)  # made for this size
        test_ds = ShapesDataset("test")
        rows = []
        runs = [(name, s) for name in COMPARE_CONFIGS for s in a.seeds]
        for name, seed in progress_bar(iterable=runs, desc="runs", unit="run"):
            rows += compare_run(name, seed, train_ds, test_ds)
        summary = summarize_runs(rows)
        print(format_table(summary))
        record = {
            "rows": rows,
            "summary": summary,
            "model": COMPARE_MODEL,
            "train_config": asdict(COMPARE_TRAIN),
            "dataset": "shapes-in-clutter (helpers.data): "
            f"ShapesDataset('train', n={COMPARE_TRAIN.n_train}), scored on the 2000 test images",
            **provenance("helpers.studies.tokens", argv),
        }
        atomic_write(out, (json.dumps(record, indent=2) + "\n").encode())
    return record


if __name__ == "__main__":
    main()
