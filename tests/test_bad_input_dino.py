"""helpers.studies.dino on bad input: every refusal names the problem and the fix, a diverged
run stops and writes nothing, and the command checks its arguments before any work."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers.checkpoint import load_checkpoint
from helpers.model import VisionTransformer, ViTConfig
from helpers.runtime import Diverged
from helpers.studies import dino
from helpers.studies.dino import (
    DINOConfig,
    attention_jaccard,
    dino_loss,
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    multi_crop,
    random_resized_crop,
    update_center,
)

SMALL = ViTConfig(embed_dim=16, depth=1, num_heads=2)
TINY = {"steps": 3, "batch_size": 4, "local_crops": 1, "warmup_steps": 1, "out_dim": 8}


# ---------------------------------------------------------------- 1. a diverged run


def test_diverging_run_raises_before_the_step(monkeypatch):
    nan = torch.tensor(float("nan"), requires_grad=True)
    monkeypatch.setattr(dino, "dino_loss", lambda *a, **k: nan * 1)
    images = torch.rand(8, 3, 32, 32)
    with pytest.raises(Diverged, match=r"step 1 .*learning rate"):
        dino.train_dino(images, DINOConfig(**TINY), SMALL, progress=False)


def test_diverged_command_writes_nothing(tmp_path, monkeypatch, capsys):
    stub = SimpleNamespace(images=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    monkeypatch.setattr(dino, "ShapesDataset", lambda *a, **k: stub)

    def diverge(*a, **k):
        from helpers.runtime import check_loss

        check_loss(float("nan"), 1, 1e3)

    monkeypatch.setattr(dino, "train_dino", diverge)
    with pytest.raises(SystemExit) as e:
        dino.main(["--out", str(tmp_path / "m.pt")])
    assert e.value.code == 1
    assert "diverged" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no .pt, no .json, no lock left behind


def test_record_is_written_with_the_checkpoint(tmp_path, monkeypatch):
    """A finished run writes the .pt and its .json record together (one atomic write)."""
    stub = SimpleNamespace(images=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    monkeypatch.setattr(dino, "ShapesDataset", lambda *a, **k: stub)
    teacher = SimpleNamespace(backbone=VisionTransformer(SMALL))
    hist = {k: [0.0] for k in ("loss", "log_step", "entropy", "batch_entropy", "feature_std")}
    hist["seconds"] = 0.0
    monkeypatch.setattr(dino, "train_dino", lambda *a, **k: (None, teacher, hist))
    scores = {"knn": 0.5, "linear_probe": 0.5, "jaccard_best_head": 0.5}
    monkeypatch.setattr(dino, "frozen_scores", lambda *a: scores)
    monkeypatch.setattr(dino, "colour_knn", lambda *a: 0.5)
    out = tmp_path / "m.pt"
    meta = dino.main(["--out", str(out), "--collapse-steps", "0"])
    model, saved = load_checkpoint(out)
    assert saved == json.loads(out.with_suffix(".json").read_text()) == json.loads(json.dumps(meta))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.json", "m.pt"]


# ---------------------------------------------------------------- 2. the config


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"lr": -1e-3}, "lr must be > 0"),
        ({"lr": float("inf")}, "lr must be a finite number"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"weight_decay": float("nan")}, "weight_decay must be a finite"),
        ({"weight_decay_end": -1.0}, "weight_decay_end"),
        ({"min_lr": -1.0}, "min_lr"),
        ({"clip_grad": -1.0}, r"clip_grad must be >= 0 \(0: no clipping\)"),
        ({"clip_grad": float("inf")}, "clip_grad must be a finite"),
        ({"local_size": 0}, "local_size must be a whole number >= 1"),
        ({"local_size": -16}, "local_size"),
        ({"global_scale": (0.9, 0.1)}, "global_scale must be"),
        ({"global_scale": (0.0, 0.0)}, "global_scale must be"),
        ({"global_scale": (0.4, 1.5)}, "global_scale must be"),
        ({"local_scale": 0.4}, "local_scale must be a pair"),
        ({"local_scale": (0.1, 0.2, 0.3)}, "local_scale must be a pair"),
        ({"local_scale": (float("nan"), 0.4)}, "local_scale must be a finite"),
        ({"teacher_temp": float("nan")}, "teacher_temp"),
        ({"center_momentum": float("nan")}, "center_momentum"),
        ({"grey_p": 1.5}, "grey_p"),
        ({"brightness": -0.1}, "brightness"),
        ({"hue_jitter": -0.1}, "hue_jitter"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"freeze_last_layer": 1.5}, "freeze_last_layer"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_configs_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        DINOConfig(**kw)


def test_good_edge_configs_are_accepted():
    DINOConfig(clip_grad=0.0, weight_decay=0, weight_decay_end=0, warmup_steps=0)
    DINOConfig(global_scale=[1.0, 1.0], local_scale=(0.1, 0.1), lr=1)


# ---------------------------------------------------------------- 3. random_resized_crop


def test_crop_of_one_image_says_to_pass_a_batch():
    with pytest.raises(ValueError, match=r"x\[None\]"):
        random_resized_crop(torch.rand(3, 32, 32), 16)


def test_crop_of_uint8_images_works_and_matches_float():
    x = (torch.rand(2, 3, 32, 32) * 255).to(torch.uint8)
    torch.manual_seed(0)
    a = random_resized_crop(x, 16)
    torch.manual_seed(0)
    b = random_resized_crop(x.float() / 255, 16)
    assert a.dtype == torch.float32 and torch.equal(a, b)
    with pytest.raises(TypeError, match="float"):
        random_resized_crop(x.long(), 16)


@pytest.mark.parametrize("size, match", [(0, "size"), (-1, "size"), (100000, "4x")])
def test_crop_refuses_bad_sizes(size, match):
    with pytest.raises(ValueError, match=match):
        random_resized_crop(torch.rand(2, 3, 32, 32), size)


@pytest.mark.parametrize("scale", [(0.9, 0.1), (0, 0), (0.5, 2.0), 0.5])
def test_crop_refuses_bad_scales(scale):
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop(torch.rand(2, 3, 32, 32), 16, scale=scale)


def test_crop_refuses_bad_ratio_and_empty_batch():
    with pytest.raises(ValueError, match="ratio"):
        random_resized_crop(torch.rand(2, 3, 32, 32), 16, ratio=(2.0, 0.5))
    with pytest.raises(ValueError, match="no images"):
        random_resized_crop(torch.rand(0, 3, 32, 32), 16)


# ---------------------------------------------------------------- 4. views, loss, center


def test_multi_crop_of_an_empty_batch():
    with pytest.raises(ValueError, match="no images"):
        multi_crop(torch.rand(0, 3, 32, 32), DINOConfig(local_crops=1))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"student_temp": 0}, "student_temp must be > 0"),
        ({"student_temp": -0.1}, "student_temp"),
        ({"teacher_temp": 0}, "teacher_temp must be > 0"),
        ({"teacher_temp": -0.04}, "teacher_temp"),
        ({"teacher_temp": float("nan")}, "teacher_temp must be a finite"),
    ],
)
def test_loss_refuses_bad_temperatures(kw, match):
    with pytest.raises(ValueError, match=match):
        dino_loss(torch.randn(8, 5), torch.randn(4, 5), torch.zeros(5), **kw)


@pytest.mark.parametrize("m", [2, -0.1, float("nan")])
def test_update_center_momentum_in_0_1(m):
    with pytest.raises(ValueError, match="momentum"):
        update_center(torch.zeros(3), torch.randn(4, 3), m)


# ---------------------------------------------------------------- 5. attention_jaccard


def test_attention_jaccard_numpy_and_empty():
    torch.manual_seed(0)
    model = VisionTransformer(SMALL).eval()
    x = torch.rand(2, 3, 32, 32)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 8:16, 8:16] = True
    want = attention_jaccard(model, x, masks)
    assert torch.equal(attention_jaccard(model, x.numpy(), masks.numpy()), want)
    with pytest.raises(ValueError, match="no images"):
        attention_jaccard(model, x[:0], masks[:0])
    with pytest.raises(TypeError, match="masks must be a tensor"):
        attention_jaccard(model, x, masks.tolist())


# ---------------------------------------------------------------- 6. k-NN


def test_knn_refuses_non_finite_features():
    bank, labels = torch.rand(5, 4), torch.tensor([0, 1, 0, 1, 0])
    bad = bank.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="train_feats holds 1 NaN"):
        knn_predict(bad, labels, bank, k=2)
    with pytest.raises(ValueError, match="test_feats holds"):
        knn_accuracy(bank, labels, bad * float("inf"), labels, k=2)


def test_knn_with_any_number_of_classes():
    torch.manual_seed(0)
    labels = torch.arange(9).repeat(3)  # nine classes, as clip.attribute_labels' cells
    bank = torch.randn(9, 8)[labels] + 0.01 * torch.randn(27, 8)
    assert knn_accuracy(bank, labels, bank, labels, k=3) == 1.0
    assert knn_accuracy(bank, labels.numpy(), bank.numpy(), labels.numpy(), k=3) == 1.0
    pred = knn_predict(bank, labels, bank, k=1)
    assert torch.equal(pred, labels)
    with pytest.raises(ValueError, match="num_classes"):
        knn_predict(bank, labels, bank, k=1, num_classes=6)
    # a test class that the bank lacks still counts (as a miss), no crash
    assert knn_accuracy(bank, labels, bank[:1], torch.tensor([11]), k=1) == 0.0
    assert 0 <= linear_probe_accuracy(bank, labels, bank, labels) <= 1


def test_knn_refuses_bad_labels():
    bank = torch.rand(4, 2)
    with pytest.raises(ValueError, match="class indices"):
        knn_accuracy(bank, torch.tensor([0.7, 1, 0, 1.7]), bank, torch.tensor([0, 1, 0, 1]), k=1)
    with pytest.raises(ValueError, match=">= 0"):
        knn_predict(bank, torch.tensor([0, -1, 0, 1]), bank, k=1)
    with pytest.raises(ValueError, match="test features"):
        knn_accuracy(bank, torch.tensor([0, 1, 0, 1]), bank, torch.tensor([0, 1]), k=1)


# ---------------------------------------------------------------- 7. the command


TRAIN, ABLATIONS = ["--out", "m.pt"], ["--ablations", "--out", "a.json"]


@pytest.mark.parametrize(
    "command, args, match",
    [
        (TRAIN, ["--steps", "0"], "steps"),
        (TRAIN, ["--steps", "-5"], "steps"),
        (TRAIN, ["--seed", "-1"], "seed"),
        (TRAIN, ["--seed", str(2**32)], "seed"),
        (TRAIN, ["--collapse-steps", "-1"], "collapse-steps"),
        (TRAIN, ["--threads", "-1"], "threads"),
        (ABLATIONS, ["--only", "no centring"], "unknown 'no centring'; choose from"),
        (ABLATIONS, ["--only", ","], "unknown (none given)"),
        (ABLATIONS, ["--steps", "0"], "steps"),
        (ABLATIONS, ["--seed", "-1"], "seed"),
        (ABLATIONS, ["--seeds", "1,x"], "--seeds takes values separated by commas"),
        (ABLATIONS, ["--seeds", "1,1"], "--seeds names 1 more than once"),
        (ABLATIONS, ["--seeds", "1,-2"], "seed"),
        (ABLATIONS, ["--threads", "-1"], "threads"),
    ],
)
def test_commands_check_before_any_data(tmp_path, monkeypatch, capsys, command, args, match):
    def no_data(*a, **k):
        raise AssertionError("data were generated before the arguments were checked")

    monkeypatch.setattr(dino, "ShapesDataset", no_data)
    command = [str(tmp_path / c) if c.endswith((".pt", ".json")) else c for c in command]
    with pytest.raises(SystemExit) as e:
        dino.main([*command, *args])
    assert e.value.code == 2
    assert match in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_tiny_run_still_trains():
    images = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    hist = dino.train_dino(images, DINOConfig(**TINY), SMALL, progress=False)[2]
    assert len(hist["loss"]) == 3 and all(math.isfinite(v) for v in hist["loss"])
    assert np.isfinite(hist["entropy"]).all()


def test_a_nan_attention_map_is_refused_not_scored():
    from helpers.studies.dino import mass_mask

    maps = torch.rand(2, 64)
    maps[1, 3] = float("nan")
    with pytest.raises(ValueError, match="attention maps holds 1 NaN"):
        mass_mask(maps)


# ---------------------------------------------------------------- 8. the ablations command


def test_ablations_want_a_json_record(tmp_path, capsys):
    with pytest.raises(SystemExit):
        dino.main(["--ablations", "--out", str(tmp_path / "a.pt")])
    assert "must end in .json" in capsys.readouterr().err


def test_ablations_record_each_run(tmp_path, monkeypatch):
    """Each ablation trains with its one change at the full length; the record is rewritten
    after each run, with the provenance of the command."""
    stub = SimpleNamespace(images=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    monkeypatch.setattr(dino, "ShapesDataset", lambda *a, **k: stub)
    seen = []

    def fake_train(images, cfg, **k):
        seen.append(cfg)
        hist = {k: [0.0] for k in ("loss", "log_step", "entropy", "batch_entropy", "feature_std")}
        hist["seconds"] = 0.0
        return None, SimpleNamespace(backbone=None), hist

    monkeypatch.setattr(dino, "train_dino", fake_train)
    monkeypatch.setattr(dino, "frozen_scores", lambda *a: {"knn": 0.25, "jaccard_best_head": 0.1})
    out = tmp_path / "a.json"
    record = dino.main(["--ablations", "--out", str(out), "--only", "no sharpening,no centering"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert list(record["runs"]) == ["no sharpening", "no centering"] and record["complete"]
    assert [c.steps for c in seen] == [DINOConfig.steps] * 2
    assert not seen[0].sharpening and seen[0].centering and not seen[1].centering
    assert record["command"].startswith("python -m helpers.studies.dino --ablations")
    assert {"torch", "threads", "machine"} <= set(record)


def test_more_seeds_of_the_recipe_with_their_starting_points(tmp_path, monkeypatch):
    stub = SimpleNamespace(images=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    monkeypatch.setattr(dino, "ShapesDataset", lambda *a, **k: stub)
    seen = []

    def fake_train(images, cfg, **k):
        seen.append(cfg)
        hist = {k: [0.0] for k in ("loss", "log_step", "entropy", "batch_entropy", "feature_std")}
        hist["seconds"] = 0.0
        return None, SimpleNamespace(backbone="trained"), hist

    monkeypatch.setattr(dino, "train_dino", fake_train)
    monkeypatch.setattr(
        dino,
        "frozen_scores",
        lambda m, *a: {"knn": 0.5 if m == "trained" else 0.25, "jaccard_best_head": 0.1},
    )
    out = tmp_path / "s.json"
    args = ["--ablations", "--only", "recipe", "--seeds", "1,2", "--with-init", "--out", str(out)]
    record = dino.main(args)
    assert list(record["runs"]) == ["recipe, seed 1", "recipe, seed 2"]
    assert [c.seed for c in seen] == [1, 2] and all(c == DINOConfig(seed=c.seed) for c in seen)
    assert all(
        r["scores"]["knn"] == 0.5 and r["init_scores"]["knn"] == 0.25
        for r in record["runs"].values()
    )
