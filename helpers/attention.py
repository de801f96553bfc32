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
    use_rollout: bool = False,
    num_prefix_tokens: int = 1,
    batch_size: int = 250,
) -> torch.Tensor:
    """CLS attention maps (N, g, g) for many images, raw (one layer) or rolled out up to
    `layer`. Runs in batches, so only one batch's (L, B, H, T, T) weights are ever held:
    for 2000 images at once they would take over half a gigabyte.
    """
    check_count(batch_size)
    if len(images) == 0:
        raise ValueError("no images: pass at least one image.")
    out = []
    for start in range(0, len(images), batch_size):
        _, attn = get_attention(model, images[start : start + batch_size])
        if use_rollout:
            rows = rollout(attn, head_fusion=head)[layer][:, 0]  # (B, T): CLS row
            out.append(token_map(rows, num_prefix_tokens))
        else:
            out.append(cls_attention(attn, layer, head, num_prefix_tokens))
    return torch.cat(out)


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


def mean_attention_distance(
    attn: torch.Tensor, patch_size: int, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Mean distance in pixels between a patch query and the patches it attends to, weighted
    by attention (the ViT paper's Fig. 7), averaged over queries and images: (layers, heads).

    Only patch-to-patch attention counts; each row is renormalized over the patches.
    """
    check_attn(attn)
    p = attn[..., num_prefix_tokens:, num_prefix_tokens:]  # (L, B, H, N, N)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    g = int(round(p.shape[-1] ** 0.5))
    ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], -1).to(p) * patch_size  # (N, 2)
    dist = torch.cdist(pos, pos)  # (N, N) in pixels
    return (p * dist).sum(-1).mean(dim=(1, 3))  # (L, H)
