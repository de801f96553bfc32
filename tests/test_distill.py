"""DeiT's distilled ViT, its loss and teacher (helpers.studies.distill), and the token tools of
notebook 06 (helpers.studies.tokens)."""

import json

import pytest
import torch
import torch.nn.functional as F

from helpers.checkpoint import load_checkpoint, save_checkpoint
from helpers.data import ShapesDataset
from helpers.model import VisionTransformer
from helpers.paths import DATA_DIR
from helpers.studies import distill, tokens
from helpers.studies.distill import (
    DistilledViT,
    HeadView,
    SmallCNN,
    evaluate_heads,
    hard_distillation_loss,
    load_cnn,
    load_distilled,
    save_cnn,
    shift_augment,
)
from helpers.studies.tokens import (
    MajorityVote,
    PatchClassifierViT,
    add_test_time_register,
    cosine_per_layer,
    hidden_states,
    linear_probe,
    outlier_stats,
    register_neurons,
)
from helpers.timm_adapter import import_timm_distilled, timm_distilled_kwargs
from tests.conftest import SMALL, TINY


def distilled(seed=0, **kw):
    torch.manual_seed(seed)
    return DistilledViT(**{**SMALL, **kw}).eval()


@pytest.fixture(scope="module")
def timm_distilled_class(timm_vit_class):
    return import_timm_distilled()


def test_names_and_shapes_follow_timm():
    model = distilled()
    state = model.state_dict()
    N, D = model.cfg.num_patches, model.cfg.embed_dim
    assert state["dist_token"].shape == (1, 1, D)
    assert state["pos_embed"].shape == (1, 2 + N, D)  # two prefix slots, then the patches
    assert state["head_dist.weight"].shape == (model.cfg.num_classes, D)
    assert model.embed(torch.rand(3, 3, 32, 32)).shape == (3, 2 + N, D)


def test_dist_token_is_initialized_like_cls():
    model = distilled()
    assert 0.005 < model.dist_token.std().item() < 0.03
    assert not torch.equal(model.dist_token, model.cls_token)
    assert torch.equal(distilled().dist_token, model.dist_token)  # the same seed, the same token


def test_forward_is_the_average_of_the_two_heads():
    model, x = distilled(), torch.rand(4, 3, 32, 32)
    cls_out, dist_out = model.forward_heads(model.forward_features(x))
    torch.testing.assert_close(model(x), (cls_out + dist_out) / 2)
    torch.testing.assert_close(HeadView(model, "cls")(x), cls_out)
    torch.testing.assert_close(HeadView(model, "dist")(x), dist_out)
    assert not torch.allclose(cls_out, dist_out)


@pytest.mark.parametrize("pos_embed", ["learn", "sincos"])
def test_state_dict_loads_into_timm_with_equal_logits(timm_distilled_class, pos_embed):
    model = distilled(pos_embed=pos_embed)
    with torch.no_grad():  # make the two heads and tokens differ clearly from their init
        model.dist_token.add_(1.0)
        model.head_dist.bias.add_(torch.arange(6.0))
    theirs = timm_distilled_class(**timm_distilled_kwargs(model.cfg)).eval()
    theirs.load_state_dict(model.state_dict())
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), model(x), atol=1e-5, rtol=1e-5)
        theirs.set_distilled_training(True)  # in training mode timm returns both heads
        theirs.train(), model.train()
        t_cls, t_dist = theirs(x)
        cls_out, dist_out = model.forward_heads(model.forward_features(x))
        torch.testing.assert_close(t_cls, cls_out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t_dist, dist_out, atol=1e-5, rtol=1e-5)


def test_shipped_student_loads_into_timm(timm_distilled_class):
    path = DATA_DIR / "deit_student.pt"
    if not path.is_file():
        pytest.skip("data/deit_student.pt not built")
    model, meta = load_distilled(path)
    theirs = timm_distilled_class(**timm_distilled_kwargs(model.cfg)).eval()
    theirs.load_state_dict(model.state_dict())
    x = ShapesDataset("test", n=64).batch(torch.arange(64))[0]
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), model(x), atol=1e-5, rtol=1e-5)
    assert meta["model"] == "DistilledViT"


def test_timm_kwargs_refuse_what_timm_cannot_build():
    with pytest.raises(ValueError, match="position table"):
        timm_distilled_kwargs(VisionTransformer(**TINY, pos_embed="none").cfg)
    with pytest.raises(ValueError, match="reg_tokens=0"):
        timm_distilled_kwargs(VisionTransformer(**TINY, reg_tokens=1).cfg)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(reg_tokens=2), "reg_tokens=0"),
        (dict(global_pool="avg"), 'global_pool="token"'),
        (dict(class_token=False, global_pool="avg"), "class_token=True"),
    ],
)
def test_bad_configs_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        DistilledViT(**TINY, **kw)


def test_hard_distillation_loss():
    torch.manual_seed(0)
    a, b, t = (torch.randn(8, 6, requires_grad=True) for _ in range(3))
    y = torch.randint(0, 6, (8,))
    loss = hard_distillation_loss(a, b, y, t)
    expected = 0.5 * F.cross_entropy(a, y) + 0.5 * F.cross_entropy(b, t.argmax(-1))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert t.grad is None  # the teacher gives labels, never a gradient
    with pytest.raises(ValueError, match="same classes"):
        hard_distillation_loss(a, b, y, torch.randn(8, 10))


def test_distillation_head_learns_the_teacher_not_the_labels():
    """A short run with a teacher that always says class 5: the distillation head follows
    the teacher, the CLS head the labels."""

    class Always5(torch.nn.Module):
        def forward(self, x):
            return F.one_hot(torch.full((len(x),), 5), 6).float()

    from helpers.train import TrainConfig, train

    data = ShapesDataset("train", n=256)
    model = distilled(**TINY)
    cfg = TrainConfig(epochs=6, batch_size=64, warmup_steps=5, lr=5e-3)
    train(model, data, None, cfg, progress=False, loss_fn=distill.distillation_loss_fn(Always5()))
    x = data.batch(torch.arange(64))[0]
    with torch.no_grad():
        cls_out, dist_out = model.forward_heads(model.forward_features(x))
    assert (dist_out.argmax(-1) == 5).float().mean() > 0.95
    assert (cls_out.argmax(-1) == 5).float().mean() < 0.6


def test_small_cnn_and_its_file(tmp_path):
    torch.manual_seed(0)
    cnn = SmallCNN().eval()
    x = torch.rand(3, 3, 32, 32)
    assert cnn(x).shape == (3, 6)
    save_cnn(cnn, tmp_path / "t.pt", {"test_accuracy": 0.5})
    back, meta = load_cnn(tmp_path / "t.pt")
    torch.testing.assert_close(back(x), cnn(x))
    assert meta == {"test_accuracy": 0.5}
    with pytest.raises(FileNotFoundError, match="python -m helpers.studies.distill teacher"):
        load_cnn(tmp_path / "missing.pt")
    save_checkpoint(VisionTransformer(**TINY), tmp_path / "vit.pt")
    with pytest.raises(ValueError, match="not a CNN teacher"):
        load_cnn(tmp_path / "vit.pt")


def test_distilled_checkpoint_round_trip(tmp_path):
    model = distilled()
    save_checkpoint(model, tmp_path / "s.pt", {"model": "DistilledViT"})
    back, _ = load_distilled(tmp_path / "s.pt")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(back(x), model(x))
    with pytest.raises(ValueError, match="load_distilled"):
        load_checkpoint(tmp_path / "s.pt")  # a plain ViT loader names the extra token
    save_checkpoint(VisionTransformer(**TINY), tmp_path / "vit.pt")
    with pytest.raises(ValueError, match="load_checkpoint"):
        load_distilled(tmp_path / "vit.pt")


def test_shift_augment_rolls_by_whole_patches():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    out = shift_augment(x)
    assert out.shape == x.shape
    for a, b in zip(x, out):
        found = [
            (dy, dx)
            for dy in (-4, 0, 4)
            for dx in (-4, 0, 4)
            if torch.equal(a.roll((dy, dx), dims=(1, 2)), b)
        ]
        assert len(found) == 1


@pytest.mark.parametrize(
    "name, kind", [("cnn_teacher", "SmallCNN"), ("deit_student", "DistilledViT")]
)
def test_shipped_records_match_their_checkpoints(name, kind):
    path = DATA_DIR / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"data/{name}.pt not built")
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["model"] == kind and record["command"].startswith(
        "python -m helpers.studies.distill"
    )
    test = ShapesDataset("test")
    if kind == "SmallCNN":
        model, meta = load_cnn(path)
        from helpers.train import evaluate

        acc = evaluate(model, test)
    else:
        model, meta = load_distilled(path)
        acc = evaluate_heads(model, test)["both"]
    assert meta == record
    assert abs(acc - record["test_accuracy"]) < 1e-3


def test_cli_checks_before_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        distill.main(["vit", "--out", str(tmp_path / "m.pth")])
    assert "must end in .pt" in capsys.readouterr().err
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(SystemExit):
        distill.main(["vit", "--out", str(tmp_path / "m.pt")])
    assert "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        distill.main(["vit", "--out", str(tmp_path / "no" / "m.pt")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        distill.main(
            ["student", "--teacher", str(tmp_path / "no.pt"), "--out", str(tmp_path / "s.pt")]
        )
    assert "no teacher" in capsys.readouterr().err


# --- helpers.studies.tokens ---------------------------------------------------------------------


def test_hidden_states_end_with_the_models_features():
    torch.manual_seed(0)
    model = VisionTransformer(**SMALL, reg_tokens=2).eval()
    x = torch.rand(3, 3, 32, 32)
    states = hidden_states(model, x, batch_size=2)
    assert states.shape == (SMALL["depth"] + 2, 3, 3 + 64, SMALL["embed_dim"])
    torch.testing.assert_close(states[-1], model.forward_features(x))
    torch.testing.assert_close(states[0], model.embed(x))
    d = distilled()
    assert tokens.num_prefix(d) == 2 and tokens.num_prefix(model) == 3
    cos = cosine_per_layer(hidden_states(d, x))
    assert cos.shape == (SMALL["depth"] + 2,) and (cos.abs() <= 1).all()


def test_outlier_stats_finds_planted_outliers():
    norms = torch.ones(3, 10, 1 + 100)
    norms[1, :, 1:3] = 10.0  # layer 1: 2 of 100 patches per image stand far out
    norms[:, :, 0] = 50.0  # the CLS token is never counted
    s = outlier_stats(norms, num_prefix_tokens=1)
    torch.testing.assert_close(
        s["fraction_high"], torch.tensor([0.0, 0.02, 0.0], dtype=torch.float64)
    )
    assert s["max_over_median"][1] == 10.0 and s["max_over_median"][0] == 1.0


def test_linear_probe():
    torch.manual_seed(0)
    y = torch.randint(0, 4, (400,))
    x = F.one_hot(y, 4).float() + 0.1 * torch.randn(400, 4)
    assert linear_probe(x[:200], y[:200], x[200:], y[200:], 4) > 0.95
    noise = torch.randn(400, 4)
    assert linear_probe(noise[:200], y[:200], noise[200:], y[200:], 4) < 0.5


def test_test_time_register_moves_the_neurons():
    torch.manual_seed(0)
    model = VisionTransformer(**SMALL).eval()
    x = torch.rand(4, 3, 32, 32)
    neurons = register_neurons(model, x, top_k=3)
    assert len(neurons) == 3 and len(set(neurons)) == 3
    new = add_test_time_register(model, neurons)
    assert new.cfg.reg_tokens == 1 and model.cfg.reg_tokens == 0  # the model is untouched
    layer, n = neurons[0]
    act = tokens.mlp_activations(new, x, layer)  # (B, T, hidden), after the move
    before = tokens.mlp_activations(model, x, layer)
    assert (act[:, 2:, n] == 0).all()  # every patch gives up the neuron
    assert act[:, 1, n].max() > 0  # and the extra token holds it
    no_move = add_test_time_register(model, [])
    assert (no_move.reg_token == 0).all() and (no_move.pos_embed[0, 1] == 0).all()
    assert not torch.equal(before[:, 1:, n], act[:, 2:, n])
    with pytest.raises(ValueError, match="no neuron"):
        add_test_time_register(model, [(9, 0)])
    with pytest.raises(TypeError, match="plain ViT"):
        add_test_time_register(distilled(), [])


def test_patch_classifier_is_the_mean_of_patch_votes():
    torch.manual_seed(0)
    model = PatchClassifierViT(**SMALL).eval()
    assert model.cfg.class_token is False and model.cfg.global_pool == "avg"
    x = torch.rand(3, 3, 32, 32)
    feats = model.forward_features(x)
    per_patch = model.patch_logits(feats)
    assert per_patch.shape == (3, 64, 6)
    torch.testing.assert_close(model(x), per_patch.mean(1))
    # a linear head: the mean of the logits is the head on the mean of normalized tokens
    torch.testing.assert_close(model(x), model.head(model.fc_norm(feats).mean(1)))
    votes = MajorityVote(model)(x)
    counts = F.one_hot(per_patch.argmax(-1), 6).sum(1)
    assert torch.equal(votes.argmax(-1), counts.argmax(-1)) or (counts.max(1).values > 0).all()
    with pytest.raises(ValueError, match='global_pool="avg"'):
        PatchClassifierViT(**SMALL, global_pool="token", class_token=True)


def test_patch_vs_cls_record():
    path = DATA_DIR / "patch_vs_cls.json"
    if not path.is_file():
        pytest.skip("data/patch_vs_cls.json not built")
    record = json.loads(path.read_text())
    names = {r["name"] for r in record["rows"]}
    assert {"CLS token", "patch classification", "patch classification (vote)"} <= names
    assert len({r["seed"] for r in record["rows"]}) >= 3
    assert record["command"].startswith("python -m helpers.studies.tokens")


def test_shipped_file_names_its_rebuild_command(monkeypatch, tmp_path):
    assert distill.shipped_file("vit_reg0.pt").name == "vit_reg0.pt"
    monkeypatch.setattr(distill, "DATA_DIR", tmp_path)
    monkeypatch.setattr(distill, "data_file", lambda name: (_ for _ in ()).throw(FileNotFoundError))
    with pytest.raises(FileNotFoundError, match="python -m helpers.studies.distill teacher"):
        distill.shipped_file("cnn_teacher.pt")
    with pytest.raises(ValueError, match="not one of notebook 06's files"):
        distill.shipped_file("other.pt")


def test_records_hold_the_rebuild_commands():
    for name, command in distill.REBUILD.items():
        path = DATA_DIR / name
        if not path.is_file():
            continue
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["command"].replace(" --force", "") == command


def test_patch_study_refuses_to_replace_its_results_without_force(tmp_path, capsys):
    from helpers.studies import tokens

    out = tmp_path / "runs.json"
    out.write_text("{}")
    with pytest.raises(SystemExit):
        tokens.main(["--out", str(out)])
    assert "--force" in capsys.readouterr().err and out.read_text() == "{}"


def test_a_damaged_teacher_file_gets_a_clear_error(tmp_path):
    from helpers.studies.distill import load_cnn

    junk = tmp_path / "teacher.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(
        ValueError, match="not a readable CNN teacher.*helpers.studies.distill teacher"
    ):
        load_cnn(junk)
    with pytest.raises(FileNotFoundError, match="no CNN teacher at"):
        load_cnn(tmp_path / "missing.pt")


# --- the few-image study (claim 19) -------------------------------------------------------


def test_cutmix_mixes_the_labels_by_area():
    torch.manual_seed(0)
    x = torch.stack([torch.zeros(3, 32, 32), torch.ones(3, 32, 32)])
    y = torch.tensor([0, 1])
    for _ in range(20):
        mixed, soft = distill.cutmix(x, y, 6)
        assert soft.shape == (2, 6) and torch.allclose(soft.sum(1), torch.ones(2))
        for i in range(2):  # the label's share of class 1 is the share of image 1's pixels
            share_ones = mixed[i, 0].mean()
            assert torch.isclose(soft[i, 1], share_ones, atol=1e-6)


def test_curve_arms_share_their_draws_and_differ_in_the_dist_target():
    seen = []

    class Spy(torch.nn.Module):  # a "teacher" that records what it sees and says class 5
        def forward(self, x):
            seen.append(x.clone())
            return F.one_hot(torch.full((len(x),), 5), 6).float()

    x, y = ShapesDataset("val", n=8).batch(torch.arange(8))
    out = {}
    for arm, teacher in (("labels", None), ("teacher", Spy())):
        model = distilled()
        torch.manual_seed(3)
        loss, logits = distill.curve_loss_fn(teacher)(model, x, y)
        torch.manual_seed(3)
        xm, soft = distill.cutmix(distill.shift_augment(x), y, 6)
        c, d = model.forward_heads(model.forward_features(xm))
        target = soft if teacher is None else torch.full((8,), 5)
        expect = 0.5 * F.cross_entropy(c, soft) + 0.5 * F.cross_entropy(d, target)
        assert torch.isclose(loss, expect) and logits.shape == (8, 6)
        out[arm] = loss.item()
    assert torch.equal(seen[0], xm)  # the teacher labels the mixed image the student sees
    assert out["labels"] != out["teacher"]


def test_curve_run_refuses_bad_input():
    train_ds, test_ds = ShapesDataset("val", n=100), ShapesDataset("test", n=50)
    with pytest.raises(ValueError, match="choose one of"):
        distill.curve_run("both", 50, 0, train_ds, test_ds)
    with pytest.raises(ValueError, match="needs the teacher"):
        distill.curve_run("teacher", 50, 0, train_ds, test_ds)
    with pytest.raises(ValueError, match="multiples of the batch size"):
        distill.curve_run("labels", 75, 0, train_ds, test_ds)
    with pytest.raises(ValueError, match="more than the 100 training images"):
        distill.curve_run("labels", 150, 0, train_ds, test_ds)


def test_curve_command_writes_its_record(tmp_path, monkeypatch):
    monkeypatch.setattr(distill, "CURVE_STEPS", 2)
    monkeypatch.setattr(distill, "CURVE_MODEL", TINY)
    monkeypatch.setattr(distill, "ShapesDataset", lambda split, n=None: ShapesDataset(split, n=100))
    teacher = tmp_path / "t.pt"
    torch.manual_seed(0)
    save_cnn(SmallCNN(width=2), teacher, {"test_accuracy": 0.5})
    out = tmp_path / "curve.json"
    argv = ["curve", "--teacher", str(teacher), "--sizes", "50", "100", "--seeds", "0", "1"]
    record = distill.main(argv + ["--out", str(out)])
    assert json.loads(out.read_text()) == record
    assert len(record["rows"]) == 2 * 2 * 2 and record["teacher"]["test_accuracy"] == 0.5
    table = distill.curve_table(record["rows"])
    assert [t["n"] for t in table] == [50, 100] and all(t["seeds"] == [0, 1] for t in table)
    assert record["command"].startswith("python -m helpers.studies.distill curve")


def test_curve_record():
    path = DATA_DIR / "distill_curve.json"
    if not path.is_file():
        pytest.skip("data/distill_curve.json not built")
    record = json.loads(path.read_text())
    runs = {(r["arm"], r["n"], r["seed"]) for r in record["rows"]}
    assert len(runs) == len(record["rows"]) == 2 * len(record["sizes"]) * len(record["seeds"])
    assert len(record["seeds"]) >= 3 and min(record["sizes"]) <= 250
    assert record["steps"] == distill.CURVE_STEPS and record["model"] == distill.CURVE_MODEL
    for t in distill.curve_table(record["rows"]):  # every size has both arms on every seed
        assert t["seeds"] == sorted(record["seeds"])
