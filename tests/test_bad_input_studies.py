"""Hostile input to the study commands (helpers.studies): their model files go through the
one checked loader path, their --out is claimed for the run, a repeated seed or part is
refused, and the teacher of a distilled student is checked before any work."""

import json
import os

import pytest
import torch

from helpers.checkpoint import save_checkpoint
from helpers.data import ShapesDataset
from helpers.model import VisionTransformer
from helpers.runtime import Diverged
from helpers.studies import distill, pooling, pos_embed, practices, tokens
from helpers.studies.distill import DistilledViT, SmallCNN, load_cnn, load_distilled, save_cnn
from tests.conftest import TINY


def no_work(*args, **kwargs):
    raise AssertionError("the command started work before refusing its input")


def hold_lock(out):
    """A lock on `out` held by a live process other than this one (pytest's parent)."""
    (out.parent / f".{out.name}.lock").write_text(str(os.getppid()))


def small_cnn():
    torch.manual_seed(0)
    return SmallCNN(width=2).eval()


def rewrite(path, **changes):
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


# --- helpers.studies.distill: loaders --------------------------------------------------------


def test_load_cnn_checks_version_shapes_and_kind(tmp_path):
    path = tmp_path / "t.pt"
    save_cnn(small_cnn(), path, {"test_accuracy": 0.5})
    model, meta = load_cnn(path)
    assert meta == {"test_accuracy": 0.5} and not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    rewrite(path, version=99)
    with pytest.raises(ValueError, match="version 99"):
        load_cnn(path)
    save_cnn(small_cnn(), path)
    rewrite(path, config={"in_chans": 3, "num_classes": 6, "width": 4})  # weights of width 2
    with pytest.raises(ValueError, match="do not fit"):
        load_cnn(path)
    rewrite(path, config={"in_chans": 3, "num_classes": 6, "width": 2, "depth": 9})
    with pytest.raises(ValueError, match="does not know"):
        load_cnn(path)
    rewrite(path, config={"in_chans": 3, "num_classes": 6, "width": -1})
    with pytest.raises(ValueError, match="invalid config"):
        load_cnn(path)


def test_load_cnn_names_the_loader_of_a_vit_file(tmp_path):
    save_checkpoint(VisionTransformer(**TINY), tmp_path / "vit.pt")
    with pytest.raises(ValueError, match=r"helpers\.checkpoint\.load_checkpoint"):
        load_cnn(tmp_path / "vit.pt")
    save_checkpoint(DistilledViT(**TINY), tmp_path / "s.pt")
    with pytest.raises(ValueError, match="not a CNN teacher"):
        load_cnn(tmp_path / "s.pt")


def test_load_distilled_checks_version_and_shapes(tmp_path):
    path = tmp_path / "s.pt"
    model = DistilledViT(**TINY).eval()
    save_checkpoint(model, path)
    back, _ = load_distilled(path)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(back(x), model(x))
    rewrite(path, version=99)
    with pytest.raises(ValueError, match="version 99"):
        load_distilled(path)
    save_checkpoint(model, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["dist_token"] = torch.zeros(1, 1, 3)
    torch.save(payload, path)
    with pytest.raises(ValueError, match="dist_token"):
        load_distilled(path)
    save_cnn(small_cnn(), tmp_path / "t.pt")
    with pytest.raises(ValueError, match="load_cnn"):
        load_distilled(tmp_path / "t.pt")


def test_save_cnn_writes_the_record_with_the_weights(tmp_path):
    save_cnn(small_cnn(), tmp_path / "t.pt", {"test_accuracy": 0.25}, record=True)
    assert json.loads((tmp_path / "t.json").read_text()) == {"test_accuracy": 0.25}
    save_cnn(small_cnn(), tmp_path / "u.pt", {"test_accuracy": 0.25})
    assert not (tmp_path / "u.json").exists()


# --- helpers.studies.distill: the command ----------------------------------------------------


def test_student_teacher_is_checked_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(distill, "ShapesDataset", no_work)
    monkeypatch.setattr(distill, "train", no_work)
    save_checkpoint(VisionTransformer(**TINY), tmp_path / "vit.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    for bad in ("vit.pt", "junk.pt"):
        argv = ["student", "--teacher", str(tmp_path / bad), "--out", str(tmp_path / "s.pt")]
        with pytest.raises(SystemExit) as e:
            distill.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "is not a CNN teacher" in err and bad in err
    assert not (tmp_path / "s.pt").exists()


def test_student_teacher_error_names_the_vit_loader(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(distill, "ShapesDataset", no_work)
    save_checkpoint(VisionTransformer(**TINY), tmp_path / "vit.pt")
    with pytest.raises(SystemExit):
        distill.main(
            ["student", "--teacher", str(tmp_path / "vit.pt"), "--out", str(tmp_path / "s.pt")]
        )
    assert "helpers.checkpoint.load_checkpoint" in capsys.readouterr().err


def test_distill_refuses_an_out_another_run_holds(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(distill, "ShapesDataset", no_work)
    out = tmp_path / "m.pt"
    hold_lock(out)
    with pytest.raises(SystemExit) as e:
        distill.main(["vit", "--out", str(out)])
    assert e.value.code == 2 and "another run" in capsys.readouterr().err


def small_data(split, n=None):
    return ShapesDataset(split, n=128)


def test_distill_diverged_run_writes_nothing(tmp_path, capsys, monkeypatch):
    def diverge(*args, **kwargs):
        raise Diverged("the loss became nan at step 1: lower the learning rate.")

    monkeypatch.setattr(distill, "ShapesDataset", small_data)
    monkeypatch.setattr(distill, "train", diverge)
    out = tmp_path / "t.pt"
    with pytest.raises(SystemExit) as e:
        distill.main(["teacher", "--epochs", "1", "--out", str(out)])
    assert e.value.code == 1 and "nan" in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not (tmp_path / ".t.pt.lock").exists()


def test_distill_writes_pt_and_json_as_a_pair(tmp_path, monkeypatch):
    monkeypatch.setattr(distill, "ShapesDataset", small_data)
    monkeypatch.setattr(distill, "SmallCNN", lambda **kw: SmallCNN(**{"width": 2, **kw}))
    out = tmp_path / "t.pt"
    meta = distill.main(["teacher", "--epochs", "1", "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text()) == meta
    model, saved = load_cnn(out)
    assert saved == meta and model.config["width"] == 2
    student = tmp_path / "s.pt"
    meta = distill.main(
        ["student", "--teacher", str(out), "--depth", "1", "--epochs", "1", "--out", str(student)]
    )
    assert json.loads(student.with_suffix(".json").read_text()) == meta
    assert load_distilled(student)[1] == meta


# --- helpers.studies.tokens ------------------------------------------------------------------


def test_tokens_refuses_a_seed_given_twice(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tokens, "ShapesDataset", no_work)
    out = str(tmp_path / "r.json")
    with pytest.raises(SystemExit) as e:
        tokens.main(["--seeds", "0", "0", "--out", out])
    assert e.value.code == 2
    assert "more than once" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tokens.main(["--seeds", "-1", "--out", out])  # the range, checked by parse_command
    assert "between 0 and" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tokens.main(["--seeds", str(2**32), "--out", out])
    assert "between 0 and" in capsys.readouterr().err


def test_tokens_refuses_an_out_another_run_holds(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tokens, "ShapesDataset", no_work)
    out = tmp_path / "r.json"
    hold_lock(out)
    with pytest.raises(SystemExit):
        tokens.main(["--out", str(out)])
    assert "another run" in capsys.readouterr().err


# --- helpers.studies.practices, pooling, pos_embed -------------------------------------------


def test_practices_refuses_a_part_given_twice(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(practices, "run_study", no_work)
    with pytest.raises(SystemExit) as e:
        practices.main(["--only", "init,init", "--out", str(tmp_path / "r.json")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "init more than once" in err and "--only init" in err


@pytest.mark.parametrize("module", [practices, pooling, pos_embed])
def test_studies_refuse_an_out_another_run_holds(module, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(module, "run_study", no_work)
    out = tmp_path / "r.json"
    hold_lock(out)
    with pytest.raises(SystemExit) as e:
        module.main(["--out", str(out)])
    assert e.value.code == 2 and "another run" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("module", [practices, pooling, pos_embed])
def test_studies_diverged_run_writes_nothing(module, tmp_path, capsys, monkeypatch):
    def diverge(*args, **kwargs):
        raise Diverged("the loss became inf at step 3: lower the learning rate.")

    monkeypatch.setattr(module, "run_study", diverge)
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        module.main(["--out", str(out)])
    assert e.value.code == 1 and "inf at step 3" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / ".r.json.lock").exists()


def test_distill_curve_refuses_bad_sizes_and_seeds_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(distill, "ShapesDataset", no_work)
    monkeypatch.setattr(distill, "train", no_work)
    out = str(tmp_path / "c.json")
    for argv, message in (
        (["--sizes", "75"], "multiple of the batch size"),
        (["--sizes", "0"], "multiple of the batch size"),
        (["--sizes", "40000"], "multiple of the batch size"),
        (["--sizes", "250", "250"], "more than once"),
        (["--seeds", "1", "1"], "more than once"),
        (["--seeds", "0"], "at least 2 seeds"),
        (["--teacher", str(tmp_path / "none.pt")], "no teacher at"),
    ):
        with pytest.raises(SystemExit) as e:
            distill.main(["curve", *argv, "--out", out])
        assert e.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the curve writes JSON, not a checkpoint
        distill.main(["curve", "--out", str(tmp_path / "c.pt")])
    assert "must end in .json" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
