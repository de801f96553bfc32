"""Tests for the helpers.train functions used by 04_classification: confusion matrix and
the multi-seed comparison of configs."""

import pytest
import torch

from helpers.data import ShapesDataset
from helpers.model import VisionTransformer, ViTConfig
from helpers.train import (
    TrainConfig,
    compare_configs,
    confusion_matrix,
    evaluate,
    format_table,
    summarize_runs,
)


class Constant(torch.nn.Module):
    """Predicts class `k` for every image (a stand-in model with a `head`)."""

    def __init__(self, k, classes=6):
        super().__init__()
        self.k = k
        self.head = torch.nn.Linear(1, classes)

    def forward(self, x):
        out = torch.zeros(len(x), self.head.out_features)
        out[:, self.k] = 1.0
        return out


def test_confusion_matrix_counts_true_rows_predicted_columns():
    y = torch.tensor([0, 1, 1, 2, 5, 5, 5])
    x = torch.zeros(len(y), 3, 32, 32)
    cm = confusion_matrix(Constant(1), (x, y), batch_size=3)
    assert cm.shape == (6, 6) and cm.dtype == torch.long
    assert cm.sum() == len(y)
    assert cm[:, 1].tolist() == [1, 2, 1, 0, 0, 3]  # everything predicted as class 1
    assert cm.sum(1).tolist() == torch.bincount(y, minlength=6).tolist()


def test_confusion_matrix_diagonal_matches_accuracy():
    torch.manual_seed(0)
    m = VisionTransformer(dim=16, depth=1, heads=2).eval()
    ds = ShapesDataset("test", n=60)
    cm = confusion_matrix(m, ds, batch_size=25)
    assert cm.sum() == 60
    assert cm.diag().sum().item() / 60 == pytest.approx(evaluate(m, ds))


def test_compare_configs_rows_are_seeded_and_complete():
    ds = ShapesDataset("train", n=256)
    val = ShapesDataset("val", n=64)
    configs = {"cls": {}, "gap, no CLS": {"pool": "gap", "class_token": False}}
    cfg = TrainConfig(epochs=1, batch_size=64, warmup_steps=2)
    base = ViTConfig(dim=16, depth=1, heads=2)
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
