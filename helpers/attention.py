"""Tools to read a ViT's attention: per-layer maps, the CLS row, rollout, distance, entropy,
and how much of the CLS token's attention lands on the object.

All functions take the stacked attention weights of one forward pass,
`attn` of shape (layers, B, heads, T, T), as returned by `get_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import check_count
from .runtime import model_device
from .timm_adapter import adapt

HEAD_FUSIONS = ("mean", "max", "min")


@torch.no_grad()
def get_attention(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model` once with the attention switch on; returns (logits, attn).

    attn: (layers, B, heads, T, T). Uses the model's explicit `return_attention=True` path,
    so the weights cannot silently go missing the way hooks do under fused attention (a
    timm VisionTransformer is read through helpers.timm_adapter). The model runs where it
    is; the results come back on the images' device.
    """
    model = adapt(model).eval()
    logits, attentions = model(images.to(model_device(model)), return_attention=True)
    if not attentions or any(a is None for a in attentions):
        raise RuntimeError("the model returned no attention weights for some layer.")
    return logits.to(images.device), torch.stack(attentions).to(images.device)


@torch.no_grad()
def get_pool_attention(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention of a "map" model's pooling query over the patches: (logits, (B, heads, N)).

    The counterpart of `get_attention` for the learned query of attention pooling.
    """
    if getattr(getattr(model, "cfg", None), "global_pool", None) != "map":
        raise ValueError('get_pool_attention needs a model with global_pool="map".')
    model.eval()
    feats = model.forward_features(images.to(model_device(model)))
    logits, att = model.forward_head(feats, return_attention=True)  # att: (B, nh, 1, N)
    return logits.to(images.device), att[:, :, 0].to(images.device)


def check_attn(attn, name: str = "attn") -> None:
    """Stacked attention must be (layers, B, heads, T, T), as get_attention returns it."""
    if not isinstance(attn, torch.Tensor) or attn.ndim != 5 or attn.shape[-1] != attn.shape[-2]:
        shape = tuple(attn.shape) if isinstance(attn, torch.Tensor) else type(attn).__name__
        hint = (
            " (one layer, e.g. attn[0]? pass the whole stack)"
            if getattr(attn, "ndim", 0) == 4
            else ""
        )
        raise ValueError(
            f"{name} must have shape (layers, B, heads, T, T) as get_attention returns it, "
            f"got {shape}{hint}."
        )


def fuse_heads(attn: torch.Tensor, how: str | int = "mean") -> torch.Tensor:
    """(..., heads, T, T) -> (..., T, T): the mean, max or min over heads, or one head (int)."""
    if isinstance(how, bool) or not isinstance(how, (int, str)):
        raise TypeError(f"head must be a head index or one of {HEAD_FUSIONS}, got {how!r}.")
    if isinstance(how, int):
        heads = attn.shape[-3]
        if not -heads <= how < heads:
            raise ValueError(
                f"head {how} does not exist: this model has {heads} heads (0..{heads - 1})."
            )
        return attn[..., how, :, :]
    if how not in HEAD_FUSIONS:
        raise ValueError(f"head fusion {how!r} is not an int or one of {HEAD_FUSIONS}.")
    return getattr(attn, how)(dim=-3) if how == "mean" else getattr(attn, how)(dim=-3).values


def rollout(attn: torch.Tensor, head_fusion: str = "mean", residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each token's information at the
    input reaches each token at the output, following the attention through every layer.

    attn: (layers, B, heads, T, T) -> (layers, B, T, T): entry l is the rollout up to layer l.
    With residual=True each layer's matrix is 0.5 * A + 0.5 * I (the skip connection), and
    every row is renormalized to sum to 1 before multiplying: A_roll(l) = A(l) @ A_roll(l-1).
    """
    check_attn(attn)
    fused = fuse_heads(attn, head_fusion)  # (L, B, T, T)
    eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    out, acc = [], None
    for a in fused:  # a: (B, T, T)
        if residual:
            a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)  # rows sum to 1 again (max/min fusion breaks it)
        acc = a if acc is None else a @ acc  # (B, T, T)
        out.append(acc)
    return torch.stack(out)


def token_map(rows: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Attention rows over all T tokens (..., T) -> a map over the patch grid (..., g, g)."""
    patches = rows[..., num_prefix_tokens:]
    g = int(round(patches.shape[-1] ** 0.5))
    if g * g != patches.shape[-1]:
        raise ValueError(f"{patches.shape[-1]} patch tokens do not form a square grid.")
    return patches.reshape(*patches.shape[:-1], g, g)


def cls_attention(
    attn: torch.Tensor,
    layer: int = -1,
    head: str | int = "mean",
    num_prefix_tokens: int = 1,
    query: int = 0,
) -> torch.Tensor:
    """What token `query` (default: CLS, index 0) attends to in one layer, as (B, g, g) maps.

    The values are the raw softmax weights on the patches; the rest of the row went to the
    prefix tokens (CLS itself, registers).
    """
    check_attn(attn)
    L, T = attn.shape[0], attn.shape[-1]
    for name, value, size in (("layer", layer, L), ("query", query, T)):
        if isinstance(value, bool) or not isinstance(value, int) or not -size <= value < size:
            raise ValueError(f"{name} must be a whole number in 0..{size - 1}, got {value!r}.")
    rows = fuse_heads(attn[layer], head)[..., query, :]  # (B, T)
    return token_map(rows, num_prefix_tokens)


@torch.no_grad()
def cls_maps(
    model,
    images: torch.Tensor,
    layer: int = -1,
    head: str | int = "mean",
    use_rollout: bool | str = False,
    num_prefix_tokens: int = 1,
    batch_size: int = 250,
):
    """CLS attention maps (N, g, g) for many images, raw (one layer) or rolled out up to
    `layer`; use_rollout="both" gives (raw, rolled out) from one pass over the images. Runs
    in batches, so only one batch's (L, B, H, T, T) weights are ever held: for 2000 images
    at once they would take over half a gigabyte.
    """
    check_count(batch_size)
    if use_rollout not in (False, True, "both"):
        raise ValueError(f'use_rollout must be False, True or "both", got {use_rollout!r}.')
    if len(images) == 0:
        raise ValueError("no images: pass at least one image.")
    raw, rolled = [], []
    for start in range(0, len(images), batch_size):
        _, attn = get_attention(model, images[start : start + batch_size])
        if use_rollout:  # True or "both"
            rows = rollout(attn, head_fusion=head)[layer][:, 0]  # (B, T): CLS row
            rolled.append(token_map(rows, num_prefix_tokens))
        if use_rollout is not True:  # False or "both"
            raw.append(cls_attention(attn, layer, head, num_prefix_tokens))
    if use_rollout == "both":
        return torch.cat(raw), torch.cat(rolled)
    return torch.cat(rolled if use_rollout else raw)


def patch_mask(masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Pixel masks (B, H, W) -> the fraction of each patch covered by the object, (B, g, g)."""
    return F.avg_pool2d(masks.float()[:, None], patch_size)[:, 0]


def mass_on_object(maps: torch.Tensor, masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Share of the attention (over patches) that lands on patches touching the object, (B,).

    maps: (B, g, g) non-negative; masks: (B, H, W) bool. Uniform attention scores the share
    of patches that touch the object, so compare with `chance_mass_on_object`.
    """
    on = (patch_mask(masks, patch_size) > 0).float()  # (B, g, g)
    if maps.shape != on.shape:
        raise ValueError(
            f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} (patch size {patch_size}: "
            f"{tuple(on.shape)} patches) must describe the same images on the same grid."
        )
    return (maps * on).sum((-2, -1)) / maps.sum((-2, -1)).clamp_min(1e-12)


def chance_mass_on_object(masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """What `mass_on_object` gives for uniform attention: the share of object patches, (B,)."""
    return (patch_mask(masks, patch_size) > 0).float().mean((-2, -1))


def attention_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of every attention row, (..., T): low = focused, log(T) = uniform."""
    return -(attn * attn.clamp_min(1e-12).log()).sum(-1)


PREFIX_CONVENTIONS = ("renormalize", "zero")


def _patch_distances(g: int, patch_size: int) -> torch.Tensor:
    """Pixel distances between the centres of the patches of a g x g grid: (N, N)."""
    ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], -1).double() * patch_size  # (N, 2)
    return torch.cdist(pos, pos)


def mean_attention_distance(
    attn: torch.Tensor, patch_size: int, num_prefix_tokens: int = 1, prefix: str = "renormalize"
) -> torch.Tensor:
    """Mean distance in pixels between a patch query and the patches it attends to, weighted
    by attention (the ViT paper's Fig. 7), averaged over queries and images: (layers, heads).

    Only patch queries count. prefix: what to do with the weight a patch puts on CLS (and
    registers), which has no position: "renormalize" (the default) drops it and renormalizes
    each row over the patches; "zero" counts it as distance 0, as public reproductions of
    Fig. 7 do (a head that reads mostly CLS then looks "local").
    """
    check_attn(attn)
    if prefix not in PREFIX_CONVENTIONS:
        raise ValueError(f"prefix must be one of {PREFIX_CONVENTIONS}, got {prefix!r}.")
    N = attn.shape[-1] - num_prefix_tokens
    g = int(round(N**0.5))
    if g * g != N:
        raise ValueError(f"{N} patch tokens do not form a square grid.")
    dist = _patch_distances(g, patch_size).to(attn)  # (N, N) in pixels
    out = []
    for a in attn:  # one layer at a time: a fraction of the memory of all at once
        p = a[..., num_prefix_tokens:, num_prefix_tokens:]  # (B, H, N, N)
        d = (p * dist).sum(-1)  # (B, H, N): attention-weighted distance of each query
        if prefix == "renormalize":
            d = d / p.sum(-1).clamp_min(1e-12)  # as if each row were renormalized
        out.append(d.mean(dim=(0, 2)))  # (H,)
    return torch.stack(out)  # (L, H)


def uniform_attention_distance(grid_size: int, patch_size: int) -> float:
    """What `mean_attention_distance` gives for uniform attention over the patches of a
    grid_size x grid_size grid: the mean distance between two patches (self included)."""
    check_count(grid_size, "grid_size"), check_count(patch_size, "patch_size")
    return _patch_distances(grid_size, patch_size).mean().item()


def attention_received(attn: torch.Tensor) -> torch.Tensor:
    """How much attention each token receives from the *other* tokens: (layers, B, T).

    The mean over heads and over every query but the token itself of the weight on it (a
    token's weight on itself is left out, so that a token that only reads itself does not
    count as read). Uniform attention gives every token 1 / T; a layer's *top receiver* gets
    far more. A top receiver is not yet an *attention sink* (a token read whatever its
    content, which changes the output little: Xiao et al. 2023; Kobayashi et al., EMNLP 2020)
    nor a *high-norm outlier* (Darcet et al., ICLR 2024): those need their own tests.
    """
    check_attn(attn)
    a = attn.mean(2)  # (L, B, T, T): mean over heads
    T = a.shape[-1]
    off = a * (1 - torch.eye(T, dtype=a.dtype, device=a.device))
    return off.sum(-2) / (T - 1)  # (L, B, T): column sums without the diagonal


RECEIVER_KINDS = ("CLS", "object patch", "background patch")


def receiver_kind(
    received: torch.Tensor, masks: torch.Tensor, patch_size: int, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Which kind of token is the top receiver (the one that receives the most attention),
    per layer and image: (layers, B), 0 = a prefix token (CLS), 1 = a patch that touches the
    object, 2 = a background patch (names in RECEIVER_KINDS). received: (layers, B, T) from
    `attention_received`."""
    if not isinstance(received, torch.Tensor) or received.ndim != 3:
        raise ValueError("received must be (layers, B, T), as attention_received returns it.")
    on = (patch_mask(masks, patch_size) > 0).flatten(1)  # (B, N)
    if on.shape != (received.shape[1], received.shape[2] - num_prefix_tokens):
        raise ValueError(
            f"received {tuple(received.shape)} and masks {tuple(masks.shape)} (patch size "
            f"{patch_size}) must describe the same images on the same grid."
        )
    top = received.argmax(-1)  # (L, B)
    patch = (top - num_prefix_tokens).clamp_min(0)
    on_obj = on.gather(1, patch.T).T  # (L, B)
    return torch.where(top < num_prefix_tokens, 0, torch.where(on_obj, 1, 2))


def gradient_rollout(
    model, images: torch.Tensor, target: torch.Tensor | None = None, batch_size: int = 250
) -> torch.Tensor:
    """Gradient-weighted attention rollout (Chefer, Gur & Wolf, ICCV 2021, "Generic
    Attention-model Explainability"): the CLS token's relevance map over the patches, (B, g, g).

    Per layer, A_bar = mean over heads of relu(grad * A), where grad is the gradient of the
    target logit (default: the predicted class) with respect to the attention weights A;
    then R = I, R <- R + A_bar @ R through the layers, and the map is R's CLS row.
    """
    check_count(batch_size)
    model = adapt(model).eval()
    device = model_device(model)
    maps = []
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size].to(device)
        with torch.enable_grad():
            logits, attns = model(x, return_attention=True)  # [(b, H, T, T)] per layer
            for a in attns:
                a.retain_grad()
            cls = logits.argmax(-1) if target is None else target[s : s + batch_size].to(device)
            logits.gather(1, cls[:, None]).sum().backward()
        T = attns[0].shape[-1]
        R = torch.eye(T, device=device).expand(len(x), T, T).clone()  # (b, T, T)
        for a in attns:
            a_bar = (a.grad * a).clamp_min(0).mean(1).detach()  # (b, T, T)
            R = R + a_bar @ R
        maps.append(token_map(R[:, 0], model.cfg.num_prefix_tokens).cpu())
        model.zero_grad(set_to_none=True)
    return torch.cat(maps)
