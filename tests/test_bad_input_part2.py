"""Clumsy or hostile inputs a learner may give, part 2: uploads (16-bit and float images,
channels, decompression bombs), the attention explorer's set(), and checks that never return.

Each bad input must end in a clear error that names the problem and the fix; each good one
must still work."""

from __future__ import annotations

import io
import signal
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data import CLASSES, ShapesDataset
from helpers.exercises.core import Exercise
from helpers.exercises.nb04_classification import ex_gap_pool
from helpers.explorer.maps import model_geometry, query_token
from helpers.explorer.widget import AttentionExplorer
from helpers.images import UploadError, load_image_bytes
from helpers.model import VisionTransformer

# ---------------------------------------------------------------------------------------
# B. Uploads
# ---------------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def gradient(top: float, dtype, width: int = 32) -> np.ndarray:
    """(32, width), square by default (the upload is centre-cropped): each row runs from 0
    on the left to `top` on the right."""
    return np.tile(np.linspace(0, top, width), (32, 1)).astype(dtype)


def assert_left_dark_right_bright(x: torch.Tensor):
    row = x[0, x.shape[1] // 2]
    assert row[0] < 0.1 and row[-1] > 0.9, row
    assert bool((row[1:] >= row[:-1] - 1e-3).all()), f"not monotone: {row}"


def high_bit_file(kind: str) -> bytes:
    """A square left-to-right gradient saved in a mode with more than 8 bits per pixel."""
    if kind == "I;16-png":
        return encode(Image.fromarray(gradient(65535, np.uint16)), "PNG")
    if kind == "I;16B-tiff":
        big_endian = gradient(65535, ">u2").tobytes()
        return encode(Image.frombytes("I;16B", (32, 32), big_endian), "TIFF")
    if kind == "I-16bit-values":  # 32-bit integers holding 16-bit values: / 65535
        return encode(Image.fromarray(gradient(65535, np.int32)), "TIFF")
    if kind == "I-32bit-values":  # beyond 16 bits, negative too: stretched from min..max
        return encode(Image.fromarray(gradient(4e6, np.int32) - 10**6), "TIFF")
    top = {"F-0..1": 1.0, "F-0..1000": 1000.0}[kind]
    return encode(Image.fromarray(gradient(top, np.float32)), "TIFF")


@pytest.mark.parametrize(
    "kind",
    ["I;16-png", "I;16B-tiff", "I-16bit-values", "I-32bit-values", "F-0..1", "F-0..1000"],
)
def test_b5_high_bit_images_are_scaled_not_clipped(kind):
    data = high_bit_file(kind)
    x = load_image_bytes(data, 16, channels=1)
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert_left_dark_right_bright(x)
    rgb = load_image_bytes(data, 16)  # grey -> RGB: three equal channels
    assert rgb.shape == (3, 16, 16)
    torch.testing.assert_close(rgb, x.expand(3, -1, -1))


def test_b5_float_images_round_trip_and_nan_is_refused():
    flat = np.full((32, 32), 0.25, dtype=np.float32)  # already in [0, 1]: kept as is
    x = load_image_bytes(encode(Image.fromarray(flat), "TIFF"), 16, channels=1)
    torch.testing.assert_close(x, torch.full((1, 16, 16), 0.25), atol=1e-5, rtol=0)
    small = load_image_bytes(encode(Image.fromarray(gradient(1.0, np.float32)), "TIFF"), 16)
    big = load_image_bytes(encode(Image.fromarray(gradient(1000.0, np.float32)), "TIFF"), 16)
    torch.testing.assert_close(big, small, atol=1e-5, rtol=0)  # 0..1000 rescaled to 0..1
    bad = gradient(1.0, np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(UploadError, match="NaN or infinite"):
        load_image_bytes(encode(Image.fromarray(bad), "TIFF"), 16)
    bad[3, 3] = np.inf
    with pytest.raises(UploadError, match="finite values"):
        load_image_bytes(encode(Image.fromarray(bad), "TIFF"), 16)


@pytest.mark.parametrize("channels", [4, 2, 0, -1, True])
def test_b6_channels_other_than_1_or_3_are_refused(channels):
    data = encode(Image.new("RGB", (20, 20), (200, 30, 30)), "PNG")
    with pytest.raises(ValueError, match=r"channels must be 1 \(greyscale\) or 3 \(RGB\)"):
        load_image_bytes(data, 16, channels=channels)
    assert load_image_bytes(data, 16, channels=1).shape == (1, 16, 16)
    assert load_image_bytes(data, 16, channels=3).shape == (3, 16, 16)


@pytest.mark.parametrize("limit", [1_000_000, 10_000_000], ids=["error", "warning"])
def test_b7_decompression_bomb_is_an_upload_error(monkeypatch, limit):
    data = encode(Image.new("L", (4000, 4000)), "PNG")  # 16 MP, within max_side, ~16 KB
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(UploadError) as info:  # above the limit: Pillow warns; above 2x: raises
        load_image_bytes(data, 32)
    message = str(info.value)
    assert "16,000,000 pixels" in message and "too many to decode safely" in message
    assert "Shrink it first" in message
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000_000)
    assert load_image_bytes(data, 32).shape == (3, 32, 32)


# ---------------------------------------------------------------------------------------
# C. The explorer
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def explorer_parts():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = VisionTransformer(embed_dim=16, depth=2, num_heads=2).eval()
    yield model, ShapesDataset("test", n=20)
    torch.set_num_threads(n)


@pytest.fixture
def explorer(explorer_parts):
    model, data = explorer_parts
    return AttentionExplorer(model, data, classes=CLASSES, index=3)


def view(e: AttentionExplorer):
    return (e.state, e.index, e.label, e.source, e.message, e.maps, e.image.clone(),
            e.current_map().copy(), e.png)  # fmt: skip


def assert_same_view(a, b):
    for x, y in zip(a, b):
        if isinstance(x, (np.ndarray, torch.Tensor)):
            assert (x == y).all()
        else:
            assert x == y


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"index": 10**6}, r"image index 1000000 is out of range.*0\.\.19"),
        ({"index": -21}, r"0\.\.19 \(or -1 for the last\)"),
        ({"index": 2.5}, "whole number"),
        ({"index": 5, "layer": 99}, r"layer 99 does not exist \(0\.\.1"),
        ({"index": 5, "head": 7}, r"head 7 does not exist \(0\.\.1\)"),
        ({"head": "avg"}, "head 'avg' is not one of"),
        ({"mode": "flow"}, "mode 'flow' is not one of"),
        ({"index": 5, "query": (9, 9)}, "outside the 8x8 grid"),
        ({"layer": "1"}, "layer must be a whole number"),
        ({"colour": "red"}, "unknown setting"),
    ],
)
def test_c8_failed_set_changes_nothing(explorer, changes, match):
    w = explorer.widget  # the browser view too must stay as it was
    before, shown = view(explorer), (w.index, w.layer, w.head, w.query, w.images)
    with pytest.raises((ValueError, TypeError), match=match):
        explorer.set(**changes)
    assert_same_view(view(explorer), before)
    assert (w.index, w.layer, w.head, w.query, w.images) == shown and w.index == 3
    explorer.set(layer=0, query=(2, 2))  # and a valid set still works
    assert explorer.state.layer == 0 and "patch (2, 2)" in explorer.title
    assert explorer.index == 3


def test_c8_negative_index_counts_from_the_end(explorer):
    explorer.set(index=-1)
    assert explorer.index == 19 and "#19" in explorer.caption
    explorer.show_index(-2)
    assert explorer.index == 18
    explorer.set(index=np.int64(4), layer=0)
    assert explorer.index == 4 and explorer.state.layer == 0


@pytest.mark.parametrize("query", ["CLS", "cls", " cls ", "Cls"])
def test_c9_cls_query_in_any_case(explorer, query):
    explorer.set(query=(1, 1))
    explorer.set(query=query)
    assert explorer.state.query == 0 and "of CLS" in explorer.title


@pytest.mark.parametrize("query", ["foo", "", True, 2.5, None, ("col", 1), (1.5, 2)], ids=repr)
def test_c9_bad_query_names_the_accepted_forms(explorer, query):
    before = view(explorer)
    with pytest.raises(ValueError) as info:
        explorer.set(query=query)
    message = str(info.value)
    if isinstance(query, tuple) and not isinstance(query[0], str):
        assert "whole number" in message and "1.5" in message
    else:
        assert "query must be 'CLS', ('reg', k), (row, col) or a token index" in message
        assert repr(query) in message
    assert_same_view(view(explorer), before)


def test_c9_register_and_list_queries():
    geom = model_geometry(VisionTransformer(embed_dim=16, depth=1, num_heads=2, reg_tokens=2))
    assert query_token(("REG", 1), geom) == 2 and query_token([0, 0], geom) == 3
    assert query_token(np.int64(5), geom) == 5
    with pytest.raises(ValueError, match=r"register 2 does not exist \(2 registers: use 0\.\.1"):
        query_token(("reg", 2), geom)


# ---------------------------------------------------------------------------------------
# D. Exercise checks that never return
# ---------------------------------------------------------------------------------------


def forever(*args):
    while True:
        pass


def forever_swallowing(*args):  # a learner's loop that catches everything it can
    while True:
        try:
            pass
        except Exception:
            pass


looping = Exercise("ex_loop", checker=lambda f: f(), hints=("",), solution_text="")


def test_d10_check_that_never_returns_fails_after_its_time_limit(capsys):
    start = time.monotonic()
    assert looping.check(forever, time_limit=0.5) is False
    assert time.monotonic() - start < 3
    out = capsys.readouterr().out
    assert "did not return within 0.5 s" in out and "loop that never ends" in out
    assert "ex_loop.hint()" in out
    # a checker's own `except Exception` cannot swallow the time limit
    assert ex_gap_pool.check(forever_swallowing, quiet=True, time_limit=0.5) is False
    assert ex_gap_pool.check(lambda t, p: t[:, p:].mean(1), quiet=True, time_limit=5)
    assert looping.check(lambda: None, quiet=True, time_limit=None)


def test_d10_previous_alarm_handler_and_timer_are_restored():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGALRM, mine)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100)  # someone else's timer, running
        assert looping.check(forever, quiet=True, time_limit=0.3) is False
        assert signal.getsignal(signal.SIGALRM) is mine
        left, interval = signal.getitimer(signal.ITIMER_REAL)
        assert 95 < left <= 100 and interval == 0
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert looping.check(lambda: None, quiet=True, time_limit=0.3)
        assert signal.getsignal(signal.SIGALRM) is mine
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_d10_off_the_main_thread_the_check_runs_without_a_limit():
    results = []
    thread = threading.Thread(
        target=lambda: results.append(looping.check(lambda: time.sleep(0.05), quiet=True))
    )
    thread.start()
    thread.join(timeout=5)
    assert results == [True]
