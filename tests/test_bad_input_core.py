"""Bad input to the core helpers (config, dataset, labels, probes, explorer): each is
refused up front with a message that names the problem and the fix, before any long work."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.data import ShapesDataset
from helpers.explorer.widget import AttentionExplorer
from helpers.model import VisionTransformer, ViTConfig, as_labels
from helpers.probes import curve_area, deletion_curve, fit_probe, probe_accuracy, rank_patches
from helpers.train import TrainConfig, as_dataset, train

TINY = dict(embed_dim=16, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def small():
    return ShapesDataset("test", n=12)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VisionTransformer(ViTConfig(**TINY)).eval()


# ---------------- 1. ViTConfig ----------------


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_heads=0), "num_heads must be a whole number >= 1"),
        (dict(num_heads=-2), "num_heads must be a whole number >= 1"),
        (dict(img_size=0), "img_size must be a whole number >= 1"),
        (dict(img_size=-32), "img_size must be a whole number >= 1"),
        (dict(patch_size=0), "patch_size must be a whole number >= 1"),
        (dict(embed_dim=0), "embed_dim must be a whole number >= 1"),
        (dict(depth=0), "depth must be a whole number >= 1"),
        (dict(depth=2.5), "depth must be a whole number"),
        (dict(mlp_ratio=0), "mlp_ratio must be a finite number"),
        (dict(mlp_ratio=-1.0), "mlp_ratio must be a finite number"),
        (dict(mlp_ratio=float("nan")), "mlp_ratio must be a finite number"),
        (dict(mlp_ratio=float("inf")), "mlp_ratio must be a finite number"),
        (dict(embed_dim=1_000_000, num_heads=4), "embed_dim=1000000 is above the limit of 8192"),
        (dict(depth=100_000), "depth=100000 is above the limit of 64"),
        (dict(reg_tokens=1000), "reg_tokens=1000 is above the limit of 64"),
    ],
)
def test_config_refuses_bad_sizes_before_allocation(kw, match):
    t = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        ViTConfig(**kw)
    assert time.perf_counter() - t < 0.5  # refused, not allocated


def test_config_bounds_say_why():
    with pytest.raises(ValueError, match="Use a smaller embed_dim .*embed_dim=64"):
        ViTConfig(embed_dim=16384, num_heads=4)


def test_config_defaults_and_large_models_still_build():
    assert ViTConfig() == ViTConfig(img_size=32, patch_size=4, embed_dim=64, depth=4)
    ViTConfig(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0)
    ViTConfig(embed_dim=8192, depth=64, num_heads=64, reg_tokens=64)


@pytest.mark.parametrize(
    "flag, match", [("--embed-dim", "embed_dim=1000000 is above"), ("--depth", "depth=100000")]
)
def test_train_command_refuses_huge_sizes_up_front(flag, match, tmp_path, capsys):
    from helpers.train import main

    value = "1000000" if flag == "--embed-dim" else "100000"
    out = tmp_path / "m.pt"
    t = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main([flag, value, "--out", str(out)])
    assert e.value.code == 2
    assert match in capsys.readouterr().err
    assert time.perf_counter() - t < 5
    assert not out.exists() and not list(tmp_path.iterdir())


# ---------------- 2. ShapesDataset ----------------


def test_dataset_refuses_a_huge_n_before_generating():
    t = time.perf_counter()
    with pytest.raises(ValueError, match="GB of memory.*the limit is 200000.*smaller n"):
        ShapesDataset("train", n=10**8)
    assert time.perf_counter() - t < 0.5


@pytest.mark.parametrize("n", [0, -5, 2.5, "100", True])
def test_dataset_refuses_a_bad_n(n):
    with pytest.raises(ValueError, match="n must be a whole number >= 1"):
        ShapesDataset("test", n=n)


def test_dataset_numpy_n_is_the_same_as_int():
    a, b = ShapesDataset("test", n=7), ShapesDataset("test", n=np.int64(7))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


# ---------------- 3. labels ----------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8, torch.int64])
def test_integer_labels_become_int64(dtype):
    y = torch.tensor([0, 1, 5], dtype=dtype)
    assert as_labels(y).dtype == torch.int64
    assert as_labels(y).tolist() == [0, 1, 5]
    assert as_labels(np.array([2, 3], dtype=np.int32)).dtype == torch.int64


def test_whole_float_labels_are_accepted_fractional_refused():
    assert as_labels(torch.tensor([0.0, 2.0])).tolist() == [0, 2]
    with pytest.raises(ValueError, match="whole class indices.*0.7.*integer tensor"):
        as_labels(torch.tensor([0.7, 1.7]))
    with pytest.raises(ValueError, match="whole class indices"):
        as_labels(torch.tensor([0.0, float("nan")]))


def test_train_takes_int32_labels_same_as_int64(small):
    x, y = small.images, small.labels
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3)
    runs = []
    for labels in (y, y.int()):
        torch.manual_seed(0)
        m = VisionTransformer(ViTConfig(**TINY))
        hist = train(m, (x, labels), cfg=cfg, progress=False)
        runs.append((hist.step_loss, m.head.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_train_refuses_fractional_labels_before_training(small):
    m = VisionTransformer(ViTConfig(**TINY))
    before = m.head.weight.detach().clone()
    with pytest.raises(ValueError, match="a float label is not a class"):
        train(m, (small.images, small.labels.float() + 0.7), progress=False)
    assert torch.equal(m.head.weight, before)


def test_as_dataset_keeps_regression_targets_when_asked(small):
    (_, t), _ = as_dataset((small.images, torch.rand(len(small))), classes=False)
    assert t.is_floating_point()


def test_probe_labels_int32_ok_float_refused():
    f = torch.randn(30, 4)
    y = torch.arange(30) % 3
    p64 = fit_probe(f, y, steps=5)
    p32 = fit_probe(f, y.int(), steps=5)
    assert torch.equal(p64.weight, p32.weight)
    assert probe_accuracy(p64, f, y.int()) == probe_accuracy(p64, f, y)
    with pytest.raises(ValueError, match="whole class indices"):
        fit_probe(f, y.float() + 0.7, steps=5)


# ---------------- 4. probes ----------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_probes_refuse_non_finite_features(bad):
    f = torch.randn(20, 4)
    y = torch.arange(20) % 2
    probe = fit_probe(f, y, steps=5)
    f[3, 1] = bad
    with pytest.raises(ValueError, match="features holds 1 NaN or infinite value"):
        fit_probe(f, y, steps=5)
    with pytest.raises(ValueError, match="features holds 1 NaN"):
        probe_accuracy(probe, f, y)


def test_probe_on_features_of_another_width_says_so():
    probe = fit_probe(torch.randn(20, 4), torch.arange(20) % 2, steps=5)
    with pytest.raises(ValueError, match="width D = 4, got D = 8"):
        probe_accuracy(probe, torch.randn(20, 8), torch.arange(20) % 2)
    with pytest.raises(ValueError, match="width D = 4"):
        probe(torch.randn(5, 8))


def test_scores_refuse_non_finite(model, small):
    x, y = small.batch(torch.arange(4))
    scores = torch.rand(4, 64)
    scores[0, 0] = float("nan")
    with pytest.raises(ValueError, match="scores holds 1 NaN"):
        rank_patches(scores)
    with pytest.raises(ValueError, match="scores holds 1 NaN"):
        deletion_curve(model, x, y, scores, [0, 8])
    with pytest.raises(ValueError, match="values holds 1 NaN"):
        curve_area([0, 1, 2], [1.0, float("nan"), 0.5])
    fill = torch.zeros(65, 16)
    fill[0, 0] = float("inf")
    with pytest.raises(ValueError, match="fill holds 1 NaN"):
        deletion_curve(model, x, y, torch.rand(4, 64), [0, 8], fill=fill)
    with pytest.raises(ValueError, match="whole class indices"):
        deletion_curve(model, x, y.float() + 0.5, torch.rand(4, 64), [0, 8])


# ---------------- 5. explorer ----------------


class Uint8Set:
    """A dataset whose images are uint8 0..255, as a learner may make one."""

    def __init__(self, ds):
        self.ds, self.classes = ds, ds.classes

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds.images[i], int(self.ds.labels[i])


def test_explorer_accepts_uint8_images(model, small):
    float_view = AttentionExplorer(model, small, static_images=1)
    uint8_view = AttentionExplorer(model, Uint8Set(small), static_images=1)
    assert uint8_view.image.dtype == torch.float32
    torch.testing.assert_close(uint8_view.image, float_view.image)
    assert uint8_view.prediction == float_view.prediction
    uint8_view.set(index=3)
    torch.testing.assert_close(uint8_view.image, small[3][0])


def test_show_upload_wants_bytes_not_a_path(model, small, tmp_path):
    view = AttentionExplorer(model, small, static_images=1)
    for call in (
        lambda: view.show_upload("photo.png", str(tmp_path / "photo.png")),
        lambda: view.show_upload("photo.png", tmp_path / "photo.png"),
        lambda: view.show_upload(tmp_path / "photo.png"),
        lambda: view.show_upload("photo.png"),
    ):
        with pytest.raises(TypeError, match=r"bytes.*Path\(.*\)\.read_bytes\(\)"):
            call()
    assert view.source == "test image #0"


def test_save_html_refuses_a_folder_and_writes_nothing(model, small, tmp_path):
    view = AttentionExplorer(model, small, static_images=1)
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="is a folder.*ending in .html.*nothing was written"):
        view.save_html(tmp_path)
    with pytest.raises(ValueError, match="does not end in .html"):
        view.save_html(tmp_path / "page.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "mine"
    out = view.save_html(tmp_path / "page.html")
    assert Path(out).read_text().startswith("<!")
