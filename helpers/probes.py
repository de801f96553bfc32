"""Reading a ViT layer by layer: the tokens after every block, linear probes, the logit lens,
and deletion curves that test an explanation by removing the patches it ranks highest.

- `block_states`: the residual stream after every block, (L + 1, B, T, D), entry 0 = the input.
- `fit_probe` / `probe_accuracy`: a logistic regression on frozen features, trained full-batch
  with L-BFGS (deterministic: zero start, no minibatches).
- `logit_lens`: the model's own final norm and head applied to any state, for CLS and for
  every patch token (nostalgebraist 2020; per patch: Vilas et al., NeurIPS 2023).
- `deletion_curve` / `curve_area`: accuracy as the k top-ranked patch tokens are replaced by
  their mean over a reference set (mean ablation) or by zeros, and the area under it (per
  image too, for paired comparisons of two explanations on the same images).
- `layer_profile`: every per-layer measure of notebook 05 for one model, the top receivers'
  norms included (`norm_ratio`).

Every function runs the model where it is; results come back on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .attention import (
    attention_entropy,
    attention_received,
    cls_attention,
    get_attention,
    mass_on_object,
    mean_attention_distance,
    receiver_kind,
)
from .model import as_images, as_labels, check_count
from .runtime import model_device, require_finite

FILLS = ("mean", "zero")


def _check_images(images) -> torch.Tensor:
    images = as_images(images)
    if len(images) == 0:
        raise ValueError("no images: pass at least one image.")
    return images


@torch.no_grad()
def block_states(model, images, batch_size: int = 250, token: int | None = None) -> torch.Tensor:
    """The tokens before the first block and after every block: (L + 1, B, T, D), on the CPU.

    Entry 0 is `model.embed(images)` (patches, CLS and position embedding); entry l is the
    output of block l - 1, before the final norm. 500 images of the 4-block model take
    5 x 500 x 65 x 64 floats = 42 MB. With `token` (e.g. 0 for CLS) only that token is kept:
    (L + 1, B, D), T times less memory.
    """
    check_count(batch_size)
    images = _check_images(images)
    T = model.cfg.num_prefix_tokens + model.cfg.num_patches
    if token is not None and not (isinstance(token, int) and -T <= token < T):
        raise ValueError(f"token must be an index into the {T} tokens (0 = CLS), got {token!r}.")
    keep = slice(None) if token is None else token
    model.eval()
    device = model_device(model)
    out = []
    for s in range(0, len(images), batch_size):
        x = model.embed(images[s : s + batch_size].to(device))  # (b, T, D)
        states = [x[:, keep].cpu()]
        for block in model.blocks:
            x = block(x)  # (b, T, D)
            states.append(x[:, keep].cpu())
        out.append(torch.stack(states))  # (L + 1, b, T, D), or (L + 1, b, D) for one token
    return torch.cat(out, dim=1)


def _check_lens_model(model) -> None:
    if getattr(getattr(model, "cfg", None), "global_pool", None) == "map":
        raise ValueError(
            'the logit lens reads a token with the final norm and head; a global_pool="map" '
            "model puts an attention pool between them, so the lens does not apply."
        )


@torch.no_grad()
def logit_lens(model, states: torch.Tensor) -> torch.Tensor:
    """The model's final norm and head applied to states (..., D): logits (..., classes).

    On the CLS state after the last block this is exactly the model's output; on earlier
    states (and on patch tokens) it asks "what would the head say if it read this now?".
    """
    _check_lens_model(model)
    if not isinstance(states, torch.Tensor) or states.shape[-1] != model.cfg.embed_dim:
        got = tuple(states.shape) if isinstance(states, torch.Tensor) else type(states).__name__
        raise ValueError(
            f"states must end in the model's width D = {model.cfg.embed_dim} (e.g. block_states"
            f"(...) of shape (L + 1, B, T, D)), got {got}."
        )
    require_finite(states, "states")
    device = model_device(model)
    flat = states.reshape(-1, states.shape[-1])
    out = [
        model.head(model.fc_norm(model.norm(flat[s : s + 65536].to(device)))).cpu()
        for s in range(0, len(flat), 65536)
    ]
    return torch.cat(out).reshape(*states.shape[:-1], -1)


@dataclass
class LinearProbe:
    """A logistic regression on standardized features: logits = ((x - mean) / std) @ W.T + b."""

    weight: torch.Tensor  # (classes, D)
    bias: torch.Tensor  # (classes,)
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        D = self.weight.shape[1]
        if not isinstance(features, torch.Tensor) or features.ndim < 1 or features.shape[-1] != D:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
            raise ValueError(
                f"this probe was fit on features of width D = {D}, got {got}: apply it to "
                f"features of the same layer and token kind it was fit on (expected (N, {D}))."
            )
        x = (features.float() - self.mean) / self.std
        return x @ self.weight.T + self.bias  # (N, classes)


def _check_features(features, labels) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ValueError(f"features must be a (N, D) tensor, one row per example, got {got}.")
    require_finite(
        features,
        "features",
        "a probe cannot fit or score them; the model that made them probably diverged "
        "(retrain it at a lower rate), or drop the rows with torch.isfinite(f).all(1)",
    )
    labels = as_labels(labels)
    if labels.shape != (len(features),):
        raise ValueError(
            f"labels must be (N,) = ({len(features)},), one per feature row, got "
            f"{tuple(labels.shape)}."
        )
    if len(features) == 0:
        raise ValueError("no features: pass at least one example.")
    return features.detach().float().cpu(), labels.long().cpu()


def fit_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int | None = None,
    weight_decay: float = 1e-3,
    steps: int = 100,
) -> LinearProbe:
    """Fit a linear probe (multinomial logistic regression with an L2 penalty) on frozen
    features (N, D), full batch with L-BFGS from zero weights: the same answer every run.

    The features are standardized first (their mean and std are stored in the probe), so
    one weight_decay suits every layer, whatever the scale of its tokens.
    """
    features, labels = _check_features(features, labels)
    check_count(steps, "steps")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
    k = int(num_classes or labels.max().item() + 1)
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1} for num_classes={k}.")
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / std
    w = torch.zeros(k, x.shape[1], requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, labels) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(w.detach(), b.detach(), mean, std)


@torch.no_grad()
def probe_accuracy(probe: LinearProbe, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of examples whose probe prediction is the label."""
    features, labels = _check_features(features, labels)
    D = probe.weight.shape[1]
    if features.shape[1] != D:
        raise ValueError(
            f"this probe was fit on features of width D = {D}, got D = {features.shape[1]}: "
            f"score it on features of the same layer and token kind it was fit on."
        )
    return (probe(features).argmax(-1) == labels).double().mean().item()


@torch.no_grad()
def mean_tokens(model, images, batch_size: int = 500) -> torch.Tensor:
    """The mean of the first block's input over `images`, per position: (T, D).

    The fill of mean ablation: a patch token replaced by it keeps the position's average
    content (its position embedding included) but loses what was in this image there."""
    check_count(batch_size)
    images = _check_images(images)
    device = model_device(model)
    total = 0
    for s in range(0, len(images), batch_size):
        total = total + model.embed(images[s : s + batch_size].to(device)).sum(0).cpu()
    return total / len(images)


def rank_patches(scores: torch.Tensor) -> torch.Tensor:
    """Patch scores (B, N) or maps (B, g, g) -> patch indices (B, N), highest score first."""
    if not isinstance(scores, torch.Tensor) or scores.ndim not in (2, 3):
        raise ValueError("scores must be (B, N) per patch or (B, g, g) maps, one row per image.")
    require_finite(scores, "scores", "a NaN score has no rank: check how the map was made")
    flat = scores.reshape(len(scores), -1).float()
    # a stable sort: ties (e.g. uniform scores) keep the patches in reading order
    return torch.sort(flat, dim=1, descending=True, stable=True).indices


@torch.no_grad()
def deletion_curve(
    model,
    images,
    labels,
    scores: torch.Tensor,
    ks,
    fill: str | torch.Tensor = "mean",
    batch_size: int = 500,
    per_image: bool = False,
) -> torch.Tensor:
    """Accuracy after removing the k highest-scoring patches of each image, for each k in ks.

    scores: (B, N) or (B, g, g), higher = more important (pass -scores for "least important
    first", random numbers for a random order). A removed patch's token at the first block's
    input is replaced by `fill`: "mean" = `mean_tokens(model, images)` (pass a (T, D) tensor
    to use another reference set) or "zero" (zero ablation, which also erases the position
    embedding and pushes the token off the data the model has seen). Returns (len(ks),),
    or with per_image=True (len(ks), B): 1 where image b is still right after k deletions,
    0 where not (the accuracy is its mean over images).
    """
    check_count(batch_size)
    images = _check_images(images)
    labels = as_labels(labels).cpu()
    P, N = model.cfg.num_prefix_tokens, model.cfg.num_patches
    order = rank_patches(scores)
    if order.shape != (len(images), N):
        raise ValueError(
            f"scores must give one score per patch for each image: expected (B, {N}) or "
            f"(B, g, g) with B = {len(images)}, got {tuple(scores.shape)}."
        )
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be ({len(images)},), one per image.")
    ks = [int(k) for k in ks]
    if any(k < 0 or k > N for k in ks):
        raise ValueError(f"every k must lie in 0..{N} (the number of patches), got {ks}.")
    T, D = P + N, model.cfg.embed_dim
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS} or a (T, D) tensor, got {fill!r}.")
        fill = mean_tokens(model, images) if fill == "mean" else torch.zeros(T, D)
    elif not isinstance(fill, torch.Tensor) or fill.shape != (T, D):
        got = tuple(fill.shape) if isinstance(fill, torch.Tensor) else type(fill).__name__
        raise ValueError(f"a fill tensor must be (T, D) = ({T}, {D}), got {got}.")
    else:
        require_finite(fill, "fill")
    model.eval()
    device = model_device(model)
    fill = fill.to(device)
    correct = torch.zeros(len(ks), len(images))
    for s in range(0, len(images), batch_size):
        x0 = model.embed(images[s : s + batch_size].to(device))  # (b, T, D)
        rank = torch.empty_like(order[s : s + batch_size])  # rank[b, patch] = its place
        rank.scatter_(1, order[s : s + batch_size], torch.arange(N).expand_as(rank))
        y = labels[s : s + batch_size]
        for j, k in enumerate(ks):
            gone = torch.zeros(len(y), T, 1, dtype=torch.bool, device=device)
            gone[:, P:, 0] = (rank < k).to(device)  # (b, T, 1): the k top-ranked patches
            x = torch.where(gone, fill, x0)
            for block in model.blocks:
                x = block(x)
            pred = model.forward_head(model.norm(x)).argmax(-1).cpu()
            correct[j, s : s + batch_size] = (pred == y).float()
    return correct if per_image else correct.mean(1)


def curve_area(ks, values):
    """Area under a curve by the trapezoid rule, with ks rescaled to [0, 1] (for ks from 0
    to N: the fraction of patches removed); that is the curve's mean height between the first
    and the last k. A deletion curve that falls fast has a small area.

    values (len(ks),) gives a float; (len(ks), B), one curve per image as
    `deletion_curve(..., per_image=True)` returns them, gives the B areas (a tensor), whose
    mean is the area of the mean curve."""
    ks = torch.as_tensor(ks, dtype=torch.float64)
    values = torch.as_tensor(values, dtype=torch.float64)
    if ks.ndim != 1 or len(ks) < 2 or values.ndim not in (1, 2) or values.shape[0] != len(ks):
        raise ValueError(
            "curve_area needs at least two ks and one value per k: values (len(ks),) or "
            "(len(ks), B)."
        )
    require_finite(values, "values", "a curve with NaN points has no area")
    if (ks.diff() <= 0).any():
        raise ValueError(f"ks must increase, got {ks.tolist()}.")
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    area = torch.trapezoid(values, x, dim=0)
    return area.item() if values.ndim == 1 else area


@torch.no_grad()
def layer_profile(model, images, labels, masks, batch_size: int = 250) -> dict:
    """Every per-layer measure of notebook 05 for one model, on images with object masks:

    cls_entropy (L, H): entropy (nats) of the CLS row, per head, mean over images;
    on_object (L, H): share of the CLS row's patch attention on the object, per head;
    distance (L, H): mean attention distance of the patch queries in pixels (renormalized);
    receivers (L, 3): how many images have a CLS / object patch / background patch as the
    layer's top receiver, the token that receives the most attention (attention.RECEIVER_KINDS);
    norm_ratio (L,): the norm of a background top receiver as the layer reads it (its input)
    divided by the median norm of the image's patch tokens there, mean over the images whose
    top receiver is a background patch (NaN where none is); a high-norm outlier of Darcet et
    al. (ICLR 2024) stands far above the rest;
    top (L, B): the index (in 0..T-1) of each image's top receiver in each layer;
    lens (L + 1,): logit-lens accuracy of the CLS token before the first block and after each.
    """
    check_count(batch_size)
    images = _check_images(images)
    labels = as_labels(labels).cpu()
    ps, P = model.cfg.patch_size, model.cfg.num_prefix_tokens
    sums, n, top, kinds = {}, 0, [], []
    for s in range(0, len(images), batch_size):
        x, m = images[s : s + batch_size], masks[s : s + batch_size]
        _, attn = get_attention(model, x)  # (L, b, H, T, T)
        H = attn.shape[2]
        received = attention_received(attn)  # (L, b, T)
        top.append(received.argmax(-1))  # (L, b): each layer's top receiver
        kinds.append(receiver_kind(received, m, ps, P))
        part = {
            "cls_entropy": attention_entropy(attn[:, :, :, 0]).sum(1),
            "on_object": torch.stack(
                [
                    torch.stack(
                        [mass_on_object(cls_attention(attn, la, h, P), m, ps) for h in range(H)]
                    )
                    for la in range(attn.shape[0])
                ]
            ).sum(-1),  # (L, H): summed over the images
            "distance": mean_attention_distance(attn, ps, P) * len(x),
            "receivers": torch.nn.functional.one_hot(kinds[-1], 3).sum(1),
        }
        for k, v in part.items():
            sums[k] = sums.get(k, 0) + v.double()
        n += len(x)
    out = {k: (v / n).float() for k, v in sums.items() if k != "receivers"}
    out["receivers"] = sums["receivers"].long()
    states = block_states(model, images, batch_size)  # (L + 1, B, T, D)
    norms = states[:-1].norm(dim=-1)  # (L, B, T): each layer's input, as its attention reads it
    top, kinds = torch.cat(top, 1), torch.cat(kinds, 1)  # (L, B)
    ratio = norms.gather(2, top[..., None])[..., 0] / norms[..., P:].median(-1).values
    bg = (kinds == 2).float()
    out["norm_ratio"] = ((ratio * bg).sum(1) / bg.sum(1)).float()  # NaN where bg.sum() == 0
    out["top"] = top
    out["lens"] = (logit_lens(model, states[:, :, 0]).argmax(-1) == labels).float().mean(1)
    return out
