"""`python -m helpers.train --snapshots`: the weights at chosen steps, in one file."""

import json

import pytest
import torch

from helpers.checkpoint import load_checkpoint, load_snapshots, save_checkpoint, save_snapshots
from helpers.data import ShapesDataset
from helpers.model import VisionTransformer
from helpers.train import evaluate, main, parse_steps

ARGS = "--epochs 1 --embed-dim 16 --depth 1 --num-heads 2 --batch-size 64"


def test_cli_saves_the_weights_at_each_step_and_the_last_equals_plain_training(
    tmp_path, monkeypatch
):
    import helpers.train as T

    monkeypatch.setattr(T, "ShapesDataset", lambda split: ShapesDataset(split, n=256))
    plain = main(["--out", str(tmp_path / "m.pt"), *ARGS.split()])
    out = tmp_path / "snaps.pt"
    meta = main(["--out", str(out), "--snapshots", "4,1", *ARGS.split()])  # 4 steps in all
    models, saved = load_snapshots(out)
    assert sorted(models) == [1, 4] and saved == meta
    assert json.loads(out.with_suffix(".json").read_text()) == meta
    final, _ = load_checkpoint(tmp_path / "m.pt")
    for k, v in final.state_dict().items():  # the snapshot at the last step is the final model
        assert torch.equal(models[4].state_dict()[k], v)
    assert not torch.equal(models[1].head.weight, models[4].head.weight)
    assert meta["snapshot_test_accuracy"]["4"] == plain["test_accuracy"]
    test = ShapesDataset("test", n=256)
    assert meta["snapshot_test_accuracy"]["1"] == round(evaluate(models[1], test), 4)
    # training stops after the last snapshot, with the same weights up to there
    early = main(["--out", str(tmp_path / "early.pt"), "--snapshots", "1", *ARGS.split()])
    assert list(early["snapshot_test_accuracy"]) == ["1"]
    one, _ = load_snapshots(tmp_path / "early.pt")
    assert torch.equal(one[1].head.weight, models[1].head.weight)


def test_parse_steps_and_bad_steps():
    assert parse_steps("450, 50,150,50") == [50, 150, 450]
    for bad in ("a,b", "0,5", ""):
        with pytest.raises(ValueError, match="--snapshots"):
            parse_steps(bad)


def test_cli_refuses_a_step_past_the_end(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "s.pt"), "--snapshots", "999999", *ARGS.split()])
    assert "past the last step" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()


def test_load_snapshots_names_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="--snapshots"):
        load_snapshots(tmp_path / "none.pt")
    m = VisionTransformer(embed_dim=16, depth=1, num_heads=2)
    save_checkpoint(m, tmp_path / "one.pt")
    with pytest.raises(ValueError, match="use helpers.checkpoint.load_checkpoint"):
        load_snapshots(tmp_path / "one.pt")
    with pytest.raises(ValueError, match="no snapshots"):
        save_snapshots(m.cfg, {}, tmp_path / "empty.pt")


def test_a_snapshot_file_holding_code_is_refused_for_safety(tmp_path):
    import pickle

    path = tmp_path / "snap.pt"
    torch.save({"format": "x", "f": pickle.dumps}, path)  # a function: code, not data
    with pytest.raises(ValueError, match="refused for safety"):
        load_snapshots(path)
