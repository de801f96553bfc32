"""The attention explorer's logic, as a reader would drive it (no browser needed)."""

import base64
import io
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.attention import cls_attention, get_attention, rollout, token_map
from helpers.data import CLASSES, ShapesDataset
from helpers.explorer.maps import (
    ExplorerState,
    model_geometry,
    prediction_text,
    query_label,
    query_token,
    title_text,
)
from helpers.explorer.widget import AttentionExplorer
from helpers.model import VisionTransformer
from helpers.timm_adapter import timm_kwargs
from tests.test_images import png_bytes


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models, batches of a few images: threads only add overhead on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    return ShapesDataset("test", n=20)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VisionTransformer(embed_dim=16, depth=2, num_heads=2).eval()


@pytest.fixture
def explorer(model, data):
    return AttentionExplorer(model, data, classes=CLASSES, index=3)


# ---------------- the map shown is the one helpers.attention gives ----------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"layer": 0},
        {"head": 1},
        {"head": "max"},
        {"query": (2, 5)},
        {"mode": "rollout"},
        {"mode": "rollout", "head": "max", "layer": 0, "query": (7, 0)},
    ],
)
def test_shown_map_equals_helpers_attention(explorer, model, data, changes):
    explorer.set(**changes)
    s = explorer.state
    image, _ = data[3]
    _, attn = get_attention(model, image[None])
    if s.mode == "raw":
        expected = cls_attention(attn, s.layer, s.head, 1, s.query)[0]
    else:
        expected = token_map(rollout(attn, s.head)[s.layer, 0, s.query])
    np.testing.assert_allclose(explorer.current_map(), expected.numpy(), rtol=1e-6)
    assert explorer.current_map().shape == (8, 8)


def test_every_control_changes_the_map_and_the_title(explorer):
    seen = {explorer.current_map().tobytes(): explorer.title}
    pngs = {explorer.png}
    for changes in [{"layer": 0}, {"head": 1}, {"query": (4, 4)}, {"mode": "rollout"}]:
        explorer.set(**changes)
        key = explorer.current_map().tobytes()
        assert key not in seen, f"{changes} did not change the map"
        assert explorer.title not in seen.values(), f"{changes} did not change the title"
        seen[key] = explorer.title
        pngs.add(explorer.png)
    assert len(pngs) == 5  # the picture was redrawn each time


def test_browser_controls_drive_the_state(explorer):
    """The view changes the widget's traits (as the browser does); the explorer follows."""
    w = explorer.widget
    w.layer = 0
    assert explorer.state.layer == 0 and "layer 0" in explorer.title
    w.head = "1"
    assert explorer.state.head == 1 and "head 1" in explorer.title
    w.query = 1 + 2 * 8 + 3  # a click on the patch at row 2, col 3
    assert explorer.state.query == 20 and "patch (2, 3)" in explorer.title
    w.mode = "rollout"  # a single head cannot be rolled out: the mean, sent back to the view
    assert explorer.state.head == "mean" and "rollout" in explorer.title.lower()
    assert w.head == "mean"
    assert explorer.state.scale == "shared"  # the default: one scale, as the notebooks' figures
    w.scale = "map"
    assert explorer.state.scale == "map"
    w.query = 0  # back to CLS
    assert "of CLS" in explorer.title
    before = explorer.current_map().copy()
    w.index = 7  # the view asks for test image #7: the kernel computes its maps
    assert explorer.index == 7 and "#7" in explorer.caption
    assert w.images[0]["source"] == "test image #7" and w.image == 0
    assert not np.array_equal(before, explorer.current_map())
    w.layer = 99  # a bad value from a view: a message, never a traceback
    assert "layer 99" in w.message and explorer.state.layer != 99


def test_code_changes_reach_the_view(explorer):
    w = explorer.widget
    explorer.set(layer=0, head=1, query=(3, 4), scale="map")
    assert (w.layer, w.head, w.query, w.scale) == (0, "1", 1 + 3 * 8 + 4, "map")
    explorer.set(index=5)
    assert w.index == 5 and w.images[0]["source"] == "test image #5"


def test_rollout_keeps_the_chosen_head_for_raw(explorer):
    explorer.set(head=1, mode="rollout")
    assert explorer.state.head == "mean"
    explorer.set(mode="raw")
    assert explorer.state.head == 1, "the head chosen in raw mode comes back"
    explorer.set(mode="rollout", head="max")
    explorer.set(mode="raw")
    assert explorer.state.head == "max"


def test_scale_this_map_or_shared_across_layers(explorer):
    from helpers.explorer.maps import nice_ceil

    explorer.set(layer=1, scale="map")
    assert explorer.maps.vmax(explorer.state) == nice_ceil(explorer.current_map().max())
    explorer.set(scale="shared")
    tops = [explorer.set(layer=k).current_map().max() for k in range(2)]
    assert explorer.maps.vmax(explorer.state) == nice_ceil(max(tops))
    with pytest.raises(ValueError, match="scale"):
        explorer.set(scale="log")


def test_image_change_runs_one_forward_and_keeps_one_figure(explorer, monkeypatch):
    import helpers.explorer.maps as hw  # AttentionMaps runs the model

    calls = []
    real = hw.get_attention
    monkeypatch.setattr(hw, "get_attention", lambda *a: calls.append(1) or real(*a))
    explorer.png  # noqa: B018 (draws the picture: builds its figure)
    fig = explorer._fig
    explorer.set(index=5)
    assert len(calls) == 1
    for kw in [{"layer": 0}, {"head": "max"}, {"mode": "rollout"}, {"query": (1, 1)}]:
        explorer.set(**kw)
    assert len(calls) == 1, "changing a control must not run the model again"
    explorer.png  # noqa: B018
    assert explorer._fig is fig and len(fig.axes) == 2  # image + one colorbar, no new figures


def test_state_normalization_and_errors():
    s = ExplorerState(layer=-1, head=1, mode="rollout").normalized(num_layers=4, num_heads=2)
    assert (s.layer, s.head) == (3, "mean")
    with pytest.raises(ValueError, match="layer 4"):
        ExplorerState(layer=4).normalized(4, 2)
    with pytest.raises(ValueError, match="head 5"):
        ExplorerState(layer=0, head=5).normalized(4, 2)
    with pytest.raises(ValueError, match="mode"):
        ExplorerState(layer=0, mode="flow").normalized(4, 2)


def test_query_tokens_and_labels(model):
    geom = model_geometry(model)
    assert query_token("CLS", geom) == 0 and query_label(0, geom) == "CLS"
    assert query_token((0, 0), geom) == 1 and query_label(1, geom) == "patch (0, 0)"
    assert query_token((7, 7), geom) == 64 and query_label(64, geom) == "patch (7, 7)"
    with pytest.raises(ValueError, match="outside"):
        query_token((8, 0), geom)
    reg = model_geometry(VisionTransformer(embed_dim=16, depth=1, num_heads=2, reg_tokens=2))
    assert query_token(("reg", 1), reg) == 2 and query_label(2, reg) == "register 1"
    assert query_token((0, 0), reg) == 3


def test_title_says_what_is_shown(model):
    geom = model_geometry(model)
    t = title_text(ExplorerState(layer=1, head=0, mode="raw", query=0), 2, geom)
    assert t == "Raw attention of CLS\nlayer 1 of 0–1, head 0"
    t = title_text(ExplorerState(layer=0, head="max", mode="rollout", query=10), 2, geom)
    assert "rollout" in t.lower() and "patch (1, 1)" in t and "max over heads" in t
    assert "layer 0 only (of 0–1)" in t and "layers 0–0" not in t
    t = title_text(ExplorerState(layer=1, mode="rollout"), 2, geom)
    assert t == "Attention rollout of CLS\nlayers 0–1 (of 0–1), mean over heads"


def test_prediction_text():
    probs = torch.tensor([0.05, 0.7, 0.02, 0.2, 0.02, 0.01])
    text = prediction_text(probs, CLASSES, label=1)
    assert text.splitlines()[0] == "prediction: disk (70.0%) · true: disk ✓"
    assert text.splitlines()[1] == "top-3: disk 70.0%, plus 20.0%, square 5.0%"
    assert "true: ring ✗" in prediction_text(probs, CLASSES, label=4)
    assert "true" not in prediction_text(probs, CLASSES)  # an upload has no label
    assert prediction_text(probs, None).startswith("prediction: class 1")


def test_explorer_prediction_matches_the_model(explorer, model, data):
    image, label = data[3]
    probs = model(image[None]).softmax(-1)[0]
    top = CLASSES[int(probs.argmax())]
    assert explorer.prediction.startswith(f"prediction: {top} ({100 * probs.max():.1f}%)")
    assert f"true: {CLASSES[label]}" in explorer.prediction


# ---------------- uploads ----------------


def test_upload_in_the_widget_never_raises(explorer):
    w = explorer.widget
    before = explorer.current_map().copy()
    assert not explorer.show_upload("notes.txt", b"hello")
    assert "notes.txt" in explorer.message and "not an image" in explorer.message
    assert "not an image" in w.message
    np.testing.assert_array_equal(before, explorer.current_map())  # view unchanged
    content = png_bytes("RGBA", size=(64, 48), color=(255, 255, 255, 255))
    assert explorer.show_upload("white.png", content)
    assert explorer.label is None and "your image: white.png" in explorer.caption
    assert "true:" not in explorer.prediction
    assert w.index == -1, "the image number does not stay on the old test image"
    caution = w.images[0]["caution"]
    assert "six shapes" in caution and "square" in caution and "confidence" in caution
    # through the view's message, as the browser sends a chosen file
    explorer._on_msg(w, {"type": "upload", "name": "bad.bin"}, [memoryview(b"\x00\x01")])
    assert "bad.bin" in w.message
    # the same file again, after going back to a test image, is shown again
    explorer.set(index=2)
    assert w.images[0]["caution"] == "" and w.index == 2
    explorer._on_msg(w, {"type": "upload", "name": "white.png"}, [memoryview(content)])
    assert "white.png" in explorer.source and w.index == -1


# ---------------- display: live widget + static picture ----------------


def test_mimebundle_has_widget_view_static_view_and_png(explorer):
    bundle = explorer._repr_mimebundle_()
    assert set(bundle) == {
        "text/plain",
        "text/html",
        "image/png",
        "application/vnd.jupyter.widget-view+json",
    }
    assert (
        bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    )
    png = base64.b64decode(bundle["image/png"])
    img = Image.open(io.BytesIO(png))
    assert img.size[0] >= 400 and img.size[1] > Image.open(io.BytesIO(explorer.png)).size[1]
    assert "AttentionExplorer(test image #3" in bundle["text/plain"]
    html = bundle["text/html"]
    assert bundle["image/png"] in html, "the static view starts as the PNG (scripts stripped)"
    assert '<script type="module">' in html and "DecompressionStream" in html
    assert "http://" not in html and "https://" not in html, "no network: nothing to fetch"
    assert "import " not in html.split("<script", 1)[1], "no module to load: all inlined"
    # the picture is drawn from the current state, not kept from before
    explorer.set(layer=0)
    assert explorer.snapshot_png() != png


def test_static_view_carries_every_map_quantized(explorer, data):
    """The kernel-free view holds, for each image, every layer, head (and mean), mode and
    query token; the maps it rebuilds from uint8 are the model's within a quantization step."""
    import json
    import re
    import zlib

    from helpers.explorer.export import dequantize

    html = explorer.static_html(indices=[3, 5])
    payload = re.search(r"view\.inflate\((\{.*\})\);", html).group(1)
    blob = json.loads(payload.replace("<\\/", "</"))
    meta, images = blob["meta"], blob["images"]
    assert meta["raw_heads"] == ["mean", "0", "1"] and meta["roll_heads"] == ["mean"]
    assert [im["source"] for im in images] == ["test image #3", "test image #5"]
    assert meta["live"] is False

    def unpack(field):
        return zlib.decompress(base64.b64decode(field["z"]))

    L, T, G = 2, 65, 64
    im = images[1]
    n = meta["levels"]
    assert n == 63
    raw = dequantize(unpack(im["raw"]), unpack(im["raw_max"]), (L, 3, T, G), n)
    roll = dequantize(unpack(im["roll"]), unpack(im["roll_max"]), (L, 1, T, G), n)
    explorer.set(index=5)
    for layer, k, head, q in [(0, 0, "mean", 0), (1, 2, 1, 17), (1, 1, 0, 64)]:
        explorer.set(layer=layer, head=head, query=q, mode="raw")
        want = explorer.current_map().ravel()
        np.testing.assert_allclose(raw[layer, k, q], want, atol=want.max() / (2 * n) + 1e-7)
    explorer.set(layer=1, mode="rollout", head="mean", query=9)
    want = explorer.current_map().ravel()
    np.testing.assert_allclose(roll[1, 0, 9], want, atol=want.max() / (2 * n) + 1e-7)
    share = np.frombuffer(unpack(im["roll_share"]), dtype=np.float32).reshape(L, 1, T)
    assert share[1, 0, 9] == pytest.approx(explorer.maps.prefix_share(explorer.state), abs=1e-5)


def test_live_view_data_holds_the_max_over_heads_too(explorer):
    import zlib

    from helpers.explorer.export import _jsonable, dequantize

    explorer.set(layer=1, head="max", query=(4, 1))
    entry = _jsonable(explorer._current_entry())

    def unpack(field):
        return zlib.decompress(base64.b64decode(field["z"]))

    raw = dequantize(unpack(entry["raw"]), unpack(entry["raw_max"]), (2, 4, 65, 64))
    want = explorer.current_map().ravel()  # raw heads: mean, max, 0, 1
    np.testing.assert_allclose(raw[1, 1, 1 + 4 * 8 + 1], want, atol=want.max() / 510 + 1e-7)


def test_static_images_default_to_one_per_class(model, data):
    e = AttentionExplorer(model, data, classes=CLASSES, index=3, static_images=4)
    idx = e.static_indices()
    assert idx[0] == 3 and len(idx) == 4
    assert len({int(data.labels[i]) for i in idx}) == 4
    with pytest.raises(ValueError, match="static_images"):
        AttentionExplorer(model, data, static_images=0)


def test_quantize_keeps_small_maps_precise():
    from helpers.explorer.export import dequantize, quantize

    maps = torch.rand(3, 5, 64) / 64  # near-uniform maps, all values ~1/64
    maps[1, 2] = 0  # an all-zero map stays zero
    for levels in (255, 63):
        q, top = quantize(maps, levels)
        back = dequantize(q, top, (3, 5, 64), levels)
        err = np.abs(back - maps.numpy()).max(-1)
        assert (err <= maps.numpy().max(-1) / (2 * levels) + 1e-9).all()
        assert (back[1, 2] == 0).all()
        assert np.frombuffer(q, dtype=np.uint8).max() == levels
    with pytest.raises(ValueError, match="levels"):
        quantize(maps, 256)


def test_model_without_cls_token_defaults_to_a_patch(data):
    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=2, num_heads=2, global_pool="avg", class_token=False)
    e = AttentionExplorer(m, data, classes=CLASSES)
    assert e.state.query == 4 * 8 + 4 and "patch (4, 4)" in e.title
    assert e.current_map().sum() == pytest.approx(1.0, abs=1e-5)


# ---------------- timm ----------------


@pytest.mark.parametrize(
    "kw", [{}, {"reg_tokens": 2}, {"global_pool": "avg", "class_token": False}]
)
def test_timm_attention_equals_ours(kw, timm_vit_class):
    timm_vit = timm_vit_class
    torch.manual_seed(0)
    ours = VisionTransformer(embed_dim=16, depth=2, num_heads=2, **kw).eval()
    theirs = timm_vit(**timm_kwargs(ours.cfg)).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(3, 3, 32, 32)
    logits_ours, attn_ours = get_attention(ours, x)
    logits_theirs, attn_theirs = get_attention(theirs, x)  # read through helpers.timm_adapter
    torch.testing.assert_close(attn_theirs, attn_ours, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits_theirs, logits_ours, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(logits_theirs, theirs(x), rtol=1e-5, atol=1e-5)


def test_explorer_on_a_timm_model_shows_the_same_maps(model, data, timm_vit_class):
    timm_vit = timm_vit_class
    theirs = timm_vit(**timm_kwargs(model.cfg)).eval()
    theirs.load_state_dict(model.state_dict(), strict=True)
    a = AttentionExplorer(model, data, classes=CLASSES, index=2)
    b = AttentionExplorer(theirs, data, classes=CLASSES, index=2)
    for kw in [{}, {"layer": 0, "head": 1, "query": (3, 3)}, {"mode": "rollout"}]:
        a.set(**kw), b.set(**kw)
        np.testing.assert_allclose(b.current_map(), a.current_map(), rtol=1e-5, atol=1e-7)
    assert a.title == b.title and a.prediction == b.prediction


def test_nice_ceil():
    from helpers.explorer.maps import nice_ceil

    assert [nice_ceil(x) for x in (0.013, 0.2, 0.21, 0.0049, 1.0, 0.81)] == [
        0.015, 0.2, 0.25, 0.005, 1.0, 1.0
    ]  # fmt: skip


def test_any_model_with_the_attention_switch_works(model, data):
    class Plain(torch.nn.Module):  # no cfg: only model(x, return_attention=True)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, return_attention=False):
            return self.inner(x, return_attention=return_attention)

    a = AttentionExplorer(model, data, classes=CLASSES, index=1)
    b = AttentionExplorer(Plain(model), data, classes=CLASSES, index=1)
    assert b.geom == a.geom
    b.set(layer=0, query=(1, 2))
    a.set(layer=0, query=(1, 2))
    np.testing.assert_array_equal(b.current_map(), a.current_map())


# ---------------- the browser view's words and scale, as the Python side ----------------

NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_browser_view_titles_and_scale_match_python(model):
    """view.js writes the same titles and rounds the colour scale the same way as the
    Python side (which draws the PNG); run in Node.js, as an ES module."""
    from helpers.explorer.export import asset, meta
    from helpers.explorer.maps import nice_ceil

    geom = model_geometry(model)
    states = [
        ExplorerState(layer=1, head=0, mode="raw", query=0),
        ExplorerState(layer=0, head="max", mode="rollout", query=10),
        ExplorerState(layer=1, head="mean", mode="rollout", query=64),
    ]
    values = [0.013, 0.2, 0.21, 0.0049, 1.0, 0.81, 0.0153846]
    m = {k: v for k, v in meta(geom, 2, 2, CLASSES).items() if k != "cmap"}
    js_states = [{"layer": s.layer, "head": str(s.head), "mode": s.mode, "query": s.query} for s in states]  # fmt: skip
    module = base64.b64encode(asset("view.js").encode()).decode()
    script = (
        f"const v = await import('data:text/javascript;base64,{module}');\n"
        f"const meta = {json.dumps(m)};\n"
        f"console.log(JSON.stringify({{titles: {json.dumps(js_states)}.map((s) => "
        f"v.titleLines(meta, s).join('\\n')), nice: {json.dumps(values)}.map(v.niceCeil)}}));"
    )
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["titles"] == [title_text(s, 2, geom) for s in states]
    assert out["nice"] == [nice_ceil(v) for v in values]


def test_view_knows_the_image_range_and_a_bad_index_is_a_message(explorer, data):
    """The view clamps a typed image number to 0..dataset_size-1 (and says so); a number
    out of range that still reaches the kernel becomes a message, never a traceback."""
    w = explorer.widget
    assert w.meta["dataset_size"] == len(data) and w.meta["live"]
    w.index = len(data) + 5
    assert "out of range" in w.message and explorer.index == 3
    w.index = len(data) - 1
    assert explorer.index == len(data) - 1 and w.message == ""
