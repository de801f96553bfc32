"""The attention explorer's logic, as a reader would drive it (no browser needed)."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.attention import cls_attention, get_attention, rollout, token_map
from helpers.data import CLASSES, ShapesDataset
from helpers.model import VisionTransformer
from helpers.timm_adapter import timm_kwargs
from helpers.widgets import (
    AttentionExplorer,
    ExplorerState,
    head_options,
    model_geometry,
    prediction_text,
    query_label,
    query_token,
    title_text,
)
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


def test_widget_controls_drive_the_view(explorer):
    assert explorer.widget is not None  # build the widgets
    explorer._w_layer.value = 0
    assert explorer.state.layer == 0 and "layer 0" in explorer.title
    explorer._w_head.value = 1
    assert explorer.state.head == 1 and "head 1" in explorer.title
    explorer._w_tokens[1 + 2 * 8 + 3].click()  # the patch button at row 2, col 3
    assert explorer.state.query == 1 + 19 and "patch (2, 3)" in explorer.title
    assert explorer._w_tokens[20].button_style == "warning"
    explorer._w_mode.value = "rollout"  # a single head cannot be rolled out: falls back to mean
    assert explorer.state.head == "mean" and "rollout" in explorer.title.lower()
    assert [v for _, v in explorer._w_head.options] == ["mean", "max"]
    assert explorer._w_head.value == "mean"
    explorer._w_tokens[0].click()  # back to CLS
    assert "of CLS" in explorer.title
    before = explorer.current_map().copy()
    explorer._w_index.value = 7
    assert explorer.index == 7 and "#7" in explorer.caption
    assert not np.array_equal(before, explorer.current_map())
    assert explorer._w_image.value == explorer.png


def test_image_change_runs_one_forward_and_keeps_one_figure(explorer, monkeypatch):
    import helpers.widgets as hw

    calls = []
    real = hw.get_attention
    monkeypatch.setattr(hw, "get_attention", lambda *a: calls.append(1) or real(*a))
    fig = explorer.fig
    explorer.set(index=5)
    assert len(calls) == 1
    for kw in [{"layer": 0}, {"head": "max"}, {"mode": "rollout"}, {"query": (1, 1)}]:
        explorer.set(**kw)
    assert len(calls) == 1, "changing a control must not run the model again"
    assert explorer.fig is fig and len(fig.axes) == 2  # image + one colorbar, no new figures


def test_state_normalization_and_errors():
    s = ExplorerState(layer=-1, head=1, mode="rollout").normalized(num_layers=4, num_heads=2)
    assert (s.layer, s.head) == (3, "mean")
    with pytest.raises(ValueError, match="layer 4"):
        ExplorerState(layer=4).normalized(4, 2)
    with pytest.raises(ValueError, match="head 5"):
        ExplorerState(layer=0, head=5).normalized(4, 2)
    with pytest.raises(ValueError, match="mode"):
        ExplorerState(layer=0, mode="flow").normalized(4, 2)
    assert [v for _, v in head_options("raw", 2)] == ["mean", "max", 0, 1]
    assert [v for _, v in head_options("rollout", 2)] == ["mean", "max"]


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
    assert "layers 0–0" in t


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
    assert explorer.widget is not None
    before = explorer.current_map().copy()
    assert not explorer.show_upload("notes.txt", b"hello")
    assert "notes.txt" in explorer.message and "not an image" in explorer.message
    assert "not an image" in explorer._w_msg.value
    np.testing.assert_array_equal(before, explorer.current_map())  # view unchanged
    content = png_bytes("RGBA", size=(64, 48), color=(255, 255, 255, 255))
    assert explorer.show_upload("white.png", content)
    assert explorer.label is None and "your image: white.png" in explorer.caption
    assert "true:" not in explorer.prediction
    # through the FileUpload observer, with an 8.x-shaped value
    explorer._on_upload({"new": ({"name": "bad.bin", "content": memoryview(b"\x00\x01")},)})
    assert "bad.bin" in explorer._w_msg.value


# ---------------- display: live widget + static picture ----------------


def test_mimebundle_has_widget_view_and_png(explorer):
    bundle = explorer._repr_mimebundle_()
    assert set(bundle) == {
        "text/plain",
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
    # the live view is unchanged by the snapshot (its caption is HTML beside the image)
    before = explorer.png
    explorer.set(layer=explorer.state.layer)
    assert explorer.png == before


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
    from helpers.widgets import nice_ceil

    assert [nice_ceil(x) for x in (0.013, 0.2, 0.21, 0.0049, 1.0, 0.81)] == [
        0.015, 0.2, 0.25, 0.005, 1.0, 1.0
    ]  # fmt: skip


def test_cached_colorbar_draws_the_same_picture(explorer):
    explorer.set(layer=0)
    first = explorer.png
    explorer.set(layer=1)
    explorer.set(layer=0)  # colorbar now comes from the cache
    assert explorer.png == first
    explorer._layout(caption=False)  # cache and background dropped: drawn from scratch
    explorer.set(layer=0)
    assert explorer.png == first


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
