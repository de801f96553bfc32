"""CLIP-lite (helpers.studies.clip) given bad input: each mistake is refused with an error that
names the problem and the fix, instead of a wrong number, a traceback or a spoiled file."""

import numpy as np
import pytest
import torch

from helpers.data import ShapesDataset
from helpers.runtime import Diverged
from helpers.studies import clip
from helpers.studies.clip import (
    ClipConfig,
    CLIPLite,
    ClipTrainConfig,
    decode,
    encode,
    load_clip,
    recall_at_k,
    save_clip,
    shape_prompts,
    train_clip,
)

SMALL = ClipConfig(embed_out=16, text_dim=16, text_depth=1, text_heads=2)


def small_model(seed=0):
    torch.manual_seed(seed)
    return CLIPLite(SMALL).eval()


# --- 1. a diverged run writes nothing --------------------------------------------------


def test_train_clip_stops_on_a_nan_loss_before_the_step():
    model = small_model()
    ds = ShapesDataset("test", n=200)
    cfg = ClipTrainConfig(steps=30, batch_size=16, lr=1e3, warmup_steps=0)
    with pytest.raises(Diverged, match="1e3"):
        train_clip(model, ds, cfg, progress=False)


def test_command_with_lr_1e3_writes_nothing_and_exits_1(tmp_path, monkeypatch, capsys):
    small = ShapesDataset
    monkeypatch.setattr(clip, "ShapesDataset", lambda split: small(split, n=200))
    out = tmp_path / "c.pt"
    args = ["--out", str(out), "--steps", "30", "--batch-size", "16", "--lr", "1e3"]
    args += ["--warmup-steps", "0", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as e:
            clip.main(args)
    finally:
        torch.set_num_threads(threads)
    assert e.value.code == 1
    assert "training diverged" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no .pt, no .json, no lock left behind


def test_save_clip_with_record_writes_the_pair(tmp_path):
    model = small_model()
    save_clip(model, tmp_path / "m.pt", {"a": 1}, record=True)
    assert (tmp_path / "m.json").read_text().strip().startswith("{")
    assert load_clip(tmp_path / "m.pt")[1] == {"a": 1}


# --- 2. recall refuses NaN -------------------------------------------------------------


def test_recall_at_k_refuses_non_finite_similarities():
    sim = torch.eye(3)
    sim[0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        recall_at_k(sim)
    with pytest.raises(ValueError, match="NaN or infinite"):
        recall_at_k(torch.full((2, 2), float("nan")))  # was R@1 = 1.0
    assert recall_at_k(torch.eye(3))[1] == 1.0


# --- 3. training settings --------------------------------------------------------------


def test_batch_size_1_is_refused_because_the_loss_is_zero():
    with pytest.raises(ValueError, match="exactly 0"):
        ClipTrainConfig(batch_size=1)
    one = small_model()
    assert clip.clip_loss(torch.randn(1, 4), torch.randn(1, 4), one.logit_scale).item() == 0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"lr": float("inf")}, "finite"),
        ({"lr": float("nan")}, "finite"),
        ({"lr": -1e-3}, "lr must be > 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"weight_decay": float("nan")}, "finite"),
        ({"weight_decay": float("inf")}, "finite"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"warmup_steps": -1}, "warmup_steps"),
    ],
)
def test_train_config_refuses_bad_rates(kw, match):
    with pytest.raises(ValueError, match=match):
        ClipTrainConfig(**kw)


def test_command_refuses_a_nan_lr_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        clip.main(["--out", str(tmp_path / "c.pt"), "--lr", "nan"])
    assert e.value.code == 2 and "finite" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- 4. loading goes through the checked path ------------------------------------------


def test_the_shipped_model_still_loads():
    model, meta = load_clip()
    assert isinstance(model, CLIPLite) and not model.training and "scores" in meta


def test_clip_lite_builds_on_the_meta_device():
    with torch.device("meta"):
        model = CLIPLite()
    assert all(p.is_meta for p in model.parameters())


def test_load_clip_refuses_a_newer_version(tmp_path):
    save_clip(small_model(), tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "v.pt")
    with pytest.raises(ValueError, match="version 99"):
        load_clip(tmp_path / "v.pt")


def test_load_clip_refuses_wrong_or_missing_weights(tmp_path):
    save_clip(small_model(), tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    bad = dict(payload, state_dict=dict(payload["state_dict"]))
    bad["state_dict"]["text.head.weight"] = torch.zeros(3, 3)
    del bad["state_dict"]["logit_scale"]
    torch.save(bad, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="missing: logit_scale.*wrong shape: text.head.weight"):
        load_clip(tmp_path / "b.pt")
    nan = dict(payload, state_dict=dict(payload["state_dict"]))
    nan["state_dict"]["logit_scale"] = torch.tensor(float("nan"))
    torch.save(nan, tmp_path / "n.pt")
    with pytest.raises(ValueError, match="NaN or infinite weights"):
        load_clip(tmp_path / "n.pt")
    odd = dict(payload, config={**payload["config"], "colour_depth": 3})
    torch.save(odd, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="colour_depth"):
        load_clip(tmp_path / "o.pt")


def test_load_clip_of_a_huge_model_costs_nothing(tmp_path):
    save_clip(small_model(), tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    huge = dict(payload, config={**payload["config"], "text_dim": 4096, "text_depth": 48})
    torch.save(huge, tmp_path / "h.pt")  # ~10 G parameters if it were built for real
    with pytest.raises(ValueError, match="do not fit"):
        load_clip(tmp_path / "h.pt")


def test_load_clip_names_the_right_loader_for_a_vit(tmp_path):
    from helpers.checkpoint import save_checkpoint
    from helpers.model import VisionTransformer, make_config

    torch.manual_seed(0)
    save_checkpoint(VisionTransformer(make_config(depth=1)), tmp_path / "v.pt")
    with pytest.raises(ValueError, match="load_checkpoint"):
        load_clip(tmp_path / "v.pt")


# --- 5. the tokenizer and the captions -------------------------------------------------


def test_encode_refuses_none_and_non_strings():
    with pytest.raises(TypeError, match="string or a list of strings.*NoneType"):
        encode(None)
    with pytest.raises(TypeError, match="strings, got int"):
        encode(["a ring", 3])
    with pytest.raises(TypeError, match="string or a list of strings"):
        encode(5)


@pytest.mark.parametrize("text", ["", "   "])
def test_encode_refuses_an_empty_caption(text):
    with pytest.raises(ValueError, match="empty text"):
        encode(text)
    with pytest.raises(ValueError, match="empty text"):
        encode(["a ring", text])


def test_decode_refuses_ids_outside_the_vocabulary():
    n = len(clip.VOCAB)
    with pytest.raises(ValueError, match=rf"\[-1\].*0 \.\. {n - 1}"):
        decode([1, -1])
    with pytest.raises(ValueError, match=rf"0 \.\. {n - 1}"):
        decode([[1, n]])
    with pytest.raises(TypeError, match="whole numbers"):
        decode([1.0, 3.0])
    assert decode([1, clip.WORD_ID["a"], clip.WORD_ID["ring"], 0]) == ["a ring"]


@pytest.mark.parametrize(
    "args, match",
    [
        ((-1, 0, 0), r"shape=-1 .*0 \.\. 5"),
        ((6, 0, 0), r"shape=6 .*0 \.\. 5"),
        ((0, 6, 0), r"colour=6 .*0 \.\. 5"),
        ((0, -1, 0), r"colour=-1"),
        ((0, 0, 9), r"cell.*=9 .*0 \.\. 8"),
        ((0, 0, -1), r"cell.*=-1"),
    ],
)
def test_caption_refuses_out_of_range_attributes(args, match):
    with pytest.raises(ValueError, match=match):
        clip.caption(*args)


def test_caption_refuses_non_integers_but_takes_numpy_ints():
    with pytest.raises(TypeError, match="whole number"):
        clip.caption(1.5, 0, 0)
    assert clip.caption(np.int64(4), torch.tensor(0), 0) == "a red ring in the top left"
    with pytest.raises(ValueError, match="cell"):
        clip.place(9)


def test_shape_prompts_names_the_allowed_field():
    with pytest.raises(ValueError, match=r"\{colour\}.*only field allowed is \{shape\}"):
        shape_prompts("a {colour} {shape}")
    with pytest.raises(ValueError, match="needs"):
        shape_prompts("a thing")
    with pytest.raises(ValueError, match="not a valid format"):
        shape_prompts("a {shape")
    assert shape_prompts("a {shape}")[0] == ["a square"]


# --- 6. image embeddings ---------------------------------------------------------------


def test_image_embeddings_take_numpy_and_refuse_bad_batches():
    model = small_model()
    x = torch.rand(3, 3, 32, 32)
    want = clip.image_embeddings(model, x)
    got = clip.image_embeddings(model, x.numpy())
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="batch_size"):
        clip.image_embeddings(model, x, batch_size=0)
    with pytest.raises(TypeError, match="float"):
        clip.image_embeddings(model, (x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"images\[None\]"):
        clip.image_embeddings(model, x[0])
