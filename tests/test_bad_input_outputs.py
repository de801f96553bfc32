"""Second round of hostile input, the guards every command shares: a diverging run writes
nothing, --out is claimed at the start and its .pt and .json are written as one pair, every
loader refuses a file it cannot trust and names the loader a file of the series needs."""

import json
import os
import subprocess
import sys

import pytest
import torch

import helpers.train as T
from helpers import checkpoint
from helpers.checkpoint import (
    OutputBusy,
    claim_output,
    load_checkpoint,
    load_snapshots,
    output_problem,
    save_checkpoint,
)
from helpers.data import ShapesDataset
from helpers.paths import data_file
from helpers.runtime import Diverged, check_loss, check_seed, require_finite
from tests.conftest import TINY, build

SMALL = "--epochs 1 --embed-dim 16 --depth 1 --num-heads 2 --batch-size 64"


@pytest.fixture
def small_data(monkeypatch):
    monkeypatch.setattr(T, "ShapesDataset", lambda split: ShapesDataset(split, n=128))


def test_a_diverging_run_stops_at_the_first_bad_loss_and_writes_nothing(
    tmp_path, capsys, small_data
):
    out = tmp_path / "m.pt"
    with pytest.raises(SystemExit) as info:
        T.main(["--out", str(out), *SMALL.split(), "--lr", "1e12", "--warmup-steps", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "training diverged" in err and "learning rate" in err
    assert "nothing was saved" in err and list(tmp_path.iterdir()) == []  # no lock left either


def test_check_loss_names_the_step_and_the_rate():
    assert check_loss(torch.tensor(0.5), 1) == 0.5
    with pytest.raises(Diverged, match=r"nan at step 3 \(learning rate 1000\)"):
        check_loss(torch.tensor(float("nan")), 3, 1000.0)


def test_a_diverged_model_is_neither_saved_nor_loaded(tmp_path):
    model = build(**TINY)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite weights.*head.weight"):
        save_checkpoint(model, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
    good = build(**TINY)
    save_checkpoint(good, tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["state_dict"]["cls_token"][..., 0] = float("inf")
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="diverged"):
        load_checkpoint(tmp_path / "bad.pt")


def test_a_newer_version_is_refused_by_every_loader(tmp_path):
    save_checkpoint(build(**TINY), tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "v99.pt")
    with pytest.raises(ValueError, match="version 99.*update it"):
        load_checkpoint(tmp_path / "v99.pt")


@pytest.mark.parametrize(
    "name, loader",
    [
        ("deit_student.pt", "load_distilled"),
        ("clip_lite.pt", "load_clip"),
        ("cnn_teacher.pt", "load_cnn"),
        ("vit_shapes_snapshots.pt", "load_snapshots"),
    ],
)
def test_load_checkpoint_names_the_loader_of_the_series_other_files(name, loader):
    with pytest.raises(ValueError, match=loader):
        load_checkpoint(data_file(name))


def test_load_snapshots_names_load_checkpoint():
    with pytest.raises(ValueError, match="load_checkpoint"):
        load_snapshots(data_file("vit_shapes.pt"))


def test_an_existing_record_needs_force_too(tmp_path):
    (tmp_path / "pooling_runs.json").write_text("{}")
    problem = output_problem(tmp_path / "pooling_runs.pt", ".pt")
    assert "pooling_runs.json exists: pass --force" in problem
    assert output_problem(tmp_path / "pooling_runs.pt", ".pt", force=True) is None


def test_a_folder_or_an_unwritable_folder_is_refused(tmp_path):
    assert "is a folder" in output_problem(tmp_path, ".pt")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: nothing to test
            pytest.skip("running as root")
        assert "not writable" in output_problem(locked / "m.pt", ".pt")
    finally:
        locked.chmod(0o700)


def test_a_second_run_to_the_same_out_is_refused_while_the_first_holds_it(tmp_path):
    out = tmp_path / "m.pt"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from helpers.checkpoint import claim_output\n"
            f"with claim_output({str(out)!r}):\n    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusy, match=f"process {holder.pid}.*is writing"):
            with claim_output(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with claim_output(out):  # the holder was killed: its lock is taken over
        assert (tmp_path / ".m.pt.lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".m.pt.lock").exists()


def test_a_failed_pair_write_leaves_the_old_pair(tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    save_checkpoint(build(**TINY), out, {"v": 1}, record=True)
    old_pt, old_json = out.read_bytes(), (tmp_path / "m.json").read_bytes()
    real = checkpoint.os.replace
    calls = []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", second_rename_fails)
    with pytest.raises(OSError):
        save_checkpoint(build(**TINY), out, {"v": 2}, record=True)
    monkeypatch.setattr(checkpoint.os, "replace", real)
    assert out.read_bytes() == old_pt and (tmp_path / "m.json").read_bytes() == old_json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt"]


def test_a_full_disk_while_writing_leaves_the_old_pair(tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    save_checkpoint(build(**TINY), out, {"v": 1}, record=True)
    before = json.loads((tmp_path / "m.json").read_text())
    real = checkpoint.os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            if data.startswith(b"{"):  # the record: the disk is full by now
                raise OSError("No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    with pytest.raises(OSError):
        save_checkpoint(build(**TINY), out, {"v": 2}, record=True)
    monkeypatch.setattr(checkpoint.os, "fdopen", real)
    assert json.loads((tmp_path / "m.json").read_text()) == before == load_checkpoint(out)[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt"]


def test_seeds_and_non_finite_scores_are_refused():
    assert check_seed(7) == 7
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(ValueError, match="seed must be"):
            check_seed(bad)
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        require_finite(torch.tensor([1.0, float("nan")]), "similarities")


@pytest.mark.parametrize(
    "argv", [["--seed", "-1"], ["--seed", str(2**32)], ["--threads", "100000"]]
)
def test_train_refuses_seeds_and_threads_out_of_range_before_any_work(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as info:
        T.main(["--out", str(tmp_path / "m.pt"), *argv])
    assert info.value.code == 2 and "must be between 0" in capsys.readouterr().err
