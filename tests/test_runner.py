"""The experiment runner of notebooks 04 and 08: seeded runs, summaries, tables."""

import pytest

from helpers.data import ShapesDataset
from helpers.model import ViTConfig
from helpers.studies.runner import compare_configs, format_table, summarize_runs
from helpers.train import TrainConfig


def test_compare_configs_rows_are_seeded_and_complete():
    ds = ShapesDataset("train", n=256)
    val = ShapesDataset("val", n=64)
    configs = {"cls": {}, "gap, no CLS": {"global_pool": "avg", "class_token": False}}
    cfg = TrainConfig(epochs=1, batch_size=64, warmup_steps=2)
    base = ViTConfig(embed_dim=16, depth=1, num_heads=2)
    rows = compare_configs(configs, ds, val, cfg, seeds=(0, 1), base=base)
    assert [(r["name"], r["seed"]) for r in rows] == [
        ("cls", 0),
        ("cls", 1),
        ("gap, no CLS", 0),
        ("gap, no CLS", 1),
    ]
    assert all(0 <= r["accuracy"] <= 1 and r["seconds"] > 0 for r in rows)
    # dropping the CLS token removes the token and its position slot: 2 * D parameters
    assert rows[0]["parameters"] - rows[2]["parameters"] == 2 * 16
    again = compare_configs({"cls": {}}, ds, val, cfg, seeds=(1,), base=base)
    assert again[0]["accuracy"] == rows[1]["accuracy"]  # same seed, same run
    fake = {"name": "cls", "seed": 1, "accuracy": 0.5, "seconds": 1.0, "parameters": 7}
    mixed = compare_configs({"cls": {}}, ds, val, cfg, seeds=(0, 1), base=base, done=[fake])
    assert mixed[1] == fake  # the known run is kept, not retrained
    assert {k: v for k, v in mixed[0].items() if k != "seconds"} == {
        k: v for k, v in rows[0].items() if k != "seconds"
    }


def test_summarize_and_format_table():
    rows = [
        {"name": "a", "seed": 0, "accuracy": 0.5, "seconds": 1.0, "parameters": 10},
        {"name": "b", "seed": 0, "accuracy": 0.9, "seconds": 2.0, "parameters": 12},
        {"name": "a", "seed": 1, "accuracy": 0.7, "seconds": 3.0, "parameters": 10},
    ]
    s = summarize_runs(rows)
    assert [r["name"] for r in s] == ["a", "b"]
    a = s[0]
    assert a["runs"] == 2 and a["parameters"] == 10
    assert a["accuracy"] == pytest.approx(0.6)
    assert a["accuracy_std"] == pytest.approx(0.1414213, abs=1e-6)
    assert (a["accuracy_min"], a["accuracy_max"]) == (0.5, 0.7)
    assert s[1]["accuracy_std"] == 0.0  # a single run has no spread
    table = format_table(s).splitlines()
    assert len(table) == 4 and "60.0 ± 14.1" in table[2] and "50.0–70.0" in table[2]
    assert len({len(line) for line in table}) == 1  # aligned columns


def test_format_table_aligns_long_config_names():
    row = {"runs": 3, "parameters": 1000, "seconds": 1.0, "seconds_std": 0.1}
    row |= {"accuracy": 0.9, "accuracy_std": 0.01, "accuracy_min": 0.89, "accuracy_max": 0.91}
    rows = [dict(row, name="CLS"), dict(row, name="MAP, no CLS · lr 3e-3, 500 steps")]
    lines = format_table(rows).splitlines()
    assert len({len(line) for line in lines}) == 1  # every line as wide as the header
    assert lines[2].index(" 3 ") == lines[3].index(" 3 ")  # the columns line up
