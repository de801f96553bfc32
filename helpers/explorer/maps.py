"""What the explorer shows, computed in Python: the geometry of a model (grid, prefix
tokens), the query token and its label, the explorer's state, the title and prediction
texts, and `AttentionMaps`, every map of one image from one forward pass.

The live widget (`helpers.explorer.widget`) and the kernel-free export
(`helpers.explorer.export`) both read these; nothing here needs a browser.
"""

from __future__ import annotations

import contextlib
import math
import operator
from dataclasses import dataclass, replace

import torch

from ..attention import cls_attention, fuse_heads, get_attention, rollout, token_map

MODES = ("raw", "rollout")
ROLLOUT_FUSIONS = ("mean", "max")  # per-layer head fusions offered for rollout
SCALES = ("map", "shared")  # colour scale: this map, or shared across layers


# --------------------------------------------------------------------------------------
# Geometry of a model, query tokens, heads
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    image_size: int
    patch_size: int
    channels: int
    class_token: bool
    reg_tokens: int

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens


def model_geometry(model, image: torch.Tensor | None = None) -> Geometry:
    """Image size, patch size, channels and prefix tokens of a model with a ViTConfig `cfg`
    (the series' ViT, or a timm ViT wrapped by helpers.timm_adapter.adapt).

    Any other model with `model(x, return_attention=True)` works given a sample `image`
    (C, H, W): the grid is read off the attention's size, the prefix tokens from
    `model.num_prefix_tokens` (default 1: a CLS token)."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "patch_size"):
        return Geometry(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.class_token, cfg.reg_tokens)
    if image is None:
        raise TypeError(
            f"{type(model).__name__} has no `cfg` (the series' ViT) and is not a timm "
            f"VisionTransformer: pass a sample image so its patch grid can be measured."
        )
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    with _one_thread():
        _, attn = get_attention(model, image[None])
    grid = math.isqrt(attn.shape[-1] - prefix)
    if grid * grid != attn.shape[-1] - prefix or image.shape[-1] % grid:
        raise ValueError(
            f"{attn.shape[-1]} tokens with {prefix} prefix token(s) do not form a square "
            f"patch grid over a {image.shape[-1]}-pixel image: set model.num_prefix_tokens."
        )
    return Geometry(
        image.shape[-1], image.shape[-1] // grid, image.shape[0], prefix >= 1, max(prefix - 1, 0)
    )


QUERY_FORMS = "'CLS', ('reg', k), (row, col) or a token index"


def whole_number(value, what: str) -> int:
    """An integral value (3, np.int64(3)) as an int; a bool, float or string is refused."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise ValueError(f"{what} must be a whole number; got {value!r}.")


def query_token(query, geom: Geometry) -> int:
    """A query as a token index: "CLS" (any case), ("reg", k), (row, col) of a patch, or an int."""
    P, g = geom.num_prefix_tokens, geom.grid
    if isinstance(query, str):
        if query.strip().upper() != "CLS":
            raise ValueError(f"query must be {QUERY_FORMS}; got {query!r}.")
        if not geom.class_token:
            raise ValueError("this model has no CLS token: pick a patch (row, col).")
        return 0
    if isinstance(query, list):  # [row, col] reads as (row, col)
        query = tuple(query)
    if isinstance(query, tuple) and len(query) == 2:
        if isinstance(query[0], str):
            if query[0].strip().lower() != "reg":
                raise ValueError(f"query must be {QUERY_FORMS}; got {query!r}.")
            k = whole_number(query[1], "the register number k in ('reg', k)")
            if not 0 <= k < geom.reg_tokens:
                raise ValueError(
                    f"register {k} does not exist ({geom.reg_tokens} registers"
                    + (f": use 0..{geom.reg_tokens - 1})." if geom.reg_tokens else ").")
                )
            return int(geom.class_token) + k
        r, c = (whole_number(v, "a patch's row and column") for v in query)
        if not (0 <= r < g and 0 <= c < g):
            raise ValueError(f"patch ({r}, {c}) is outside the {g}x{g} grid (0..{g - 1}).")
        return P + r * g + c
    if isinstance(query, bool) or not hasattr(query, "__index__"):
        raise ValueError(f"query must be {QUERY_FORMS}; got {query!r}.")
    t = operator.index(query)
    if not 0 <= t < P + g * g:
        raise ValueError(f"token {t} does not exist (0..{P + g * g - 1}).")
    return t


def query_label(token: int, geom: Geometry) -> str:
    """Token index -> "CLS", "register k" or "patch (row, col)"."""
    if geom.class_token and token == 0:
        return "CLS"
    if token < geom.num_prefix_tokens:
        return f"register {token - int(geom.class_token)}"
    r, c = divmod(token - geom.num_prefix_tokens, geom.grid)
    return f"patch ({r}, {c})"


def head_label(head) -> str:
    return f"head {head}" if isinstance(head, int) else f"{head} over heads"


@dataclass(frozen=True)
class ExplorerState:
    layer: int  # 0-based, as in helpers.attention
    head: str | int = "mean"  # "mean", "max" or a head index (raw attention only)
    mode: str = "raw"  # "raw" or "rollout"
    query: int = 0  # token index; 0 = CLS when the model has one
    scale: str = "shared"  # colour scale: "shared" (over all layers) or "map" (its own max)

    def normalized(self, num_layers: int, num_heads: int) -> ExplorerState:
        """Valid state: layer in range, rollout with a head fusion (a single head -> mean)."""
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}.")
        if not isinstance(self.scale, str) or self.scale not in SCALES:
            raise ValueError(
                f"scale {self.scale!r} is not one of {SCALES} (this map, or shared across layers)."
            )
        layer = whole_number(self.layer, "layer")
        if not -num_layers <= layer < num_layers:
            raise ValueError(
                f"layer {layer} does not exist (0..{num_layers - 1}, or -1 for the last)."
            )
        layer %= num_layers
        head = self.head
        if isinstance(head, str):
            if head.strip().isdigit():  # "2", as the browser view sends it
                head = int(head)
            elif head not in ROLLOUT_FUSIONS:
                raise ValueError(
                    f"head {head!r} is not one of {ROLLOUT_FUSIONS} or a head 0..{num_heads - 1}."
                )
        if not isinstance(head, str):
            head = whole_number(head, f"head ({ROLLOUT_FUSIONS} or a head number)")
            if not 0 <= head < num_heads:
                raise ValueError(f"head {head} does not exist (0..{num_heads - 1}).")
        if self.mode == "rollout" and head not in ROLLOUT_FUSIONS:
            head = "mean"
        return replace(self, layer=layer, head=head)


def title_text(state: ExplorerState, num_layers: int, geom: Geometry) -> str:
    """Two lines: what is shown (raw attention or rollout, of which query token) and where.
    The browser view (view.js, titleLines) writes the same words."""
    q = query_label(state.query, geom)
    last = num_layers - 1
    if state.mode == "raw":
        return f"Raw attention of {q}\nlayer {state.layer} of 0–{last}, {head_label(state.head)}"
    span = (
        f"layer 0 only (of 0–{last})"
        if state.layer == 0
        else f"layers 0–{state.layer} (of 0–{last})"
    )
    return f"Attention rollout of {q}\n{span}, {head_label(state.head)}"


def nice_ceil(x: float) -> float:
    """The smallest 'round' number >= x (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k): the
    colour scale's top, so the colorbar reads well and the same scales recur."""
    if not x > 0:
        return 1e-9
    e = math.floor(math.log10(x))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * 10.0**e >= x * (1 - 1e-9):
            return float(f"{m * 10.0**e:.6g}")
    return 10.0 ** (e + 1)


def top_k(probs, classes, k: int = 3) -> list[tuple[str, float]]:
    probs = torch.as_tensor(probs).flatten().float()
    values, idx = probs.topk(min(k, probs.numel()))
    return [(class_name(classes, int(i)), float(v)) for v, i in zip(values, idx)]


def class_name(classes, i: int) -> str:
    return str(classes[i]) if classes is not None and 0 <= i < len(classes) else f"class {i}"


def prediction_text(probs, classes, label: int | None = None, k: int = 3) -> str:
    """'prediction: disk (97.1%) · true: disk ✓' and a line with the top-k probabilities."""
    top = top_k(probs, classes, k)
    head = f"prediction: {top[0][0]} ({100 * top[0][1]:.1f}%)"
    if label is not None:
        truth = class_name(classes, int(label))
        head += f" · true: {truth} " + ("✓" if truth == top[0][0] else "✗")
    return head + "\n" + f"top-{len(top)}: " + ", ".join(f"{c} {100 * p:.1f}%" for c, p in top)


# --------------------------------------------------------------------------------------
# All maps of one image, from one forward pass
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_thread():
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


class AttentionMaps:
    """The attention of one image: computed once, then any (layer, head, mode, query) map.

    attn: (layers, 1, heads, T, T) from `get_attention`; rollouts: {fusion: (layers, 1, T, T)}.
    """

    def __init__(self, model, image: torch.Tensor, geom: Geometry):
        self.geom = geom
        with _one_thread():  # batch of one: threads only add overhead (and stall on a busy CPU)
            logits, self.attn = get_attention(model, image[None])
            self.rollouts = {f: rollout(self.attn, head_fusion=f) for f in ROLLOUT_FUSIONS}
        self.probs = logits.softmax(-1)[0]
        self.num_layers, self.num_heads = self.attn.shape[0], self.attn.shape[2]

    def row(self, state: ExplorerState) -> torch.Tensor:
        """The query's full row over all T tokens (sums to 1)."""
        if state.mode == "raw":
            return fuse_heads(self.attn[state.layer, 0], state.head)[state.query]
        return self.rollouts[state.head][state.layer, 0, state.query]

    def map(self, state: ExplorerState) -> torch.Tensor:
        """The map shown for `state`, (g, g): the query row's weights on the patches."""
        P = self.geom.num_prefix_tokens
        if state.mode == "raw":
            with _one_thread():  # a max over 4 small heads: a thread pool only adds delay
                return cls_attention(self.attn, state.layer, state.head, P, state.query)[0]
        return token_map(self.rollouts[state.head][state.layer, 0, state.query], P)

    def prefix_share(self, state: ExplorerState) -> float:
        """Share of the query's row that goes to prefix tokens (CLS, registers), not patches."""
        return float(1.0 - self.map(state).sum() / self.row(state).sum())

    def vmax(self, state: ExplorerState) -> float:
        """Top of the colour scale: this map's max, or the max over every layer of the same
        mode, head and query ("shared"), rounded up by `nice_ceil` (as the browser view)."""
        if state.scale == "shared":
            top = max(
                float(self.map(replace(state, layer=k)).max()) for k in range(self.num_layers)
            )
        else:
            top = float(self.map(state).max())
        return nice_ceil(top)
