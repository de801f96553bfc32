"""Clumsy and hostile input, as a learner may give it: each case ends in the right result or
in a clear error that names the problem and the fix; no case loses a file, hangs, or returns
a wrong answer silently. (Downloads, uploads, the explorer and the exercise checks:
test_bad_input_part2.py.)"""

import json
import math
import os
import time

import numpy as np
import pytest
import torch

import helpers.train as T
from helpers.attention import cls_attention, cls_maps, get_attention, mass_on_object, rollout
from helpers.checkpoint import FORMAT, load_checkpoint, read_checkpoint, save_checkpoint
from helpers.data import ShapesDataset
from helpers.model import as_images
from helpers.paths import data_file
from helpers.train import TrainConfig, evaluate, predict, predictions, train
from tests.conftest import TINY, build

# --------------------------------------------------------------------------------------
# The training command: lost work (items 1-3)
# --------------------------------------------------------------------------------------


@pytest.fixture
def no_dataset(monkeypatch):
    """Fail if the command builds the dataset: refusals must come before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was built before the arguments were checked")

    monkeypatch.setattr(T, "ShapesDataset", refuse)


def refusal(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        T.main(argv)
    assert info.value.code == 2  # argparse's usage error: a message, no traceback
    return capsys.readouterr().err


def test_out_with_json_suffix_is_refused_and_nothing_written(tmp_path, capsys, no_dataset):
    out = tmp_path / "model.json"
    assert "must end in .pt" in refusal(["--out", str(out)], capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        ("--batch-size -5", "batch_size must be a whole number >= 1"),
        ("--batch-size 0", "batch_size must be a whole number >= 1"),
        ("--batch-size 30000", "larger than the 20000 images"),
        ("--epochs 0", "epochs must be a whole number >= 1"),
        ("--lr -1", "lr must be a number > 0"),
        ("--lr nan", "lr must be a number > 0"),
        ("--warmup-steps -3", "warmup_steps must be a whole number >= 0"),
        ("--label-smoothing 1.5", "label_smoothing must be in [0, 1)"),
        ("--embed-dim 30 --num-heads 4", "not divisible by num_heads"),
        ("--depth 0", "--depth and --embed-dim must be >= 1"),
        ("--threads -1", "--threads must be between 0"),
    ],
)
def test_nonsense_numbers_are_refused_before_any_work(tmp_path, capsys, no_dataset, args, message):
    out = tmp_path / "m.pt"
    start = time.perf_counter()
    assert message in refusal(["--out", str(out), *args.split()], capsys)
    assert time.perf_counter() - start < 5 and not out.exists()


def test_an_existing_checkpoint_needs_force(tmp_path, capsys, no_dataset):
    out = tmp_path / "m.pt"
    save_checkpoint(build(**TINY), out, {"v": 1})
    before = out.read_bytes()
    assert "pass --force" in refusal(["--out", str(out), "--batch-size", "-5"], capsys)
    assert "pass --force" in refusal(["--out", str(out)], capsys)
    assert out.read_bytes() == before
    assert "does not exist" in refusal(["--out", str(tmp_path / "no" / "m.pt")], capsys)


def test_force_replaces_it_and_the_record_is_written_beside_it(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "ShapesDataset", lambda split: ShapesDataset(split, n=128))
    out = tmp_path / "m.pt"
    save_checkpoint(build(**TINY), out, {"v": 1})
    (tmp_path / ".m.json.abc.tmp").write_text("left by a killed write")
    old = time.time() - 3600
    os.utime(tmp_path / ".m.json.abc.tmp", (old, old))
    args = "--epochs 1 --embed-dim 16 --depth 1 --num-heads 2 --batch-size 64 --force"
    meta = T.main(["--out", str(out), *args.split()])
    assert load_checkpoint(out)[1] == meta == json.loads((tmp_path / "m.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt"]  # no *.tmp left


def test_a_failed_record_write_keeps_the_old_record(tmp_path, monkeypatch):
    from helpers import checkpoint

    record = tmp_path / "m.json"
    checkpoint.atomic_write(record, b'{"v": 1}')

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint.os, "replace", disk_full)
    with pytest.raises(OSError):
        checkpoint.atomic_write(record, b'{"v": 2}')
    assert record.read_text() == '{"v": 1}' and [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_train_refuses_a_batch_larger_than_the_data():
    ds = ShapesDataset("train", n=40)
    with pytest.raises(ValueError, match="larger than the 40 training images"):
        train(build(**TINY), ds, cfg=TrainConfig(batch_size=64), progress=False)
    with pytest.raises(ValueError, match="eval_every"):
        train(build(**TINY), ds, ds, TrainConfig(batch_size=8), progress=False, eval_every=0)


# --------------------------------------------------------------------------------------
# Images the model is given (items 4 and 8)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch():
    ds = ShapesDataset("test", n=8)
    return ds.images[:4], ds.labels[:4]  # uint8 (4, 3, 32, 32), labels


def test_uint8_and_numpy_images_just_work(batch):
    raw, labels = batch
    m = build(**TINY)
    want = m(raw.float() / 255)
    torch.testing.assert_close(m(raw), want)  # uint8: 0..255 scaled for you
    torch.testing.assert_close(m(raw.numpy()), want)  # numpy uint8
    torch.testing.assert_close(m((raw.float() / 255).numpy()), want)  # numpy float32
    torch.testing.assert_close(m(raw.double() / 255), want)  # float64
    torch.testing.assert_close(m((raw.float() / 255).half()), want, atol=2e-3, rtol=2e-3)
    assert evaluate(m, (raw, labels)) == evaluate(m, (raw.float() / 255, labels))
    assert predict(m, raw.numpy()).shape == (4, 6)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda x: x.float(), ValueError, "divide 0..255 values by 255"),
        (lambda x: x.float() / 255 - 5, ValueError, r"pixel values run from -5"),
        (lambda x: torch.where(x == x.max(), float("nan"), x.float() / 255), ValueError, "NaN"),
        (lambda x: (x.float() / 255).tolist(), TypeError, "torch.stack"),
        (lambda x: x.long(), TypeError, "float in \\[0, 1\\] \\(or uint8"),
    ],
    ids=["0..255 floats", "far below 0", "a NaN pixel", "a list", "int64"],
)
def test_wrong_pixel_values_are_refused_with_the_fix(batch, make, error, message):
    raw, labels = batch
    m = build(**TINY)
    with pytest.raises(error, match=message):
        m(make(raw))
    if error is ValueError:  # evaluate() must not count a wrong answer as a class either
        with pytest.raises(error, match=message):
            evaluate(m, (make(raw), labels))


def test_empty_batches_and_zero_batch_sizes_are_named(batch):
    raw, labels = batch
    m = build(**TINY)
    empty = torch.zeros(0, 3, 32, 32)
    with pytest.raises(ValueError, match="batch is empty"):
        m(empty)
    with pytest.raises(ValueError, match="no images to predict"):
        predict(m, empty)
    with pytest.raises(ValueError, match="no images"):
        cls_maps(m, empty)
    with pytest.raises(ValueError, match="dataset is empty"):
        evaluate(m, (empty, torch.zeros(0, dtype=torch.long)))
    with pytest.raises(TypeError, match="expected a dataset with .batch"):
        evaluate(m, [])
    for call in (
        lambda: predict(m, raw, batch_size=0),
        lambda: predictions(m, (raw, labels), batch_size=-1),
        lambda: cls_maps(m, raw, batch_size=0),
    ):
        with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
            call()
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        evaluate(m, (raw, labels[:3]))


# --------------------------------------------------------------------------------------
# Attention tools (item 6)
# --------------------------------------------------------------------------------------


def test_attention_tools_check_shapes_and_argument_types(batch):
    m = build(**TINY)
    _, attn = get_attention(m, batch[0])  # (1, 4, 2, 65, 65)
    with pytest.raises(ValueError, match=r"one layer, e.g. attn\[0\]"):
        rollout(attn[0])
    with pytest.raises(TypeError, match="head must be a head index"):
        cls_attention(attn, head=True)
    with pytest.raises(ValueError, match="head 5 does not exist"):
        cls_attention(attn, head=5)
    with pytest.raises(ValueError, match="layer must be a whole number in 0..0"):
        cls_attention(attn, layer=3)
    with pytest.raises(ValueError, match="same images on the same grid"):
        mass_on_object(torch.rand(4, 8, 8), torch.ones(3, 32, 32, dtype=torch.bool), 4)
    assert cls_attention(attn, layer=-1, head=-1).shape == (4, 8, 8)  # Python-style indices


# --------------------------------------------------------------------------------------
# Checkpoints (item 7) and the shipped files (item 13)
# --------------------------------------------------------------------------------------


def forged(tmp_path, name="f.pt", **changes):
    payload = {
        "format": FORMAT,
        "version": 2,
        "config": build(**TINY).cfg.to_dict(),
        "state_dict": build(**TINY).state_dict(),
        "meta": {},
    }
    payload.update(changes)
    torch.save(payload, tmp_path / name)
    return tmp_path / name


def test_a_config_asking_for_a_huge_model_allocates_nothing(tmp_path):
    config = dict(build(**TINY).cfg.to_dict(), embed_dim=8192, depth=64, num_heads=16)
    path = forged(tmp_path, config=config)  # a small file: the tiny model's tensors
    assert path.stat().st_size < 200_000
    start = time.perf_counter()
    with pytest.raises(ValueError, match="wrong shape: .*expected .*8192"):
        load_checkpoint(path)  # 3.2e10 parameters: allocating them would take 128 GB
    assert time.perf_counter() - start < 5


def test_missing_and_unknown_keys_are_named(tmp_path):
    sd = build(**TINY).state_dict()
    sd.pop("head.bias")
    sd["blocks.0.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing: head.bias; unexpected: blocks.0.extra"):
        load_checkpoint(forged(tmp_path, state_dict=sd))
    config = dict(build(**TINY).cfg.to_dict(), fancy_option=3)
    with pytest.raises(ValueError, match="does not know: \\['fancy_option'\\]"):
        load_checkpoint(forged(tmp_path, "g.pt", config=config))
    with pytest.raises(ValueError, match="invalid config: embed_dim=30"):
        config.pop("fancy_option")
        load_checkpoint(forged(tmp_path, "h.pt", config=dict(config, embed_dim=30, num_heads=4)))
    with pytest.raises(ValueError, match="'state_dict' is missing"):
        read_checkpoint(forged(tmp_path, "i.pt", state_dict=None))
    sd = build(**TINY).state_dict()
    sd["head.bias"] = sd["head.bias"].double()
    with pytest.raises(ValueError, match="head.bias .* torch.float64"):
        load_checkpoint(forged(tmp_path, "j.pt", state_dict=sd))


def test_future_versions_and_pickled_code_are_refused(tmp_path):
    with pytest.raises(ValueError, match="version 7.*update it"):
        read_checkpoint(forged(tmp_path, version=7))

    class Payload:
        def __reduce__(self):
            return (print, ("this would run on load",))

    torch.save({"format": FORMAT, "version": 2, "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refused for safety") as info:
        read_checkpoint(tmp_path / "evil.pt")
    assert "truncated" not in str(info.value)
    (tmp_path / "cut.pt").write_bytes(data_file("vit_shapes.pt").read_bytes()[:5000])
    with pytest.raises(ValueError, match="may be truncated"):
        read_checkpoint(tmp_path / "cut.pt")


def test_loading_draws_no_random_numbers():
    state = torch.get_rng_state()
    load_checkpoint(data_file("vit_shapes.pt"))
    assert torch.equal(state, torch.get_rng_state())


def test_a_missing_shipped_file_names_the_fix():
    with pytest.raises(FileNotFoundError, match="python -m helpers.train --out data/nope.pt"):
        data_file("nope.pt")


# --------------------------------------------------------------------------------------
# Reproducibility (item 12)
# --------------------------------------------------------------------------------------


def test_the_record_says_how_many_threads_trained_the_model():
    record = json.loads(data_file("vit_shapes.json").read_text())
    assert isinstance(record["threads"], int) and record["threads"] >= 1
    assert record["torch"] and record["machine"] and record["command"].startswith("python -m")
    assert math.isclose(record["test_accuracy"], 0.988, abs_tol=0.02)


def test_as_images_leaves_good_input_alone():
    x = torch.rand(2, 3, 32, 32)
    assert as_images(x) is x
    assert as_images(np.zeros((1, 3, 4, 4), dtype=np.uint8)).dtype == torch.float32
