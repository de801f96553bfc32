"""helpers.studies.dino: the views, the head, the loss and the two moving averages against by-hand
computations, the evaluation, and the command's checks."""

import json
import math

import pytest
import torch
import torch.nn as nn

from helpers.checkpoint import load_checkpoint
from helpers.model import VisionTransformer, ViTConfig
from helpers.paths import DATA_DIR
from helpers.studies import dino
from helpers.studies.dino import (
    DINOConfig,
    DINOHead,
    DINOModel,
    attention_jaccard,
    cls_features,
    dino_loss,
    ema_update,
    knn_predict,
    mass_mask,
    momentum_at,
    multi_crop,
    teacher_probs,
    update_center,
)

SMALL = ViTConfig(embed_dim=16, depth=1, num_heads=2)


def test_ema_update_by_hand():
    torch.manual_seed(0)
    s, t = nn.Linear(3, 2), nn.Linear(3, 2)
    w_t, w_s = t.weight.detach().clone(), s.weight.detach().clone()
    ema_update(t, s, 0.9)
    assert torch.allclose(t.weight, 0.9 * w_t + 0.1 * w_s)
    ema_update(t, s, 1.0)  # momentum 1: the teacher stays
    assert torch.allclose(t.weight, 0.9 * w_t + 0.1 * w_s)
    ema_update(t, s, 0.0)  # momentum 0: a copy of the student
    assert torch.equal(t.weight, s.weight)


def test_ema_update_refuses_bad_input():
    with pytest.raises(ValueError, match="momentum"):
        ema_update(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="same parameters"):
        ema_update(nn.Linear(2, 2), nn.Linear(3, 2), 0.9)


def test_center_update_by_hand():
    c = torch.tensor([1.0, 0.0])
    out = torch.tensor([[2.0, 4.0], [0.0, 2.0]])  # batch mean (1, 3)
    assert torch.allclose(update_center(c, out, 0.9), torch.tensor([1.0, 0.3]))


def test_teacher_probs_center_and_sharpen():
    t = torch.tensor([[1.0, 2.0, 3.0]])
    c = torch.tensor([0.5, 0.0, 1.0])
    by_hand = torch.exp((t - c) / 0.04)
    assert torch.allclose(teacher_probs(t, c, 0.04), by_hand / by_hand.sum())


def test_loss_by_hand_and_only_cross_view_pairs():
    torch.manual_seed(0)
    B, K, V = 2, 5, 4  # two global views, two local
    s = torch.randn(V * B, K)
    t = torch.randn(2 * B, K)
    c = torch.randn(K)
    ts, tt = 0.1, 0.04

    def h(p, logq):  # cross-entropy, mean over the batch
        return -(p * logq).sum(-1).mean()

    P = [torch.softmax((t[i * B : (i + 1) * B] - c) / tt, -1) for i in range(2)]
    Q = [torch.log_softmax(s[j * B : (j + 1) * B] / ts, -1) for j in range(V)]
    pairs = [(i, j) for i in range(2) for j in range(V) if i != j]
    assert len(pairs) == 2 * V - 2
    by_hand = sum(h(P[i], Q[j]) for i, j in pairs) / len(pairs)
    assert torch.allclose(dino_loss(s, t, c, ts, tt), by_hand)
    # a student that copies the teacher on view 0 gains nothing from that same view:
    # changing the student's view-0 scores only changes the (teacher 1, student 0) pair
    s2 = s.clone()
    s2[:B] += torch.randn(B, K)
    Q2 = [torch.log_softmax(s2[j * B : (j + 1) * B] / ts, -1) for j in range(V)]
    by_hand2 = sum(h(P[i], Q2[j]) for i, j in pairs) / len(pairs)
    assert torch.allclose(dino_loss(s2, t, c, ts, tt), by_hand2)
    with_same = sum(h(P[i], Q2[j]) for i in range(2) for j in range(V)) / (2 * V)
    assert not torch.allclose(dino_loss(s2, t, c, ts, tt), with_same)


def test_loss_gradient_reaches_the_student_only():
    s = torch.randn(8, 5, requires_grad=True)
    t = torch.randn(4, 5, requires_grad=True)
    dino_loss(s, t, torch.zeros(5)).backward()
    assert s.grad is not None and t.grad is None


@pytest.mark.parametrize(
    "s, t, c, match",
    [
        (torch.randn(8, 5), torch.randn(4, 6), torch.zeros(6), "share K"),
        (torch.randn(7, 5), torch.randn(4, 5), torch.zeros(5), "rows"),
        (torch.randn(8, 5), torch.randn(3, 5), torch.zeros(5), "rows"),
        (torch.randn(8, 5), torch.randn(4, 5), torch.zeros(4), "center"),
    ],
)
def test_loss_refuses_bad_shapes(s, t, c, match):
    with pytest.raises(ValueError, match=match):
        dino_loss(s, t, c)


def test_multi_crop_and_local_views_run_through_the_model():
    torch.manual_seed(0)
    cfg = DINOConfig(local_crops=3, out_dim=32, hidden_dim=16, bottleneck_dim=8)
    x = torch.rand(4, 3, 32, 32)
    views = multi_crop(x, cfg)
    assert [tuple(v.shape) for v in views] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 3
    model = DINOModel(SMALL, cfg)
    out = model(views)
    assert out.shape == (5 * 4, 32)
    # a 16x16 view: the same CLS as a model adapted to 16x16 images (notebook 02's recipe)
    from helpers.model import adapt_to_image_size

    small = adapt_to_image_size(model.backbone, 16)
    assert torch.allclose(
        cls_features(model.backbone, views[2]), small.forward_features(views[2])[:, 0], atol=1e-5
    )
    # at full size: the model's own CLS token
    assert torch.equal(cls_features(model.backbone, x), model.backbone.forward_features(x)[:, 0])
    # and the gradient of a local view reaches the position table
    (cls_features(model.backbone, views[2]) * torch.randn(4, 16)).sum().backward()
    assert model.backbone.pos_embed.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple of the patch size"):
        cls_features(model.backbone, torch.rand(1, 3, 18, 18))


def test_full_crop_is_the_image():
    from helpers.studies.dino import random_resized_crop

    x = torch.rand(3, 3, 32, 32)
    torch.manual_seed(1)
    y = random_resized_crop(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    for a, b in zip(y, x):  # the whole image, flipped or not
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(-1), atol=1e-5)


def test_head_scores_are_cosines():
    torch.manual_seed(0)
    head = DINOHead(16, out_dim=10, hidden_dim=8, bottleneck_dim=4)
    out = head(torch.randn(5, 16))
    assert out.shape == (5, 10) and out.abs().max() <= 1 + 1e-6
    x = torch.randn(5, 16)  # the scale of a prototype does not matter, only its direction
    a = head(x)
    with torch.no_grad():
        head.last_layer.mul_(3)
    assert torch.allclose(head(x), a, atol=1e-6)


def test_momentum_schedule():
    cfg = DINOConfig(steps=11, teacher_momentum=0.99)
    assert momentum_at(0, cfg) == pytest.approx(0.99)
    assert momentum_at(10, cfg) == pytest.approx(1.0)
    assert 0.99 < momentum_at(5, cfg) < 1


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"steps": 0}, "steps"),
        ({"local_crops": -1}, "local_crops"),
        ({"teacher_temp": 0}, "teacher_temp"),
        ({"center_momentum": 1.5}, "center_momentum"),
        ({"local_scale": (0.5, 0.1)}, "local_scale"),
    ],
)
def test_bad_configs_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        DINOConfig(**kw)


def test_a_few_steps_train_and_log():
    cfg = DINOConfig(steps=3, batch_size=4, local_crops=2, warmup_steps=1, out_dim=16)
    images = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    student, teacher, hist = dino.train_dino(images, cfg, SMALL, progress=False, log_every=1)
    assert len(hist["loss"]) == 3 and all(math.isfinite(v) for v in hist["loss"])
    assert hist["log_step"] == [0, 1, 2]
    assert 0 <= hist["entropy"][0] <= math.log(16) + 1e-6
    again = dino.train_dino(images, cfg, SMALL, progress=False, log_every=1)[2]
    assert again["loss"] == hist["loss"]  # seeded: the same run twice
    with pytest.raises(ValueError, match="fewer than one batch"):
        dino.train_dino(images[:2], cfg, SMALL, progress=False)


def test_mass_mask_keeps_the_top_share():
    maps = torch.tensor([[0.5, 0.3, 0.1, 0.1]])
    assert mass_mask(maps, 0.6).tolist() == [[True, True, False, False]]
    assert mass_mask(maps, 0.5).tolist() == [[True, False, False, False]]
    assert mass_mask(maps, 1.0).all()
    with pytest.raises(ValueError, match="keep"):
        mass_mask(maps, 0)


def test_attention_jaccard_by_hand():
    torch.manual_seed(0)
    model = VisionTransformer(SMALL).eval()
    x = torch.rand(3, 3, 32, 32)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[:, 8:16, 8:16] = True
    jac = attention_jaccard(model, x, masks)
    assert jac.shape == (2,)
    from helpers.attention import get_attention

    _, attn = get_attention(model, x)
    row = attn[-1, 0, 1, 0, 1:]  # image 0, head 1
    keep = mass_mask(row, 0.6).reshape(8, 8)
    pix = keep.repeat_interleave(4, 0).repeat_interleave(4, 1)
    j0 = ((pix & masks[0]).sum() / (pix | masks[0]).sum()).item()
    per_image = []
    for i in range(3):
        k = mass_mask(attn[-1, i, 1, 0, 1:], 0.6).reshape(8, 8)
        p = k.repeat_interleave(4, 0).repeat_interleave(4, 1)
        per_image.append(((p & masks[i]).sum() / (p | masks[i]).sum()).item())
    assert per_image[0] == pytest.approx(j0)
    assert jac[1].item() == pytest.approx(sum(per_image) / 3, abs=1e-6)
    with pytest.raises(ValueError, match="masks"):
        attention_jaccard(model, x, masks[:2])


def test_knn_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    assert knn_predict(bank, labels, torch.tensor([[1.0, 0.05], [0.1, 1.0]]), k=1).tolist() == [
        0,
        1,
    ]
    # k=3: the two near class-0 vectors outvote the far one
    assert knn_predict(bank, labels, torch.tensor([[1.0, 0.2]]), k=3).tolist() == [0]
    with pytest.raises(ValueError, match="larger than"):
        knn_predict(bank, labels, bank, k=4)
    with pytest.raises(ValueError, match="same D"):
        knn_predict(bank, labels, torch.rand(2, 3), k=1)


def test_cli_checks_before_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        dino.main(["--out", str(tmp_path / "m.pth")])
    assert "must end in .pt" in capsys.readouterr().err
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(SystemExit):
        dino.main(["--out", str(tmp_path / "m.pt")])
    assert "--force" in capsys.readouterr().err and (tmp_path / "m.pt").read_bytes() == b"x"
    with pytest.raises(SystemExit):
        dino.main(["--out", str(tmp_path / "no" / "m.pt")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dino.main(["--out", str(tmp_path / "n.pt"), "--steps", "0"])
    assert "steps" in capsys.readouterr().err


def test_shipped_checkpoint_and_record():
    path = DATA_DIR / "dino_vit.pt"
    if not path.is_file():
        pytest.skip("data/dino_vit.pt not built")
    record = json.loads(path.with_suffix(".json").read_text())
    model, meta = load_checkpoint(path)
    assert meta == record
    assert record["command"].replace(" --force", "") == dino.REBUILD
    assert set(record["scores"]) >= {"knn", "linear_probe", "jaccard_best_head"}
    assert set(record["collapse"]) == set(dino.COLLAPSE_RUNS)


def test_shipped_ablations_record():
    """The ablations ran as long as the shipped model, each with one change to its recipe."""
    path = DATA_DIR / "dino_ablations.json"
    if not path.is_file():
        pytest.skip("data/dino_ablations.json not built")
    record = json.loads(path.read_text())
    assert record["command"].replace(" --force", "") == dino.ABLATIONS_REBUILD
    shipped = json.loads((DATA_DIR / "dino_vit.json").read_text())
    assert set(record["runs"]) <= set(dino.ABLATIONS) and record["runs"]
    for name, run in record["runs"].items():
        cfg = dict(shipped["dino_config"], **dino.ABLATIONS[name])
        assert run["dino_config"] == json.loads(json.dumps(cfg))
        assert len(run["loss"]) == cfg["steps"] == run["history"]["log_step"][-1] + 1
        assert set(run["scores"]) >= {"knn", "jaccard_best_head"}


def test_shipped_seeds_record():
    """More seeds of the shipped recipe, each beside the untrained network it started from."""
    path = DATA_DIR / "dino_seeds.json"
    if not path.is_file():
        pytest.skip("data/dino_seeds.json not built")
    record = json.loads(path.read_text())
    assert record["command"].replace(" --force", "") == dino.SEEDS_REBUILD
    shipped = json.loads((DATA_DIR / "dino_vit.json").read_text())["dino_config"]
    for run in record["runs"].values():
        assert run["dino_config"] == dict(shipped, seed=run["dino_config"]["seed"])
        assert run["dino_config"]["seed"] != shipped["seed"] and run["change"] == {}
        assert set(run["init_scores"]) >= {"knn", "jaccard_best_head"}
