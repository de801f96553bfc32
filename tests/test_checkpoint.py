import pytest
import torch

from helpers.checkpoint import (
    load_checkpoint,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    upgrade_config,
)
from helpers.model import VisionTransformer, ViTConfig
from tests.conftest import TINY, build


def tiny(**kw):
    return build(**TINY, **kw)


def test_round_trip_keeps_weights_config_and_meta(tmp_path):
    m = tiny(global_pool="map")
    path = save_checkpoint(m, tmp_path / "m.pt", {"test_accuracy": 0.5})
    m2, meta = load_checkpoint(path)
    assert m2.cfg == m.cfg and meta == {"test_accuracy": 0.5}
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(m2(x), m(x))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_loading_into_another_config_names_the_mismatch(tmp_path):
    path = save_checkpoint(tiny(), tmp_path / "m.pt")
    other = VisionTransformer(embed_dim=16, depth=2, num_heads=2)
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


def test_checkpoints_of_the_first_format_still_load(tmp_path):
    """Version 1 stored the config under the series' first names (dim, heads, pool "gap", ...)."""
    m = tiny(global_pool="avg", class_token=False, pos_embed="sincos")
    old_config = dict(
        image_size=32, patch_size=4, in_channels=3, num_classes=6, dim=16, depth=1, heads=2,
        mlp_ratio=2.0, dropout=0.0, attn_dropout=0.0, pool="gap", class_token=False,
        reg_tokens=0, cls_init="trunc_normal", pos_embed="sincos",
    )  # fmt: skip
    payload = {
        "format": "inside-the-cls-token/vit",
        "version": 1,
        "config": old_config,
        "state_dict": m.state_dict(),
        "meta": {"test_accuracy": 0.5},
    }
    torch.save(payload, tmp_path / "old.pt")
    assert ViTConfig(**upgrade_config(old_config)) == m.cfg
    loaded, meta = load_checkpoint(tmp_path / "old.pt")
    assert loaded.cfg == m.cfg and meta == {"test_accuracy": 0.5}
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), m(x))


def test_a_checkpoint_from_a_newer_version_is_refused(tmp_path):
    path = save_checkpoint(tiny(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(ValueError, match="version 99.*update"):
        read_checkpoint(path)


def test_every_command_shares_out_force_and_threads(tmp_path, capsys):
    import pytest as _pytest

    from helpers.checkpoint import command_parser, parse_command

    p = command_parser("helpers.example", "an example command", "where to write (.json)")
    out = tmp_path / "r.json"
    a, path = parse_command(p, ["--out", str(out)], ".json")
    assert path == out and a.threads == 0 and not a.force
    out.write_text("{}")
    for argv, says in (
        (["--out", str(out)], "pass --force"),
        (["--out", str(tmp_path / "r.pt")], "must end in .json"),
        (["--out", str(tmp_path / "r2.json"), "--threads", "-2"], "--threads must be between 0"),
        ([], "--out"),  # required when there is no default
    ):
        with _pytest.raises(SystemExit) as e:
            parse_command(p, argv, ".json")
        assert e.value.code == 2 and says in capsys.readouterr().err
    a, _ = parse_command(p, ["--out", str(out), "--force"], ".json")
    assert a.force
