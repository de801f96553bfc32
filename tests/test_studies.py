"""The studies that run as commands (notebooks 02 and 04): arguments, records, helpers."""

import json

import pytest
import torch

from helpers.data import ShapesDataset
from helpers.studies import pooling, pos_embed


@pytest.mark.parametrize("module", [pooling, pos_embed])
def test_bad_arguments_stop_before_any_work(module, tmp_path, capsys):
    for argv in (
        ["--out", str(tmp_path / "runs.txt")],
        ["--out", str(tmp_path / "no" / "runs.json")],
        ["--out", str(tmp_path / "runs.json"), "--seeds", "0"],
        ["--out", str(tmp_path / "runs.json"), "--threads", "-1"],
    ):
        with pytest.raises(SystemExit):
            module.main(argv)
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(SystemExit):
        module.main(["--out", str(tmp_path / "old.json")])  # no --force: keep the old record
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("module", [pooling, pos_embed])
def test_shipped_records_load_and_say_how_they_were_made(module, tmp_path):
    record = module.load_record()
    assert record["command"].startswith(f"python -m {module.__name__}")
    assert {"torch", "threads", "machine"} <= set(record)
    (tmp_path / "other.json").write_text(json.dumps({"test_accuracy": 0.9}))
    with pytest.raises(ValueError, match="rebuild it"):
        module.load_record(tmp_path / "other.json")


def test_pooling_record_has_every_variant_and_seed():
    record = pooling.load_record()
    names = {r["name"] for r in record["pooling"]}
    assert names == set(pooling.POOLS)
    assert pooling.find_run(record, "CLS", 0)["seed"] == 0
    with pytest.raises(KeyError, match="rebuild"):
        pooling.find_run(record, "CLS", 99)
    budgets = {r["budget"] for r in record["map_lag"]}
    assert budgets == set(pooling.LAG_BUDGETS)
    assert len(pooling.lag_summary(record["map_lag"])) == 2 * len(budgets)


def test_pos_embed_record_has_every_kind_and_its_check_run():
    record = pos_embed.load_record()
    assert {r["name"] for r in record["runs"]} == set(pos_embed.KINDS)
    assert all(set(pos_embed.SCORES) <= set(r) for r in record["runs"])
    check = record["check"]
    assert {k: check[k] for k in pos_embed.CHECK} == pos_embed.CHECK
    assert 1 / 6 < check["32x32"] < 1  # the check run learns something in its 100 steps


def test_canvas_and_upscale_keep_the_image():
    x = ShapesDataset("val", n=4).batch(torch.arange(4))[0]
    c = pos_embed.canvas(x)
    assert c.shape == (4, 3, 48, 48) and torch.equal(c[:, :, 8:40, 8:40], x)
    assert pos_embed.upscale(x).shape == (4, 3, 48, 48)
    with pytest.raises(ValueError, match="even"):
        pos_embed.canvas(x, size=47)
    with pytest.raises(ValueError, match="kind"):
        pos_embed.run_one("rope", 0, None, {})
