"""An interactive explorer of a ViT's attention: pick an image, a layer, a head, raw attention
or rollout, and a query token (CLS by default), and see where that token looks.

    explorer = AttentionExplorer(model, dataset, classes=CLASSES, index=0)
    explorer  # displays itself

Design, so it works in JupyterLab, Notebook 7, VS Code and Colab (ipywidgets 7.7 and 8):
- All maps of an image come from ONE forward pass with the attention switch on
  (`helpers.attention.get_attention`), plus the rollout of every layer, computed when the
  image changes. Moving a control only picks a precomputed map.
- One matplotlib Figure (Agg, never pyplot, so no figure is ever shown twice), updated in
  place (`set_data`, `set_clim`, texts) and sent as PNG bytes to one `ipywidgets.Image`.
- Query patch: `ipywidgets.Image` has no click event, so a grid of small buttons mirrors
  the image's patch grid (plus a CLS button, and one per register token).
- Displayed, the explorer offers the live widget and a PNG of its current state, so a saved
  notebook shows a picture where no kernel runs (GitHub, nbviewer).

The logic (which map, title, prediction text, upload parsing and validation) lives in plain
functions and in `AttentionMaps`, tested without a browser.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import operator
from dataclasses import dataclass, replace

import numpy as np
import torch

from .attention import cls_attention, fuse_heads, get_attention, rollout, token_map
from .images import UploadError, load_image_bytes, parse_upload
from .plots import ATTN_CMAP, draw_patch_grid, to_numpy_image
from .timm_adapter import adapt

MODES = ("raw", "rollout")
ROLLOUT_FUSIONS = ("mean", "max")  # per-layer head fusions offered for rollout


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


def _integer(value, what: str) -> int:
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
            k = _integer(query[1], "the register number k in ('reg', k)")
            if not 0 <= k < geom.reg_tokens:
                raise ValueError(
                    f"register {k} does not exist ({geom.reg_tokens} registers"
                    + (f": use 0..{geom.reg_tokens - 1})." if geom.reg_tokens else ").")
                )
            return int(geom.class_token) + k
        r, c = (_integer(v, "a patch's row and column") for v in query)
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


def head_options(mode: str, num_heads: int) -> list[tuple[str, object]]:
    """Head choices for a mode: rollout fuses the heads at every layer (mean or max), so a
    single head is offered for raw attention only."""
    opts = [(head_label(h), h) for h in ROLLOUT_FUSIONS]
    if mode == "raw":
        opts += [(head_label(h), h) for h in range(num_heads)]
    return opts


@dataclass(frozen=True)
class ExplorerState:
    layer: int  # 0-based, as in helpers.attention
    head: str | int = "mean"  # "mean", "max" or a head index (raw attention only)
    mode: str = "raw"  # "raw" or "rollout"
    query: int = 0  # token index; 0 = CLS when the model has one

    def normalized(self, num_layers: int, num_heads: int) -> ExplorerState:
        """Valid state: layer in range, rollout with a head fusion (a single head -> mean)."""
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}.")
        layer = _integer(self.layer, "layer")
        if not -num_layers <= layer < num_layers:
            raise ValueError(
                f"layer {layer} does not exist (0..{num_layers - 1}, or -1 for the last)."
            )
        layer %= num_layers
        head = self.head
        if isinstance(head, str):
            if head not in ROLLOUT_FUSIONS:
                raise ValueError(
                    f"head {head!r} is not one of {ROLLOUT_FUSIONS} or a head 0..{num_heads - 1}."
                )
        else:
            head = _integer(head, f"head ({ROLLOUT_FUSIONS} or a head number)")
            if not 0 <= head < num_heads:
                raise ValueError(f"head {head} does not exist (0..{num_heads - 1}).")
        if self.mode == "rollout" and head not in ROLLOUT_FUSIONS:
            head = "mean"
        return replace(self, layer=layer, head=head)


def title_text(state: ExplorerState, num_layers: int, geom: Geometry) -> str:
    """Two lines: what is shown (raw attention or rollout, of which query token) and where."""
    q = query_label(state.query, geom)
    last = num_layers - 1
    if state.mode == "raw":
        return f"Raw attention of {q}\nlayer {state.layer} of 0–{last}, {head_label(state.head)}"
    return f"Attention rollout of {q}\nlayers 0–{state.layer} of 0–{last}, {head_label(state.head)}"


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


def prediction_html(probs, classes, label: int | None = None, k: int = 3) -> str:
    top = top_k(probs, classes, k)
    first = prediction_text(probs, classes, label, k).split("\n")[0]
    rows = "".join(
        f"<tr><td style='padding-right:6px'>{c}</td>"
        f"<td style='width:120px'><div style='background:#e8a33d;height:12px;"
        f"width:{max(1, round(120 * p))}px'></div></td>"
        f"<td style='text-align:right;padding-left:6px'>{100 * p:.1f}%</td></tr>"
        for c, p in top
    )
    return f"<div style='font-size:14px'><b>{first}</b><table>{rows}</table></div>"


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
            return cls_attention(self.attn, state.layer, state.head, P, state.query)[0]
        return token_map(self.rollouts[state.head][state.layer, 0, state.query], P)

    def prefix_share(self, state: ExplorerState) -> float:
        """Share of the query's row that goes to prefix tokens (CLS, registers), not patches."""
        return float(1.0 - self.map(state).sum() / self.row(state).sum())


# --------------------------------------------------------------------------------------
# The widget
# --------------------------------------------------------------------------------------


def _widget_view_bundle(widget) -> dict:
    """The widget-view part of a display bundle, for ipywidgets 7 and 8."""
    return {
        "application/vnd.jupyter.widget-view+json": {
            "version_major": 2,
            "version_minor": 0,
            "model_id": widget.model_id,
        }
    }


class AttentionExplorer:
    """Interactive view of where a token (CLS by default) attends, layer by layer.

    model: a helpers VisionTransformer (or any model with `model(x, return_attention=True)`
    and a `cfg`), or a timm VisionTransformer. dataset: indexable, `dataset[i] -> (image,
    label)` with images (C, H, W) in [0, 1] (e.g. ShapesDataset("test")). Layers and heads
    count from 0, as in helpers.attention.
    """

    def __init__(
        self,
        model,
        dataset,
        classes=None,
        index: int = 0,
        layer: int = -1,
        head: str | int = "mean",
        mode: str = "raw",
        query="CLS",
    ):
        model = adapt(model).eval()
        self.model = model
        self.dataset = dataset
        self.classes = classes if classes is not None else getattr(dataset, "classes", None)
        index = self._check_index(index)
        self.geom = model_geometry(model, torch.as_tensor(dataset[index][0]).float())
        is_cls = isinstance(query, str) and query.strip().upper() == "CLS"
        if is_cls and not self.geom.class_token:
            query = (self.geom.grid // 2, self.geom.grid // 2)
        self.index = index
        self.image, self.label = self._dataset_item(self.index)
        self.source = f"test image #{self.index}"
        self.maps = AttentionMaps(model, self.image, self.geom)
        self.state = ExplorerState(layer, head, mode, query_token(query, self.geom)).normalized(
            self.maps.num_layers, self.maps.num_heads
        )
        self.message = ""
        self._build_figure()
        self._render()
        self._widget = None  # built on first use, so the logic runs without a frontend

    # ---------------- pure state changes (no widgets needed) ----------------

    def _dataset_item(self, index: int):
        image, label = self.dataset[index]
        image = torch.as_tensor(image).float()
        return image, (int(label) if label is not None else None)

    def _check_index(self, index) -> int:
        """A dataset index as a non-negative int; -1 is the last image, as in Python lists."""
        index = _integer(index, "the image index")
        try:
            n = len(self.dataset)
        except TypeError:  # a dataset without a length: let it say whether the index exists
            return index
        if not -n <= index < n:
            raise ValueError(
                f"image index {index} is out of range: the dataset has {n} images, "
                f"so use 0..{n - 1} (or -1 for the last)."
            )
        return index % n

    def set(self, **changes) -> AttentionExplorer:
        """Change the view: index, layer, head, mode, query ("CLS", (row, col) or a token).

        All or nothing: every value is checked, and a new image's maps computed, before the
        view changes, so after an error the explorer shows exactly what it showed before.
        Keeps the widgets in step. Returns self, so a cell can end with `explorer.set(...)`.
        """
        unknown = sorted(set(changes) - {"index", "layer", "head", "mode", "query"})
        if unknown:
            raise TypeError(
                f"set() got unknown setting(s) {', '.join(unknown)}: "
                "use index, layer, head, mode or query."
            )
        item = self._load_index(changes.pop("index")) if "index" in changes else None
        maps = item[3] if item is not None else self.maps
        if "query" in changes:
            changes["query"] = query_token(changes["query"], self.geom)
        state = replace(self.state, **changes).normalized(maps.num_layers, maps.num_heads)
        maps.map(state)  # the map exists (raises here, before anything changed, if not)
        if item is not None:
            self._show_item(*item)
        self.state = state
        self._sync_controls()
        self._render()
        return self

    def _load_index(self, index) -> tuple[int, torch.Tensor, int | None, AttentionMaps]:
        """Everything a new image needs (one forward pass), without changing the view."""
        index = self._check_index(index)
        image, label = self._dataset_item(index)
        return index, image, label, AttentionMaps(self.model, image, self.geom)

    def _show_item(self, index, image, label, maps) -> None:
        self.index, self.image, self.label, self.maps = index, image, label, maps
        self.source = f"test image #{self.index}"
        self.message = ""
        self._set_base_image()

    def show_index(self, index: int, _render: bool = True) -> None:
        """Show test image `index` (-1: the last): one forward pass, all maps recomputed."""
        item = self._load_index(index)  # may raise: the view is still the old one then
        self._show_item(*item)
        if _render:
            self._sync_controls()
            self._render()

    def show_upload(self, name: str, data: bytes) -> bool:
        """Show an uploaded file; on a bad file, keep the view and set a message. Never raises."""
        try:
            image = load_image_bytes(data, self.geom.image_size, self.geom.channels)
        except UploadError as e:
            self.message = f"{name}: {e}"
            self._render()
            return False
        except Exception as e:  # anything unexpected still ends as a message
            self.message = f"{name}: could not use this file ({type(e).__name__})."
            self._render()
            return False
        self.image, self.label = image, None
        self.source = f"your image: {name}"
        self.message = f"Showing {name}, resized to {self.geom.image_size}x{self.geom.image_size}."
        self.maps = AttentionMaps(self.model, self.image, self.geom)
        self._set_base_image()
        self._render()
        return True

    @property
    def title(self) -> str:
        return title_text(self.state, self.maps.num_layers, self.geom)

    @property
    def prediction(self) -> str:
        return prediction_text(self.maps.probs, self.classes, self.label)

    def current_map(self) -> np.ndarray:
        """The (g, g) map currently drawn."""
        return np.asarray(self._overlay.get_array())

    # ---------------- figure: built once, updated in place ----------------

    def _build_figure(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        self.fig = Figure(dpi=100)
        self.canvas = FigureCanvasAgg(self.fig)
        ax, cax = self.fig.add_axes((0, 0, 1, 1)), self.fig.add_axes((0, 0, 1, 1))
        self.ax, self._cax = ax, cax
        img = to_numpy_image(self.image)
        S = img.shape[0]
        self._base = ax.imshow(
            img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest", vmin=0, vmax=1
        )
        self._overlay = ax.imshow(
            np.zeros((self.geom.grid, self.geom.grid)),
            cmap=ATTN_CMAP,
            alpha=0.65,
            vmin=0,
            vmax=1,
            extent=(-0.5, S - 0.5, S - 0.5, -0.5),
            interpolation="nearest",
        )
        draw_patch_grid(ax, S, self.geom.patch_size, alpha=0.25)
        self._grid_lines = list(ax.lines)
        self._background = None  # blitting: the figure without the parts that change
        ax.set_xlim(-0.5, S - 0.5), ax.set_ylim(S - 0.5, -0.5)
        ax.set_xticks([]), ax.set_yticks([])
        p = self.geom.patch_size
        self._marker = Rectangle(
            (-0.5, -0.5), p, p, fill=False, edgecolor="#00e5ff", linewidth=2.5, visible=False
        )
        ax.add_patch(self._marker)
        self._cbar = self.fig.colorbar(self._overlay, cax=cax)
        self._cbar.set_label("attention weight")
        self._title = self.fig.text(0.5, 0.99, "", fontsize=13, ha="center", va="top")
        self._caption = self.fig.text(0.03, 0.015, "", fontsize=11, va="bottom", visible=False)
        self._layout(caption=False)

    def _layout(self, caption: bool):
        """Live view: image, colorbar, title. The static picture adds a caption underneath
        (prediction, top-3, share of the row on the prefix tokens), which the live view
        shows as HTML beside the image instead (less text to draw on every change)."""
        W, side, top = 4.95, 3.4, 0.62
        bottom = 0.85 if caption else 0.1
        H = bottom + side + top
        self.fig.set_size_inches(W, H)
        self.ax.set_position((0.15 / W, bottom / H, side / W, side / H))
        self._cax.set_position(((0.35 + side) / W, bottom / H, 0.18 / W, side / H))
        self._caption.set_position((0.15 / W, 0.08 / H))
        self._title.set_position((0.5, (H - 0.06) / H))
        self._caption.set_visible(caption)
        self._background = None
        self._cbar_cache = {}

    def snapshot_png(self) -> bytes:
        """A PNG of the current view with the caption: what a saved notebook shows."""
        self._layout(caption=True)
        try:
            self.canvas.draw()
            return self._png_bytes()
        finally:
            self._layout(caption=False)

    def _set_base_image(self):
        self._base.set_data(to_numpy_image(self.image))
        self._background = None

    def _dynamic_artists(self):
        return [self._overlay, *self._grid_lines, self._marker, self._title, self._cax]

    def _draw(self):
        """Redraw the live view: blit the static background (the image), then draw only
        the parts that change (overlay, grid, marker, title, colorbar)."""
        if self._background is None:
            dyn = self._dynamic_artists()
            visible = [a.get_visible() for a in dyn]
            for a in dyn:
                a.set_visible(False)
            self.canvas.draw()
            self._background = self.canvas.copy_from_bbox(self.fig.bbox)
            for a, v in zip(dyn, visible):
                a.set_visible(v)
        self.canvas.restore_region(self._background)
        for a in [self._overlay, *self._grid_lines, self._marker]:
            self.fig.draw_artist(a)
        self._draw_colorbar()
        self.fig.draw_artist(self._title)

    def _draw_colorbar(self):
        """The colorbar, from a cache of rendered colorbars keyed by (scale, label): its text
        is the slowest part to draw, and `nice_ceil` makes the same scales come back often."""
        key = (self._overlay.get_clim(), self._cax.get_ylabel())
        region = self._cbar_cache.get(key)
        if region is not None:
            self.canvas.restore_region(region)
            return
        self.fig.draw_artist(self._cax)
        if len(self._cbar_cache) >= 64:
            self._cbar_cache.clear()
        from matplotlib.transforms import Bbox

        box = self._cax.get_window_extent()
        W = self.fig.bbox.width
        self._cbar_cache[key] = self.canvas.copy_from_bbox(
            Bbox([[box.x0 - 3, box.y0 - 12], [W, box.y1 + 12]])
        )

    def _render(self):
        s, geom = self.state, self.geom
        amap = self.maps.map(s).numpy()
        self._overlay.set_data(amap)
        self._overlay.set_clim(0.0, nice_ceil(float(amap.max())))
        self._cbar.set_label("rollout weight" if s.mode == "rollout" else "attention weight")
        self._title.set_text(self.title)
        if s.query >= geom.num_prefix_tokens:
            r, c = divmod(s.query - geom.num_prefix_tokens, geom.grid)
            self._marker.set_xy((c * geom.patch_size - 0.5, r * geom.patch_size - 0.5))
            self._marker.set_visible(True)
        else:
            self._marker.set_visible(False)
        self._caption.set_text(self.caption)
        self._draw()
        self.png = self._png_bytes()
        if self._widget_ready():
            self._w_image.value = self.png
            self._w_info.value = self._info_html()
            self._w_msg.value = (
                f"<span style='color:#b35900'>{self.message}</span>" if self.message else ""
            )

    @property
    def share_text(self) -> str:
        """How much of the query's row the map holds, and how much went to prefix tokens."""
        geom = self.geom
        if not geom.num_prefix_tokens:
            return "the map holds the whole row (no prefix tokens)"
        prefix = "CLS" if geom.reg_tokens == 0 else "CLS + registers"
        if not geom.class_token:
            prefix = "registers"
        share = self.maps.prefix_share(self.state)
        return f"the map holds {100 * (1 - share):.0f}% of the row; {prefix}: {100 * share:.0f}%"

    @property
    def caption(self) -> str:
        return f"{self.source} · {self.prediction}\n{self.share_text}"

    def _info_html(self) -> str:
        return (
            f"<div style='font-size:13px'>{self.source}</div>"
            + prediction_html(self.maps.probs, self.classes, self.label)
            + f"<div style='font-size:13px;color:#555'>{self.share_text}</div>"
        )

    def _png_bytes(self) -> bytes:
        from PIL import Image

        w, h = self.canvas.get_width_height()
        rgba = np.asarray(self.canvas.buffer_rgba())
        buf = io.BytesIO()
        Image.fromarray(rgba[..., :3]).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    # ---------------- widgets ----------------

    def _widget_ready(self) -> bool:
        return getattr(self, "_widget", None) is not None

    @property
    def widget(self):
        """The ipywidgets box (built on first access)."""
        if self._widget is None:
            self._build_widget()
        return self._widget

    def _build_widget(self):
        import ipywidgets as W

        geom, maps, s = self.geom, self.maps, self.state
        self._syncing = False
        w, h = self.canvas.get_width_height()
        self._w_image = W.Image(
            value=self.png,
            format="png",
            layout=W.Layout(width=f"{w}px", height=f"{h}px", min_width=f"{w}px", flex="0 0 auto"),
        )
        self._w_image.add_class("ae-image")
        n = len(self.dataset)
        self._w_index = W.IntSlider(
            value=self.index, min=0, max=n - 1, description="image", continuous_update=False
        )
        self._w_index.add_class("ae-index")
        self._w_upload = W.FileUpload(accept="image/*", multiple=False, description="Your image")
        self._w_layer = W.IntSlider(
            value=s.layer, min=0, max=maps.num_layers - 1, description="layer"
        )
        self._w_layer.add_class("ae-layer")
        self._w_head = W.Dropdown(
            options=head_options(s.mode, maps.num_heads), value=s.head, description="heads"
        )
        self._w_head.add_class("ae-head")
        self._w_mode = W.ToggleButtons(
            options=[("raw attention", "raw"), ("rollout", "rollout")],
            value=s.mode,
            description="show",
        )
        self._w_mode.add_class("ae-mode")
        btn = dict(width="28px", height="24px", padding="0px", margin="0px")
        self._w_tokens = {}
        prefix_buttons = []
        for t in range(geom.num_prefix_tokens):
            label = query_label(t, geom)
            b = W.Button(
                description="CLS" if label == "CLS" else f"reg {label.split()[-1]}",
                tooltip=label,
                layout=W.Layout(width="auto", height="24px"),
            )
            prefix_buttons.append(b)
            self._w_tokens[t] = b
        cells = []
        for t in range(geom.num_prefix_tokens, geom.num_prefix_tokens + geom.grid**2):
            b = W.Button(description="", tooltip=query_label(t, geom), layout=W.Layout(**btn))
            cells.append(b)
            self._w_tokens[t] = b
        for t, b in self._w_tokens.items():
            b.add_class("ae-token")
            b.on_click(lambda _b, t=t: self._on_query(t))
        grid = W.GridBox(
            cells,
            layout=W.Layout(grid_template_columns=f"repeat({geom.grid}, 28px)", grid_gap="2px 2px"),
        )
        grid.add_class("ae-grid")
        self._w_info = W.HTML(self._info_html())
        self._w_msg = W.HTML("")
        self._w_msg.add_class("ae-message")
        query_box = W.VBox(
            [
                W.HTML(
                    "<b>query token</b>: whose attention is shown<br>(click a patch: the grid is the image's)"
                ),
                W.HBox(prefix_buttons),
                grid,
            ]
        )
        controls = W.VBox(
            [
                self._w_info,
                self._w_index,
                self._w_upload,
                self._w_layer,
                self._w_head,
                self._w_mode,
                query_box,
                self._w_msg,
            ],
            layout=W.Layout(margin="0px 0px 0px 12px", width="400px"),
        )
        self._widget = W.HBox(
            [self._w_image, controls],
            layout=W.Layout(flex_flow="row wrap", align_items="flex-start"),
        )
        self._widget.add_class("attention-explorer")
        self._sync_controls()
        self._w_index.observe(self._on_index, names="value")
        self._w_upload.observe(self._on_upload, names="value")
        self._w_layer.observe(lambda ch: self._on_control(layer=ch["new"]), names="value")
        self._w_head.observe(lambda ch: self._on_control(head=ch["new"]), names="value")
        self._w_mode.observe(lambda ch: self._on_control(mode=ch["new"]), names="value")

    def _sync_controls(self):
        """Make the widgets show self.state (without triggering redraws)."""
        if not self._widget_ready() or not hasattr(self, "_w_layer"):
            return
        s = self.state
        self._syncing = True
        try:
            opts = head_options(s.mode, self.maps.num_heads)
            if list(self._w_head.options) != opts:
                self._w_head.options = opts
            self._w_head.value = s.head
            self._w_layer.value = s.layer
            self._w_mode.value = s.mode
            if self._w_index.value != self.index:
                self._w_index.value = self.index
            for t, b in self._w_tokens.items():
                style = "warning" if t == s.query else ""
                if b.button_style != style:
                    b.button_style = style
        finally:
            self._syncing = False

    def _guard(self, fn, *args):
        """Run a callback; an error becomes a message in the widget, never a traceback."""
        if self._syncing:
            return
        try:
            fn(*args)
        except Exception as e:
            self.message = f"Something went wrong: {type(e).__name__}: {e}"
            if self._widget_ready():
                self._w_msg.value = f"<span style='color:#b00'>{self.message}</span>"

    def _on_control(self, **changes):
        self._guard(lambda: self.set(**changes))

    def _on_query(self, token: int):
        self._guard(lambda: self.set(query=token))

    def _on_index(self, change):
        self._guard(lambda: self.set(index=change["new"]))

    def _on_upload(self, change):
        def handle():
            files = parse_upload(change["new"])
            if files:
                name, data = files[-1]
                self.show_upload(name, data)

        self._guard(handle)

    # ---------------- display ----------------

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        """The live widget, a PNG of the current view (for readers without a kernel), text."""
        bundle = {
            "text/plain": repr(self),
            "image/png": base64.b64encode(self.snapshot_png()).decode("ascii"),
        }
        try:
            bundle.update(_widget_view_bundle(self.widget))
        except Exception:  # no widget frontend possible: the picture still shows
            pass
        return bundle

    def __repr__(self) -> str:
        s = self.state
        return (
            f"AttentionExplorer({self.source}; {s.mode} attention, layer {s.layer}, "
            f"{head_label(s.head)}, query {query_label(s.query, self.geom)}; "
            f"{self.prediction.splitlines()[0]})"
        )
