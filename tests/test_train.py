import json

import pytest
import torch

from helpers.checkpoint import load_checkpoint
from helpers.data import ShapesDataset
from helpers.model import VisionTransformer, ViTConfig, count_parameters
from helpers.train import (
    TrainConfig,
    confusion_counts,
    evaluate,
    lr_at,
    main,
    predict,
    predictions,
    train,
)


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
        m = VisionTransformer(embed_dim=16, depth=1, num_heads=2)
        cfg = TrainConfig(epochs=4, batch_size=64, warmup_steps=4, lr=5e-3)
        h = train(m, ds, ds, cfg, progress=False)
        runs.append(h)
    assert runs[0].step_loss == runs[1].step_loss  # same seed, same numbers
    loss = runs[0].step_loss
    assert len(loss) == 32 and runs[0].epoch == [1, 2, 3, 4]
    assert sum(loss[-8:]) < sum(loss[:8])


def test_evaluate_and_predict():
    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=1, num_heads=2)
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


def test_cli_writes_a_checkpoint_that_reloads_with_its_record(tmp_path, monkeypatch):
    import helpers.train as T

    monkeypatch.setattr(T, "ShapesDataset", lambda split: ShapesDataset(split, n=256))
    out = tmp_path / "m.pt"
    args = "--epochs 1 --embed-dim 16 --depth 1 --num-heads 2 --batch-size 64 --global-pool avg"
    meta = main(["--out", str(out), *args.split()])
    model, saved = load_checkpoint(out)
    assert saved == meta == json.loads(out.with_suffix(".json").read_text())
    assert model.cfg == ViTConfig(embed_dim=16, depth=1, num_heads=2, global_pool="avg")
    assert meta["parameters"] == count_parameters(model)
    assert meta["test_accuracy"] == round(evaluate(model, ShapesDataset("test", n=256)), 4)
    assert meta["threads"] == torch.get_num_threads() and meta["torch"] == torch.__version__
    assert meta["command"] == "python -m helpers.train --out " + str(out) + " " + args


def test_periodic_evaluation_measures_accuracy_during_training():
    ds = ShapesDataset("train", n=256)
    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=1, num_heads=2)
    cfg = TrainConfig(epochs=2, batch_size=64, warmup_steps=2)
    h = train(m, ds, ds, cfg, progress=False, eval_every=3)
    assert h.val_step == [3, 6, 8]  # every 3 steps, and the last step
    assert h.val_seconds == sorted(h.val_seconds) and h.val_seconds[-1] <= h.seconds[-1]
    assert h.val_acc[-1] == pytest.approx(evaluate(m, ds))
    per_epoch = train(m, ds, ds, cfg, progress=False)
    assert per_epoch.val_step == [4, 8]  # default: at the end of every epoch


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


def test_confusion_counts_true_rows_predicted_columns():
    y = torch.tensor([0, 1, 1, 2, 5, 5, 5])
    x = torch.zeros(len(y), 3, 32, 32)
    cm = confusion_counts(*predictions(Constant(1), (x, y), batch_size=3), 6)
    assert cm.shape == (6, 6) and cm.dtype == torch.long
    assert cm.sum() == len(y)
    assert cm[:, 1].tolist() == [1, 2, 1, 0, 0, 3]  # everything predicted as class 1
    assert cm.sum(1).tolist() == torch.bincount(y, minlength=6).tolist()


def test_confusion_counts_diagonal_matches_accuracy():
    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=1, num_heads=2).eval()
    ds = ShapesDataset("test", n=60)
    cm = confusion_counts(*predictions(m, ds, batch_size=25), 6)
    assert cm.sum() == 60
    assert cm.diag().sum().item() / 60 == pytest.approx(evaluate(m, ds))


def test_loss_fn_replaces_cross_entropy_and_callback_sees_every_step():
    ds = ShapesDataset("train", n=128)
    cfg = TrainConfig(epochs=2, batch_size=32, warmup_steps=1, weight_decay=0.0)  # no decay
    calls, steps = [], []

    def zero_loss(model, x, y):  # a loss with no gradient signal: the weights must not move
        calls.append(len(x))
        logits = model(x)
        return 0.0 * logits.sum(), logits

    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=1, num_heads=2)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    h = train(
        m, ds, None, cfg, progress=False, loss_fn=zero_loss, callback=lambda s, _: steps.append(s)
    )
    assert calls == [32] * 8 and steps == list(range(1, 9))
    assert h.step_loss == [0.0] * 8
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_loss_fn_and_callback_must_be_functions():
    m = VisionTransformer(embed_dim=16, depth=1, num_heads=2)
    with pytest.raises(TypeError, match="callback must be a function"):
        train(m, ShapesDataset("train", n=64), callback=5, progress=False)


def test_confusion_counts_of_predictions_made_earlier():
    cm = confusion_counts(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        confusion_counts(torch.tensor([0, 1, 1]), torch.tensor([0, 1]), 3)


def _decay_of(groups):
    """{id(parameter): weight decay} over AdamW's groups (each parameter in one group)."""
    out = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in out, "a parameter is in two groups"
            out[id(p)] = g["weight_decay"]
    return out


def test_no_decay_tokens_exempts_the_tokens_only():
    from helpers.train import NO_DECAY_TOKENS, param_groups

    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=1, num_heads=2, reg_tokens=2)
    named = dict(m.named_parameters())
    assert {"cls_token", "pos_embed", "reg_token"} <= set(named)
    old = _decay_of(param_groups(m, TrainConfig()))
    new = _decay_of(param_groups(m, TrainConfig(no_decay_tokens=True)))
    assert len(old) == len(new) == len(named)  # every parameter trains, once
    for name, p in named.items():
        matrix = p.ndim >= 2
        assert old[id(p)] == (0.05 if matrix else 0.0)  # the default: the series' rule
        token = name in NO_DECAY_TOKENS
        assert new[id(p)] == (0.05 if matrix and not token else 0.0), name
    assert old[id(named["cls_token"])] == 0.05 and new[id(named["cls_token"])] == 0.0
    assert new[id(named["blocks.0.attn.qkv.weight"])] == 0.05  # weights still decay
    # with a learning rate of its own, the token keeps its group and loses its decay
    g = param_groups(m, TrainConfig(no_decay_tokens=True), {"cls_token": 10.0})
    (own,) = [x for x in g if x.get("lr_scale") == 10.0]
    assert own["params"] == [named["cls_token"]] and own["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="no_decay_tokens"):
        TrainConfig(no_decay_tokens="yes")


def test_no_decay_tokens_default_trains_as_before():
    """The default is today's rule: the same numbers; the option changes the run."""
    ds = ShapesDataset("train", n=256)
    norms = []
    for cfg in (
        TrainConfig(epochs=1, batch_size=64, warmup_steps=2, weight_decay=0.5),
        TrainConfig(
            epochs=1, batch_size=64, warmup_steps=2, weight_decay=0.5, no_decay_tokens=False
        ),
        TrainConfig(
            epochs=1, batch_size=64, warmup_steps=2, weight_decay=0.5, no_decay_tokens=True
        ),
    ):
        torch.manual_seed(0)
        m = VisionTransformer(embed_dim=16, depth=1, num_heads=2, cls_init="randn")
        train(m, ds, None, cfg, progress=False)
        norms.append(m.cls_token.detach().norm().item())
    assert norms[0] == norms[1]
    assert norms[2] > norms[0]  # undecayed, the large token stays larger
