"""The attention explorer's browser view and its data, shared by the live widget and the
kernel-free export.

One view, `view.js` (an ES module in the anywidget form, `export default {render}`),
draws the picture, the heatmap, the colorbar and the controls from precomputed maps. Two
hosts feed it the same data:

- the live widget (`helpers.explorer.widget.AttentionExplorer`): an anywidget model whose
  traits hold the current image's maps and the state (layer, head, mode, query, scale); the kernel
  computes the maps of a new image or an upload;
- the static export (`static_html`): the maps of a fixed set of test images embedded in one
  self-contained HTML fragment (the view's code, its CSS and the data inlined: no network,
  no CDN), which works in nbconvert HTML, a notebook viewer that runs scripts, and a plain
  page opened from disk. It starts with a PNG of the explorer, so renderers that strip
  scripts still show a picture.

Data of one image (`image_entry`): every map the view can show, quantized to `levels` + 1
steps in uint8. A map (one layer, one head or head fusion, one mode, one query token) is
stored as round(levels * value / max) with its max as float32, so a near-uniform map (all
values ~1/64) keeps its detail; the view rebuilds value = q / levels * max. The live widget
sends 255 levels; the static export 63 (LIGHT_LEVELS: a third less to ship after deflate,
and 64 steps per map are more than the eye tells apart on the colormap). The share of the
query's row that went to prefix tokens is stored per map as float32. The static export
deflates each array (zlib) and writes it as base64 text.
"""

from __future__ import annotations

import base64
import html
import json
import uuid
import zlib
from importlib import resources

import numpy as np
import torch

from ..plots import ATTN_CMAP, to_grey
from .maps import query_label

# Offered in both modes (fusions over heads); raw attention adds every single head.
FUSIONS = ("mean", "max")
STATIC_FUSIONS = ("mean",)  # the export keeps the mean only: a sixth less to ship
LEVELS, STATIC_LEVELS = 255, 63  # quantization steps: live widget, static export
UPLOAD_CAUTION = (
    "The model has only seen {size}x{size} pictures of six shapes ({classes}) in colour "
    "on a dark background. Anything else (a photo, a drawing) still gets one of those six "
    "names, often with high confidence: read its answer as the closest shape it knows."
)


def asset(name: str) -> str:
    """The text of a file shipped beside this module (view.js, view.css)."""
    return resources.files("helpers.explorer").joinpath(name).read_text(encoding="utf-8")


def colormap_lut(name: str = ATTN_CMAP) -> bytes:
    """The series' attention colormap as 256 RGB triples (768 bytes)."""
    from matplotlib import colormaps

    rgb = colormaps[name](np.linspace(0, 1, 256))[:, :3]
    return np.round(255 * rgb).astype(np.uint8).tobytes()


def quantize(maps, levels: int = LEVELS) -> tuple[bytes, bytes]:
    """(..., g*g) weights >= 0 (array or tensor) -> uint8 bytes of round(levels * v / max)
    per map, and the max of each map as float32 bytes. A map of zeros keeps max 0."""
    if not 1 <= levels <= 255:
        raise ValueError(f"levels must be 1..255 (uint8); got {levels}.")
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().float().cpu().numpy()
    m = np.asarray(maps, dtype=np.float32)
    top = m.max(-1, keepdims=True)
    q = np.round(levels * np.divide(m, top, out=np.zeros_like(m), where=top > 0))
    return q.astype(np.uint8).tobytes(), top[..., 0].astype(np.float32).tobytes()


def dequantize(q: bytes, top: bytes, shape: tuple[int, ...], levels: int = LEVELS) -> np.ndarray:
    """The inverse of `quantize`, as the view computes it: (..., g*g) float32."""
    qa = np.frombuffer(q, dtype=np.uint8).reshape(shape).astype(np.float32)
    return qa / levels * np.frombuffer(top, dtype=np.float32).reshape(shape[:-1] + (1,))


def head_keys(num_heads: int, fusions=FUSIONS) -> tuple[list[str], list[str]]:
    """The keys of the heads stored for raw attention and for rollout."""
    return [*fusions, *map(str, range(num_heads))], list(fusions)


def image_entry(
    maps, image, source: str, prediction: dict, fusions=FUSIONS, caution="", levels=LEVELS
) -> dict:
    """Everything the view needs for one image. maps: a helpers.explorer.widget.AttentionMaps.

    raw: (layers, heads keys, T, g*g) uint8; roll: (layers, fusions, T, g*g) uint8; *_max and
    *_share: float32 per map. The picture goes as its grey luminance, uint8 (S*S)."""
    P = maps.geom.num_prefix_tokens
    raw_keys, roll_keys = head_keys(maps.num_heads, fusions)
    # numpy, not torch: small arrays, and no thread pool to wake on a busy machine
    attn = maps.attn[:, 0].detach().float().cpu().numpy()  # (L, H, T, T)
    fused = {"mean": attn.mean(1), "max": attn.max(1)}  # as helpers.attention.fuse_heads
    raw = np.stack([fused[k] if k in fused else attn[:, int(k)] for k in raw_keys], 1)
    roll = np.stack([maps.rollouts[k][:, 0].float().cpu().numpy() for k in roll_keys], 1)
    entry = {"source": source, "caution": caution, **prediction}
    for name, rows in (("raw", raw), ("roll", roll)):  # (L, K, T, T)
        patches = rows[..., P:]
        share = 1.0 - patches.sum(-1) / rows.sum(-1)
        entry[name], entry[f"{name}_max"] = quantize(patches, levels)
        entry[f"{name}_share"] = share.astype(np.float32).tobytes()
    grey = np.round(255 * to_grey(image)).astype(np.uint8)
    entry["pixels"] = grey.tobytes()
    return entry


def meta(
    geom, num_layers, num_heads, classes, fusions=FUSIONS, live=True, n=0, levels=LEVELS
) -> dict:
    """What does not change with the image: geometry, heads, colormap, class names."""

    raw_keys, roll_keys = head_keys(num_heads, fusions)
    return {
        "image_size": geom.image_size,
        "patch_size": geom.patch_size,
        "grid": geom.grid,
        "prefix": [query_label(t, geom) for t in range(geom.num_prefix_tokens)],
        "num_layers": num_layers,
        "raw_heads": raw_keys,
        "roll_heads": roll_keys,
        "classes": [str(c) for c in classes] if classes is not None else [],
        "cmap": colormap_lut(),
        "live": live,
        "dataset_size": n,
        "levels": levels,
    }


def _jsonable(value):
    """bytes -> {"z": base64 of their zlib deflate} (the view inflates them with the
    browser's DecompressionStream), recursively."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"z": base64.b64encode(zlib.compress(bytes(value), 9)).decode("ascii")}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def static_html(meta: dict, images: list[dict], state: dict, png: bytes | None = None) -> str:
    """One self-contained HTML fragment: the view's CSS and code, the data, and a PNG shown
    until the script runs (or forever where scripts are stripped). No network access."""
    uid = f"cls-explorer-{uuid.uuid4().hex[:12]}"
    data = json.dumps(
        {"meta": _jsonable(meta), "images": _jsonable(images), "state": state},
        separators=(",", ":"),
    ).replace("</", "<\\/")  # never close the script element early
    view = asset("view.js").replace("export default", "const view =", 1)
    fallback = (
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" '
        'alt="The attention explorer: a test image with its attention map" '
        'style="max-width:100%">'
        if png
        else ""
    )
    return (
        f'<div id="{uid}" class="cls-explorer-static">{fallback}</div>\n'
        f"<style>{asset('view.css')}</style>\n"
        f'<script type="module">\n{view}\n'
        f"const data = await view.inflate({data});\n"
        f'const el = document.getElementById("{uid}");\n'
        "if (el && !el.dataset.drawn) { el.dataset.drawn = '1'; el.textContent = '';\n"
        "  view.render({ model: view.staticModel(data), el }); }\n"
        "</script>\n"
    )


def static_page(fragment: str, title: str = "Inside the CLS token: attention explorer") -> str:
    """A whole HTML page around a `static_html` fragment, to open from disk."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>\n"
        f"<body style='font-family:sans-serif;margin:16px'>\n{fragment}</body></html>\n"
    )
