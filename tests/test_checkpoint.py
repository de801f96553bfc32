import pytest
import torch

from helpers.checkpoint import load_checkpoint, load_weights, read_checkpoint, save_checkpoint
from helpers.model import VisionTransformer


def tiny(**kw):
    torch.manual_seed(0)
    return VisionTransformer(dim=16, depth=1, heads=2, **kw).eval()


def test_round_trip_keeps_weights_config_and_meta(tmp_path):
    m = tiny(pool="map")
    path = save_checkpoint(m, tmp_path / "m.pt", {"test_accuracy": 0.5})
    m2, meta = load_checkpoint(path)
    assert m2.cfg == m.cfg and meta == {"test_accuracy": 0.5}
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(m2(x), m(x))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_loading_into_another_config_names_the_mismatch(tmp_path):
    path = save_checkpoint(tiny(), tmp_path / "m.pt")
    other = VisionTransformer(dim=16, depth=2, heads=2)
    with pytest.raises(ValueError, match="depth: checkpoint 1 vs model 2"):
        load_weights(other, path)
    assert load_weights(tiny(), path) == {}


def test_foreign_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="helpers.train"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint of this project"):
        read_checkpoint(tmp_path / "other.pt")


def test_failed_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tiny(), tmp_path / "m.pt", {"v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tiny(), path, {"v": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)[1] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_meta_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(tiny(), tmp_path / "m.pt", {"model": object()})
