import pytest
import torch

from helpers.data import ShapesDataset
from helpers.model import VisionTransformer
from helpers.train import (
    TrainConfig,
    evaluate,
    lr_at,
    main,
    pick_device,
    predict,
    predictions,
    train,
)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in {"cpu", "cuda", "mps"}


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup_steps=10)
    assert lr_at(0, 100, cfg) == pytest.approx(0.1)
    assert lr_at(9, 100, cfg) == pytest.approx(1.0)
    assert lr_at(100, 100, cfg) == pytest.approx(0.0)


def test_training_learns_and_is_deterministic():
    ds = ShapesDataset("train", n=512)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = VisionTransformer(dim=16, depth=1, heads=2)
        cfg = TrainConfig(epochs=4, batch_size=64, warmup_steps=4, lr=5e-3)
        h = train(m, ds, ds, cfg, progress=False)
        runs.append(h)
    assert runs[0].step_loss == runs[1].step_loss  # same seed, same numbers
    loss = runs[0].step_loss
    assert len(loss) == 32 and runs[0].epoch == [1, 2, 3, 4]
    assert sum(loss[-8:]) < sum(loss[:8])


def test_evaluate_and_predict():
    torch.manual_seed(0)
    m = VisionTransformer(dim=16, depth=1, heads=2)
    ds = ShapesDataset("test", n=40)
    acc = evaluate(m, ds, batch_size=16)
    x, y = ds.batch(torch.arange(40))
    p = predict(m, x, batch_size=16)
    assert p.shape == (40, 6)
    torch.testing.assert_close(p.sum(1), torch.ones(40))
    assert acc == pytest.approx((p.argmax(1) == y).float().mean().item())
    assert evaluate(m, (x, y)) == pytest.approx(acc)
    pred, labels = predictions(m, ds, batch_size=16)
    assert torch.equal(pred, p.argmax(1)) and torch.equal(labels, y)


def test_cli_writes_checkpoint_and_record(tmp_path, monkeypatch):
    import helpers.train as T

    monkeypatch.setattr(T, "ShapesDataset", lambda split: ShapesDataset(split, n=256))
    out = tmp_path / "m.pt"
    meta = main(
        [
            "--out",
            str(out),
            "--epochs",
            "1",
            "--dim",
            "16",
            "--depth",
            "1",
            "--heads",
            "2",
            "--batch-size",
            "64",
        ]
    )
    assert out.exists() and out.with_suffix(".json").exists()
    assert 0 <= meta["test_accuracy"] <= 1 and meta["parameters"] > 0


def test_probe_measures_accuracy_during_training():
    ds = ShapesDataset("train", n=256)
    torch.manual_seed(0)
    m = VisionTransformer(dim=16, depth=1, heads=2)
    h = train(m, ds, None, TrainConfig(epochs=2, batch_size=64, warmup_steps=2),
              progress=False, probe=(ds, 3))
    assert h.probe_step == [3, 6, 8]  # every 3 steps, and the last step
    assert h.probe_seconds == sorted(h.probe_seconds) and h.probe_seconds[-1] <= h.seconds[-1]
    assert h.probe_acc[-1] == pytest.approx(evaluate(m, ds))
