"""Notebook 08's machinery: a learning rate per parameter (or token slot), the runner's hooks
for other tasks, and the study's targets, scores, models and record."""

import json
import math

import pytest
import torch

from helpers.data import ShapesDataset
from helpers.model import VisionTransformer, ViTConfig
from helpers.studies import practices as ps
from helpers.studies.runner import compare_configs, format_table, summarize_runs
from helpers.train import TrainConfig, parse_lr_scale, train

TINY = dict(embed_dim=16, depth=1, num_heads=2)
CFG = TrainConfig(epochs=1, batch_size=32, warmup_steps=2, lr=3e-3)


@pytest.fixture(scope="module")
def small():
    return ShapesDataset("train", n=128), ShapesDataset("val", n=64)


def trained(ds, **kw):
    torch.manual_seed(0)
    model = VisionTransformer(**TINY)
    start = model.cls_token.detach().clone()
    hist = train(model, ds, None, CFG, progress=False, **kw)
    return model, start, hist


def test_empty_lr_scale_is_the_default(small):
    a, _, ha = trained(small[0])
    b, _, hb = trained(small[0], lr_scale={})
    assert ha.step_loss == hb.step_loss
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_slot_learns_as_with_its_own_rate(small):
    """Scaling a slot's step (cls_token[0]) equals a parameter group at that rate."""
    group, start, _ = trained(small[0], lr_scale={"cls_token": 3.0})
    slot, _, _ = trained(small[0], lr_scale={"cls_token[0]": 3.0})
    torch.testing.assert_close(slot.cls_token, group.cls_token, atol=1e-5, rtol=1e-4)
    plain, _, _ = trained(small[0])
    moved = lambda m: (m.cls_token - start).norm().item()  # noqa: E731
    assert moved(group) > 2 * moved(plain)  # 3x the rate: it moves much further
    # pos_embed[0] alone changes only slot 0's rate: the other slots move as before
    slot0, _, _ = trained(small[0], lr_scale={"pos_embed[0]": 10.0})
    assert not torch.allclose(slot0.pos_embed[0, 0], plain.pos_embed[0, 0])


def test_bad_lr_scale_is_named():
    model = VisionTransformer(**TINY)
    for bad, match in (
        ({"cls": 2.0}, "not a parameter"),
        ({"cls_token": 0}, "> 0"),
        ({"cls_token": True}, "> 0"),
        ({"pos_embed[99]": 2.0}, "slot"),
        ({"pos_embed[x]": 2.0}, "slot"),
        ({"head.weight[0]": 2.0}, r"\(1, T, D\)"),
        ({"pos_embed": 2.0, "pos_embed[0]": 3.0}, "choose one"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_lr_scale(model, bad)
    with pytest.raises(TypeError, match="dict"):
        parse_lr_scale(model, [("cls_token", 2.0)])


def test_a_loss_without_logits_trains_and_reports_no_accuracy(small):
    ds = ps.TargetSet(small[0], torch.randn(len(small[0]), 1))
    torch.manual_seed(0)
    model = VisionTransformer(**TINY, num_classes=1)
    hist = train(model, ds, None, CFG, progress=False, loss_fn=ps.mse_loss)
    assert math.isnan(hist.train_acc[0]) and math.isfinite(hist.train_loss[0])


def test_runner_hooks(small):
    ds, val = small
    seen = []

    def make(overrides, base):
        seen.append(overrides)
        return VisionTransformer(base, **overrides)

    def score(model, data):
        return {"half": 0.5}

    def measure(model, hist, start):
        return {"moved": (model.cls_token - start["cls_token"]).norm().item()}

    rows = compare_configs(
        {"a": {"drop_rate": 0.1}}, ds, val, CFG, (0,), ViTConfig(**TINY),
        make_model=make, score=score, measure=measure,
        train_kwargs=dict(val_data=val, eval_every=2),
    )  # fmt: skip
    assert seen == [{"drop_rate": 0.1}]
    assert rows[0]["half"] == 0.5 and rows[0]["moved"] > 0 and "accuracy" not in rows[0]
    with pytest.raises(TypeError, match="score"):
        compare_configs({"a": {}}, ds, val, CFG, (0,), ViTConfig(**TINY), score=1)


def test_format_table_other_metrics():
    rows = [
        {"name": "size · CLS", "seed": s, "r2": v, "seconds": 1.0, "parameters": 5}
        for s, v in enumerate((0.5, 0.7))
    ]
    table = format_table(summarize_runs(rows, keys=("r2", "seconds")), "r2", "R²", False, 2)
    assert "R² (mean ± std)" in table and "0.60 ± 0.14" in table and "0.50–0.70" in table
    assert "train s" not in format_table(summarize_runs(rows, ("r2",)), "r2", time=False)
    with pytest.raises(KeyError, match="summarize_runs"):
        format_table(summarize_runs(rows, keys=("r2",)), "accuracy")


def test_targets_and_scores(small):
    ds = small[1]
    assert ps.task_labels(ds, "colour").max() <= 5
    round_ = ps.task_labels(ds, "round or angular")
    assert set(round_.tolist()) == {0, 1} and round_.float().mean() < 0.5  # 2 of 6 shapes
    assert ps.regression_targets(ds, "position").shape == (len(ds), 2)
    masks = ps.object_patches(ds)
    assert masks.shape == (len(ds), 64) and (masks.sum(1) > 0).all()
    y = torch.randn(10, 2)
    assert ps.r2_score(y, y) == pytest.approx(1.0)
    assert ps.r2_score(y.mean(0).expand_as(y), y) == pytest.approx(0.0)
    assert ps.mask_iou(masks * 2 - 1, masks) == 1.0
    assert ps.mask_iou(-torch.ones_like(masks), masks) == 0.0
    for bad in (lambda: ps.task_labels(ds, "size"), lambda: ps.regression_targets(ds, "shape")):
        with pytest.raises(ValueError, match="choose"):
            bad()
    with pytest.raises(ValueError, match="shape"):
        ps.r2_score(torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="one per image"):
        ps.TargetSet(ds, torch.zeros(3))


def test_models_for_the_other_tasks(small):
    x = small[1].batch(torch.arange(4))[0]
    for read in ps.MASK_READS:
        assert ps.MaskModel(ViTConfig(**TINY), read)(x).shape == (4, 64)
    with pytest.raises(ValueError, match="read"):
        ps.MaskModel(ViTConfig(**TINY), "both")
    trainable = {
        m: {n for n, p in ps.finetune_model(m, 2).named_parameters() if p.requires_grad}
        for m in ps.FT_METHODS
    }
    assert trainable["linear probe"] == {"head.weight", "head.bias"}
    assert trainable["head + CLS token"] == {"head.weight", "head.bias", "cls_token"}
    assert trainable["full fine-tuning"] == trainable["from scratch"]
    tuned, scratch = ps.finetune_model("linear probe", 2), ps.finetune_model("from scratch", 2)
    assert tuned.head.out_features == 2 and not torch.equal(tuned.cls_token, scratch.cls_token)
    with pytest.raises(ValueError, match="method"):
        ps.finetune_model("lora", 2)
    f = ps.pooled_features(VisionTransformer(**TINY), x)
    assert f["CLS + mean"].shape == (4, 32)
    assert torch.equal(f["CLS + mean"], torch.cat([f["CLS"], f["mean of patches"]], 1))


def test_steps_to_target():
    assert ps.steps_to([20, 40, 60], [0.5, 0.85, 0.95], 0.8) == 40
    assert ps.steps_to([20, 40], [0.5, 0.6], 0.8) is None


def test_bad_arguments_stop_before_any_work(tmp_path, capsys):
    for argv in (
        ["--out", str(tmp_path / "runs.txt")],
        ["--out", str(tmp_path / "no" / "runs.json")],
        ["--out", str(tmp_path / "runs.json"), "--only", "init,nope"],
        ["--out", str(tmp_path / "runs.json"), "--seeds", "-1"],
        ["--out", str(tmp_path / "runs.json"), "--threads", "-1"],
        ["--out", str(tmp_path / "runs.json"), "--jobs", "0"],
    ):
        with pytest.raises(SystemExit):
            ps.main(argv)
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(SystemExit):
        ps.main(["--out", str(tmp_path / "old.json")])
    assert "--force" in capsys.readouterr().err
    with pytest.raises(ValueError, match="scale"):
        ps.live_check(scale=3.0)
    with pytest.raises(ValueError, match="seed"):
        ps.live_check(seed=-1)


def test_shipped_record_is_complete(tmp_path):
    record = ps.load_record()
    assert record["command"].startswith("python -m helpers.studies.practices")
    assert {"torch", "threads", "machine"} <= set(record)
    assert {r["name"] for r in record["init"]} == set(ps.INITS)
    assert {r["scale"] for r in record["cls_lr"]} == set(ps.CLS_LR_SCALES)
    assert {r["method"] for r in record["finetune"]} == set(ps.FT_METHODS)
    assert {r["features"] for r in record["global"]["probes"]} == set(ps.PROBE_FEATURES)
    assert ps.find_run(record["cls_lr"], ps.cls_lr_name(10.0), 0)["seed"] == 0
    assert set(record["made_by"]) == set(ps.PARTS)  # which command made each part
    for part in ps.PARTS:
        assert ps.part_provenance(record, part)["command"].startswith("python -m helpers.")
    nd = record["no_decay_tokens"]
    assert [(r["name"], r["seed"]) for r in nd["init"]] == [
        (r["name"], r["seed"]) for r in record["init"]
    ]  # paired by seed with the "init" part
    assert {r["method"] for r in record["finetune_long"]["runs"]} == set(ps.FT_LONG_RUNS)
    assert {r["steps"] for r in record["finetune_long"]["converged"]} == set(ps.PROBE_STEPS)
    assert {r["read"] for r in record["mask_fair"]["frozen"]} == set(ps.MASK_READS)
    with pytest.raises(KeyError, match="rebuild"):
        ps.find_run(record["init"], "zeros", 99)
    (tmp_path / "other.json").write_text('{"command": "x"}')
    with pytest.raises(ValueError, match="rebuild it"):
        ps.load_record(tmp_path / "other.json")


def test_merge_keeps_the_other_parts_and_says_who_made_them(tmp_path, monkeypatch):
    calls = []

    def fake(parts, seeds=None, progress=True):
        calls.append(list(parts))
        return {p: [{"name": p, "seed": 0}] for p in parts}

    monkeypatch.setattr(ps, "run_study", fake)
    out = tmp_path / "r.json"
    ps.main(["--out", str(out), "--only", "init,cls_lr"])
    first = json.loads(out.read_text())
    assert not first["complete"] and set(first["made_by"]) == {"init", "cls_lr"}
    ps.main(["--out", str(out), "--only", "cls_lr", "--merge", "--force", "--threads", "1"])
    rec = json.loads(out.read_text())
    assert rec["init"] == first["init"] and calls[-1] == ["cls_lr"]
    assert "--merge" in rec["made_by"]["cls_lr"]["command"]
    assert rec["made_by"]["init"] == first["made_by"]["init"]
    with pytest.raises(SystemExit):  # nothing to merge with
        ps.main(["--out", str(tmp_path / "new.json"), "--only", "init", "--merge"])


def test_balanced_mask_losses_and_probes():
    t = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]])
    assert ps.balance(t) == 3.0
    with pytest.raises(ValueError, match="nothing to balance"):
        ps.balance(torch.zeros(2, 4))
    torch.manual_seed(0)
    x = torch.randn(200, 3)
    y = torch.stack([(x[:, 0] > 1).float(), (x[:, 1] > 0).float()], 1)  # 16% and 50% positives
    predict = ps.fit_mask_probe(x, y, pos_weight=ps.balance(y))
    assert ((predict(x) > 0) == (y > 0.5)).double().mean() > 0.9  # separable: it fits
    model = torch.nn.Linear(3, 2)
    a = ps.weighted_bce(1.0)(model, x, y)[0]
    b = ps.bce_loss(model, x, y)[0]
    assert torch.allclose(a, b) and ps.weighted_bce(5.0)(model, x, y)[0] > a


def test_seed_values_line_up_by_seed():
    rows = [{"name": "a", "seed": 2, "accuracy": 0.3}, {"name": "a", "seed": 0, "accuracy": 0.1}]
    rows.append({"name": "b", "seed": 0, "accuracy": 0.9})
    assert ps.seed_values(rows, "a", scale=100) == [10.0, 30.0]
    with pytest.raises(KeyError, match="rebuild"):
        ps.seed_values(rows, "c")


def test_a_probe_as_the_head_predicts_what_the_probe_does():
    from helpers.probes import fit_probe

    torch.manual_seed(0)
    model = VisionTransformer(**TINY, num_classes=3).eval()
    x = ShapesDataset("val", n=40).images.float() / 255
    f = ps.pooled_features(model, x)["CLS"]
    probe = fit_probe(f, torch.arange(40) % 3, num_classes=3, steps=20)
    with torch.no_grad():
        assert torch.allclose(ps.probe_as_head(model, probe)(x), probe(f), atol=1e-4)
