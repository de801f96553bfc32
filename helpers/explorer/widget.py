"""An interactive explorer of a ViT's attention: pick an image, a layer, a head, raw attention
or rollout, and a query token (CLS by default), and see where that token looks.

    explorer = AttentionExplorer(model, dataset, classes=CLASSES, index=0)
    explorer  # displays itself

Design, so it works in JupyterLab, Notebook 7, VS Code, Colab (ipywidgets 7.7 and 8) and in
a static page with no kernel:
- All maps of an image come from ONE forward pass with the attention switch on
  (`helpers.attention.get_attention`), plus the rollout of every layer.
- The view is one ES module, `view.js` beside this file, run by anywidget: it draws the
  picture (grey, under the heatmap), the colorbar and the controls in the browser from the
  image's precomputed maps, quantized to uint8 (`helpers.explorer.export`). Moving a
  control, or clicking a patch to make it the query, never waits for Python; the kernel
  computes the maps of a new test image or an upload and keeps `explorer.state` in step.
- Displayed, the explorer offers the live widget, the same view as self-contained HTML
  with the maps of a few test images (what nbconvert HTML and the site show: no kernel, no
  network), and a PNG of its current state (for renderers that strip scripts).

The logic (which map, title, prediction text) lives in plain functions and in
`AttentionMaps` (`helpers.explorer.maps`), uploads are parsed by `helpers.images`: all of it
is tested without a browser.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write
from ..images import UploadError, load_image_bytes
from ..model import as_images
from ..plots import ATTN_CMAP, draw_patch_grid, to_grey
from ..timm_adapter import adapt
from .export import (
    FUSIONS,
    LEVELS,
    STATIC_FUSIONS,
    STATIC_LEVELS,
    UPLOAD_CAUTION,
    asset,
    image_entry,
    meta,
    static_html,
    static_page,
)
from .maps import (
    AttentionMaps,
    ExplorerState,
    class_name,
    head_label,
    model_geometry,
    prediction_text,
    query_label,
    query_token,
    title_text,
    top_k,
    whole_number,
)


def _as_image(image) -> torch.Tensor:
    """One dataset image (C, H, W) as float in [0, 1]: uint8 (0..255) is scaled, as the model
    itself does (helpers.model.as_images), so a uint8 dataset shows as it is."""
    if not isinstance(image, (torch.Tensor, np.ndarray)):
        image = torch.as_tensor(image)
    return as_images(image)


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


def _enable_colab_widgets() -> None:
    """Colab draws third-party widgets (anywidget) only with its custom widget manager."""
    import importlib
    import sys

    if "google.colab" in sys.modules:
        try:
            importlib.import_module("google.colab.output").enable_custom_widget_manager()
        except Exception:  # an older Colab: the static view and the PNG still show
            pass


def _widget_class():
    """The anywidget class of the live view (imported on first use)."""
    global _ExplorerWidget
    if _ExplorerWidget is None:
        import anywidget
        import traitlets as t

        class ExplorerWidget(anywidget.AnyWidget):
            _esm = asset("view.js")
            _css = asset("view.css")
            meta = t.Dict().tag(sync=True)
            images = t.List().tag(sync=True)
            image = t.Int(0).tag(sync=True)  # which of `images` is shown
            index = t.Int(0).tag(sync=True)  # the test image's index; -1 for an upload
            layer = t.Int(0).tag(sync=True)
            head = t.Unicode("mean").tag(sync=True)
            mode = t.Unicode("raw").tag(sync=True)
            query = t.Int(0).tag(sync=True)
            scale = t.Unicode("map").tag(sync=True)
            message = t.Unicode("").tag(sync=True)

        ExplorerWidget.__module__ = __name__
        _ExplorerWidget = ExplorerWidget
    return _ExplorerWidget


_ExplorerWidget = None


class AttentionExplorer:
    """Interactive view of where a token (CLS by default) attends, layer by layer.

    model: a helpers VisionTransformer (or any model with `model(x, return_attention=True)`
    and a `cfg`), or a timm VisionTransformer. dataset: indexable, `dataset[i] -> (image,
    label)` with images (C, H, W) in [0, 1] (e.g. ShapesDataset("test")). Layers and heads
    count from 0, as in helpers.attention. scale: "shared" (one colour scale across the layers,
    as the notebooks' figures: a faint map looks faint) or "map" (each map to its own max).
    static_images: how many test images the kernel-free view carries (the shown one, then
    one per class).
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
        scale: str = "shared",
        static_images: int = 4,
    ):
        model = adapt(model).eval()
        self.model = model
        self.dataset = dataset
        self.classes = classes if classes is not None else getattr(dataset, "classes", None)
        index = self._check_index(index)
        self.static_images = whole_number(static_images, "static_images")
        if self.static_images < 1:
            raise ValueError("static_images must be at least 1 (the image shown).")
        self.geom = model_geometry(model, _as_image(dataset[index][0]))
        is_cls = isinstance(query, str) and query.strip().upper() == "CLS"
        if is_cls and not self.geom.class_token:
            query = (self.geom.grid // 2, self.geom.grid // 2)
        self.index = index
        self.image, self.label = self._dataset_item(self.index)
        self.source = f"test image #{self.index}"
        self.maps = AttentionMaps(model, self.image, self.geom)
        self.state = ExplorerState(
            layer, head, mode, query_token(query, self.geom), scale
        ).normalized(self.maps.num_layers, self.maps.num_heads)
        self.message = ""
        self.caution = ""
        self._raw_head = None  # a single head chosen in raw mode, restored after rollout
        self._fig = None  # the matplotlib picture, built on first use
        self._png = None
        self._widget = None  # built on first use, so the logic runs without a frontend

    # ---------------- pure state changes (no widgets needed) ----------------

    def _dataset_item(self, index: int):
        image, label = self.dataset[index]
        image = _as_image(image)
        return image, (int(label) if label is not None else None)

    def _check_index(self, index) -> int:
        """A dataset index as a non-negative int; -1 is the last image, as in Python lists."""
        index = whole_number(index, "the image index")
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

    SETTINGS = ("index", "layer", "head", "mode", "query", "scale")

    def set(self, **changes) -> AttentionExplorer:
        """Change the view: index, layer, head, mode, query ("CLS", (row, col) or a token),
        scale ("map" or "shared").

        All or nothing: every value is checked, and a new image's maps computed, before the
        view changes, so after an error the explorer shows exactly what it showed before.
        Switching to rollout with a single head shows the mean (rollout fuses the heads at
        every layer); switching back to raw brings that head back. Keeps the widget in step.
        Returns self, so a cell can end with `explorer.set(...)`.
        """
        unknown = sorted(set(changes) - set(self.SETTINGS))
        if unknown:
            raise TypeError(
                f"set() got unknown setting(s) {', '.join(unknown)}: "
                f"use {', '.join(self.SETTINGS)}."
            )
        state, raw_head = self._next_state(changes)
        item = self._load_index(changes["index"]) if "index" in changes else None
        maps = item[3] if item is not None else self.maps
        state = state.normalized(maps.num_layers, maps.num_heads)  # raises on a bad value
        if item is not None:
            self._show_item(*item)
        self.state, self._raw_head = state, raw_head
        self._changed()
        return self

    def _next_state(self, changes: dict) -> tuple[ExplorerState, object]:
        """The state after `changes` (not yet normalized), and the raw head to remember."""
        fields = {k: v for k, v in changes.items() if k != "index"}
        if "query" in fields:
            fields["query"] = query_token(fields["query"], self.geom)
        state = replace(self.state, **fields)
        raw_head = self._raw_head
        if state.mode == "rollout" and not isinstance(state.head, str):
            raw_head = state.head  # rollout shows the mean; this head comes back in raw
        elif "head" in changes:
            raw_head = None
        elif state.mode == "raw" and self.state.mode == "rollout" and raw_head is not None:
            state, raw_head = replace(state, head=raw_head), None
        return state, raw_head

    def _load_index(self, index) -> tuple[int, torch.Tensor, int | None, AttentionMaps]:
        """Everything a new image needs (one forward pass), without changing the view."""
        index = self._check_index(index)
        image, label = self._dataset_item(index)
        return index, image, label, AttentionMaps(self.model, image, self.geom)

    def _show_item(self, index, image, label, maps) -> None:
        self.index, self.image, self.label, self.maps = index, image, label, maps
        self.source = f"test image #{self.index}"
        self.message = self.caution = ""
        self._images_changed = True

    def show_index(self, index: int) -> None:
        """Show test image `index` (-1: the last): one forward pass, all maps recomputed."""
        self.set(index=index)

    def show_upload(self, name: str, data: bytes | None = None) -> bool:
        """Show an uploaded file, with a caution on what the model knows; on a bad file, keep
        the view and set a message (a bad file never raises). `data` is the file's bytes: a
        path instead is a TypeError that says how to read them."""
        given = name if data is None else data
        if isinstance(given, os.PathLike) or (isinstance(given, str) and given is data):
            raise TypeError(
                f"show_upload wants the bytes of an image, not a path ({str(given)!r}): "
                f"read them with show_upload(name, Path(p).read_bytes()), e.g. "
                f'show_upload("photo.png", Path("photo.png").read_bytes()).'
            )
        if data is None:
            raise TypeError(
                f"show_upload(name, data) got only {name!r}: it needs the image's bytes as data, e.g. "
                'show_upload("photo.png", Path("photo.png").read_bytes()).'
            )
        try:
            image = load_image_bytes(data, self.geom.image_size, self.geom.channels)
            maps = AttentionMaps(self.model, image, self.geom)
        except UploadError as e:
            self.message = f"{name}: {e}"
            self._changed(view=False)
            return False
        except Exception as e:  # anything unexpected still ends as a message
            self.message = f"{name}: could not use this file ({type(e).__name__})."
            self._changed(view=False)
            return False

        self.image, self.label, self.maps, self.index = image, None, maps, None
        self.source = f"your image: {name}"
        S = self.geom.image_size
        self.message = f"Showing {name}, cropped to a square and resized to {S}x{S}."
        classes = ", ".join(map(str, self.classes)) if self.classes is not None else "its classes"
        self.caution = UPLOAD_CAUTION.format(size=S, classes=classes)
        self._images_changed = True
        self._changed()
        return True

    @property
    def title(self) -> str:
        return title_text(self.state, self.maps.num_layers, self.geom)

    @property
    def prediction(self) -> str:
        return prediction_text(self.maps.probs, self.classes, self.label)

    def current_map(self) -> np.ndarray:
        """The (g, g) map currently shown."""
        return self.maps.map(self.state).numpy()

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

    def _changed(self, view: bool = True) -> None:
        """After a change: the picture is stale, the widget follows."""
        if view:
            self._png = None
        if self._widget_ready():
            self._push()

    # ---------------- the picture (matplotlib): for the PNG fallback ----------------

    @property
    def png(self) -> bytes:
        """A PNG of the current view (picture, heatmap, colorbar, title), drawn on demand."""
        if self._png is None:
            self._png = self._draw_png(caption=False)
        return self._png

    def snapshot_png(self) -> bytes:
        """A PNG of the current view with a caption (prediction, share of the row): what a
        renderer without scripts shows."""
        return self._draw_png(caption=True)

    def _build_figure(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        self._fig = fig = Figure(dpi=100)
        self.canvas = FigureCanvasAgg(fig)
        self.ax, self._cax = fig.add_axes((0, 0, 1, 1)), fig.add_axes((0, 0, 1, 1))
        S = self.geom.image_size
        self._base = self.ax.imshow(
            np.zeros((S, S)), cmap="gray", vmin=0, vmax=1, interpolation="nearest"
        )
        self._overlay = self.ax.imshow(
            np.zeros((self.geom.grid, self.geom.grid)),
            cmap=ATTN_CMAP,
            alpha=0.7,  # as helpers.plots.show_attention and the browser view
            vmin=0,
            vmax=1,
            extent=(-0.5, S - 0.5, S - 0.5, -0.5),
            interpolation="nearest",
        )
        draw_patch_grid(self.ax, S, self.geom.patch_size, alpha=0.25)
        self.ax.set_xlim(-0.5, S - 0.5), self.ax.set_ylim(S - 0.5, -0.5)
        self.ax.set_xticks([]), self.ax.set_yticks([])
        p = self.geom.patch_size
        self._marker = Rectangle(
            (-0.5, -0.5), p, p, fill=False, edgecolor="#00e5ff", linewidth=2.5, visible=False
        )
        self.ax.add_patch(self._marker)
        self._cbar = fig.colorbar(self._overlay, cax=self._cax)
        self._title = fig.text(0.5, 0.99, "", fontsize=13, ha="center", va="top")
        self._caption = fig.text(0.03, 0.015, "", fontsize=11, va="bottom")

    def _draw_png(self, caption: bool) -> bytes:
        if self._fig is None:
            self._build_figure()
        s, geom = self.state, self.geom
        W, side, top = 4.95, 3.4, 0.62
        bottom = 0.85 if caption else 0.1
        H = bottom + side + top
        self._fig.set_size_inches(W, H)
        self.ax.set_position((0.15 / W, bottom / H, side / W, side / H))
        self._cax.set_position(((0.35 + side) / W, bottom / H, 0.18 / W, side / H))
        self._caption.set_position((0.15 / W, 0.08 / H))
        self._title.set_position((0.5, (H - 0.06) / H))
        self._caption.set_visible(caption)
        self._base.set_data(to_grey(self.image))
        self._overlay.set_data(self.current_map())
        self._overlay.set_clim(0.0, self.maps.vmax(s))
        what = "rollout weight" if s.mode == "rollout" else "attention weight"
        scale = "scale shared across layers" if s.scale == "shared" else "scaled to this map"
        self._cbar.set_label(f"{what} · {scale}")
        self._title.set_text(self.title)
        if s.query >= geom.num_prefix_tokens:
            r, c = divmod(s.query - geom.num_prefix_tokens, geom.grid)
            self._marker.set_xy((c * geom.patch_size - 0.5, r * geom.patch_size - 0.5))
            self._marker.set_visible(True)
        else:
            self._marker.set_visible(False)
        self._caption.set_text(self.caption)
        self.canvas.draw()
        from PIL import Image

        buf = io.BytesIO()
        rgba = np.asarray(self.canvas.buffer_rgba())
        # 256 colours (a palette PNG) look the same here and weigh a third: it ships twice
        picture = Image.fromarray(rgba[..., :3]).quantize(256, dither=Image.Dither.NONE)
        picture.save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    # ---------------- data for the browser view ----------------

    def _prediction_fields(self, maps, label, source: str, short: str) -> dict:
        top = top_k(maps.probs, self.classes, 3)
        return {
            "headline": prediction_text(maps.probs, self.classes, label).split("\n")[0],
            "top": [[c, round(p, 4)] for c, p in top],
            "short": short,
            "source": source,
        }

    def _current_entry(self, fusions=None) -> dict:

        short = f"#{self.index}" if self.index is not None else "yours"
        pred = self._prediction_fields(self.maps, self.label, self.source, short)
        return image_entry(
            self.maps, self.image, pred.pop("source"), pred, fusions or FUSIONS, self.caution
        )

    def _meta(self, live: bool, fusions=None, levels=None) -> dict:

        try:
            n = len(self.dataset)
        except TypeError:
            n = 0
        return meta(
            self.geom, self.maps.num_layers, self.maps.num_heads, self.classes,
            fusions or FUSIONS, live=live, n=n, levels=levels or LEVELS,
        )  # fmt: skip

    def _state_traits(self) -> dict:
        s = self.state
        return {
            "layer": s.layer,
            "head": str(s.head),
            "mode": s.mode,
            "query": s.query,
            "scale": s.scale,
        }

    def static_indices(self) -> list[int]:
        """The test images of the kernel-free view: the one shown (or 0 after an upload),
        then the first test image of each class not yet in, up to `static_images`."""
        first = self.index if self.index is not None else 0
        chosen, seen = [first], set()
        labels = getattr(self.dataset, "labels", None)
        try:
            n = len(self.dataset)
        except TypeError:  # no length: the image shown only
            return chosen
        if self.label is not None:
            seen.add(self.label)
        for i in range(n):
            if len(chosen) >= self.static_images:
                break
            label = int(labels[i]) if labels is not None else self._dataset_item(i)[1]
            if i != first and label not in seen:
                chosen.append(i)
                seen.add(label)
        return chosen

    def static_html(self, indices=None, png: bytes | None = None) -> str:
        """The kernel-free view: self-contained HTML with the maps of test images `indices`
        (default `static_indices()`), quantized; starts with a PNG of the current view."""

        images = []
        for i in self.static_indices() if indices is None else indices:
            i = self._check_index(i)
            image, label = self._dataset_item(i)
            maps = AttentionMaps(self.model, image, self.geom)
            short = f"#{i} {class_name(self.classes, label)}" if label is not None else f"#{i}"
            pred = self._prediction_fields(maps, label, f"test image #{i}", short)
            source = pred.pop("source")
            images.append(image_entry(maps, image, source, pred, STATIC_FUSIONS, "", STATIC_LEVELS))
        state = self._state_traits()
        if state["head"] not in STATIC_FUSIONS and not state["head"].isdigit():
            state["head"] = STATIC_FUSIONS[0]  # "max" is not shipped
        state["image"], state["index"] = 0, -1
        return static_html(
            self._meta(live=False, fusions=STATIC_FUSIONS, levels=STATIC_LEVELS),
            images,
            state,
            png if png is not None else self.snapshot_png(),
        )

    def save_html(self, path, indices=None):
        """Write the kernel-free view as a whole HTML page (no kernel, no network needed:
        open it from disk or put it on a site). Returns the path. A folder, or a name that
        does not end in .html, is refused before anything is written."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file name such as 'explorer.html', got {path!r}.")
        target = Path(path)
        if target.is_dir():
            raise ValueError(
                f"{str(path)!r} is a folder, not a file: pass a file name ending in .html, "
                f"e.g. {str(target / 'explorer.html')!r} (nothing was written)."
            )
        if target.suffix.lower() not in (".html", ".htm"):
            raise ValueError(
                f"{str(path)!r} does not end in .html: pass a file name such as "
                f"{str(target.with_suffix('.html'))!r}, which a browser opens as a page."
            )
        return atomic_write(path, static_page(self.static_html(indices)).encode("utf-8"))

    # ---------------- the live widget ----------------

    def _widget_ready(self) -> bool:
        return getattr(self, "_widget", None) is not None

    @property
    def widget(self):
        """The live view: an anywidget (built on first access)."""
        if self._widget is None:
            _enable_colab_widgets()
            w = _widget_class()(meta=self._meta(live=True), images=[self._current_entry()])
            self._widget = w
            self._syncing = False
            self._images_changed = False
            self._push()
            w.observe(self._on_trait, names=["layer", "head", "mode", "query", "scale", "index"])
            w.on_msg(self._on_msg)
        return self._widget

    def _push(self) -> None:
        """Make the widget show the explorer's state (without echoing back into set())."""
        w = self._widget
        self._syncing = True
        try:
            with w.hold_sync():
                if getattr(self, "_images_changed", False):
                    w.images = [self._current_entry()]
                    w.image = 0
                    self._images_changed = False
                for k, v in self._state_traits().items():
                    setattr(w, k, v)
                w.index = self.index if self.index is not None else -1
                w.message = self.message
        finally:
            self._syncing = False

    def _guard(self, fn) -> None:
        """Run a callback; an error becomes a message in the widget, never a traceback."""
        try:
            fn()
        except Exception as e:
            self.message = f"Something went wrong: {type(e).__name__}: {e}"
            self._push()

    def _on_trait(self, change) -> None:
        """A control moved in the browser: follow it (the view has drawn it already)."""
        if self._syncing:
            return
        name, new = change["name"], change["new"]
        if name == "index":
            if new >= 0 and new != self.index:
                self._guard(lambda: self.set(index=new))
            return

        def follow():  # read every control: the view may have changed several at once
            w = self._widget
            state = ExplorerState(w.layer, w.head, w.mode, w.query, w.scale).normalized(
                self.maps.num_layers, self.maps.num_heads
            )
            if name == "head":
                self._raw_head = None
            self.state = state
            self._png = None
            self._push()  # a normalized value (rollout of a single head -> mean) goes back

        self._guard(follow)

    def _on_msg(self, _widget, content, buffers) -> None:
        if isinstance(content, dict) and content.get("type") == "upload":
            name = str(content.get("name") or "upload")
            data = bytes(buffers[0]) if buffers else b""
            self._guard(lambda: self.show_upload(name, data))

    # ---------------- display ----------------

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        """The live widget; the kernel-free view (HTML + JS, for pages without a kernel:
        nbconvert, the site); a PNG of the current view (for renderers that strip scripts)."""
        png = self.snapshot_png()
        bundle = {
            "text/plain": repr(self),
            "image/png": base64.b64encode(png).decode("ascii"),
            "text/html": self.static_html(png=png),
        }
        try:
            bundle.update(_widget_view_bundle(self.widget))
        except Exception:  # no widget frontend possible: the static view still shows
            pass
        return bundle

    def __repr__(self) -> str:
        s = self.state
        return (
            f"AttentionExplorer({self.source}; {s.mode} attention, layer {s.layer}, "
            f"{head_label(s.head)}, query {query_label(s.query, self.geom)}; "
            f"{self.prediction.splitlines()[0]})"
        )
