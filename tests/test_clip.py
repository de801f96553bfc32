"""CLIP-lite (helpers.studies.clip): captions, the tokenizer, the text encoder, the loss, training and
the command."""

import json
import math

import numpy as np
import pytest
import torch
from matplotlib.colors import rgb_to_hsv

from helpers.data import CLASSES, COLOUR_NAMES, ShapesDataset
from helpers.model import VisionTransformer
from helpers.studies import clip
from helpers.studies.clip import (
    ALL_CAPTIONS,
    CAPTION_TOKENS,
    CLS_ID,
    PAD_ID,
    ClipConfig,
    CLIPLite,
    ClipTrainConfig,
    TextTransformer,
    caption_batches,
    clip_loss,
    decode,
    encode,
    load_clip,
    recall_at_k,
    save_clip,
    train_clip,
)

SMALL_TEXT = ClipConfig(embed_out=16, text_dim=16, text_depth=1, text_heads=2)


def text_encoder(seed=0, cfg=SMALL_TEXT):
    torch.manual_seed(seed)
    return TextTransformer(cfg).eval()


# --- the loss -------------------------------------------------------------------------


def test_clip_loss_equals_a_computation_by_hand():
    img = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # unit rows: (1, 0) and (0.7071, 0.7071)
    txt = torch.tensor([[0.0, 2.0], [1.0, 0.0]])  # unit rows: (0, 1) and (1, 0)
    s = math.log(2.0)  # the logits are scaled by exp(s) = 2
    r = 1 / math.sqrt(2)
    logits = [[2 * 0.0, 2 * 1.0], [2 * r, 2 * r]]  # image i vs text j

    def ce(row, k):  # -log softmax(row)[k]
        return -row[k] + math.log(sum(math.exp(v) for v in row))

    rows = (ce(logits[0], 0) + ce(logits[1], 1)) / 2
    cols = (ce([logits[0][0], logits[1][0]], 0) + ce([logits[0][1], logits[1][1]], 1)) / 2
    got = clip_loss(img, txt, torch.tensor(s))
    assert got.item() == pytest.approx((rows + cols) / 2, abs=1e-6)
    assert rows != pytest.approx(cols)  # the two halves differ: the average is not one of them


def test_clip_loss_is_symmetric_and_the_scale_is_an_inverse_temperature():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    s = torch.tensor(0.7)
    assert clip_loss(a, b, s).item() == pytest.approx(clip_loss(b, a, s).item(), abs=1e-6)
    same = torch.eye(5)
    assert clip_loss(same, same, torch.tensor(math.log(100))) < clip_loss(
        same, same, torch.tensor(0.0)
    )  # matching pairs: a colder softmax (higher scale) gives a lower loss
    assert clip_loss(3 * a, b, s).item() == pytest.approx(clip_loss(a, b, s).item(), abs=1e-6)
    with pytest.raises(ValueError, match="one row per pair"):
        clip_loss(a, b[:3], s)


def test_logit_scale_starts_at_clips_value_and_is_clamped_at_100():
    torch.manual_seed(0)
    model = CLIPLite(SMALL_TEXT)
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    ds = ShapesDataset("test", n=400)
    train_clip(model, ds, ClipTrainConfig(steps=1, batch_size=8, warmup_steps=0), progress=False)
    assert model.logit_scale.exp().item() == pytest.approx(100, rel=1e-5)


# --- captions and the tokenizer -------------------------------------------------------


def test_caption_grammar():
    assert clip.caption(4, 0, 0) == "a red ring in the top left"
    assert clip.caption(0, 4, 4) == "a blue square in the centre"
    assert clip.caption(2, 1, 7) == "a yellow triangle in the bottom centre"
    assert len(set(ALL_CAPTIONS)) == len(ALL_CAPTIONS) == 6 * 6 * 9
    assert [ALL_CAPTIONS[clip.caption_id(s, c, p)] for s, c, p in [(4, 0, 0), (5, 5, 8)]] == [
        clip.caption(4, 0, 0),
        clip.caption(5, 5, 8),
    ]


def test_captions_describe_each_images_own_object():
    ds = ShapesDataset("test", n=40)
    caps = clip.captions(ds)
    for i in range(40):
        words = caps[i].split()
        assert words[2] == CLASSES[int(ds.labels[i])]
        # colour: the object's own pixels, read back as a hue, named by the nearest sixth
        pix = ds.images[i].permute(1, 2, 0)[ds.masks[i]].float().numpy() / 255
        hue = rgb_to_hsv(pix.mean(0))[0]
        assert (
            words[1] == COLOUR_NAMES[int(np.floor(hue * 6 + 0.5)) % 6]
            or abs((hue * 6 + 0.5) % 1 - 0.5) > 0.45
        )  # a hue on a border between two names may round either way
        # position: the centre of the mask's bounding box (every shape is symmetric in it)
        ys, xs = np.nonzero(ds.masks[i].numpy())
        cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        row = "top" if cy < 14 else "bottom" if cy > 18 else "middle"
        col = "left" if cx < 14 else "right" if cx > 18 else "centre"
        place = " ".join(words[5:])
        assert place == ("centre" if (row, col) == ("middle", "centre") else f"{row} {col}")


def test_tokenizer_round_trip_and_padding():
    ids = encode(ALL_CAPTIONS)
    assert ids.shape == (324, clip.CONTEXT_LENGTH) and ids.dtype == torch.long
    assert (ids[:, 0] == CLS_ID).all()
    assert decode(ids) == list(ALL_CAPTIONS)
    short = encode("A  Ring ")
    assert short.tolist() == [[CLS_ID, clip.WORD_ID["a"], clip.WORD_ID["ring"]] + [PAD_ID] * 5]
    assert decode(short) == ["a ring"] and decode(short[0]) == ["a ring"]
    assert torch.equal(CAPTION_TOKENS, ids)


def test_tokenizer_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\['photo', 'of'\].*not in the vocabulary"):
        encode("a photo of a ring")
    assert encode("a photo of a ring", unknown="unk")[0, 2].item() == clip.UNK_ID
    with pytest.raises(ValueError, match="at most 7 fit"):
        encode("a red ring in the top left corner", unknown="unk")
    with pytest.raises(TypeError, match="strings"):
        encode([3])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode("[CLS] a ring")  # special tokens are not words
    with pytest.raises(ValueError, match="no texts"):
        encode([])


# --- the text encoder -----------------------------------------------------------------


def test_text_encoder_shapes_and_the_summary_is_token_0():
    enc = text_encoder()
    ids = encode(["a red ring in the top left", "a disk", "a cyan plus in the centre"])
    feats = enc.forward_features(ids)
    assert feats.shape == (3, 8, 16)
    out = enc(ids)
    assert out.shape == (3, 16)
    torch.testing.assert_close(out, enc.head(feats[:, 0]), rtol=0, atol=0)
    _, att = enc.forward_features(ids, return_attention=True)
    assert len(att) == 1 and att[0].shape == (3, 2, 8, 8)
    assert att[0][1, :, 0, 3:].sum() == 0  # "a disk": [CLS] gives no attention to padding


def test_padding_does_not_change_the_summary():
    enc = text_encoder()
    ids = encode(["a ring", "a red ring in the centre"])
    for row in ids:
        n = int((row != PAD_ID).sum())
        torch.testing.assert_close(enc(row[None]), enc(row[None, :n]), rtol=0, atol=1e-6)
    # without the mask, padding would change it: the mask is what makes the two equal
    x = enc.embed(ids[:1])
    for block in enc.blocks:
        x = block(x)
    assert not torch.allclose(enc.head(enc.norm(x)[:, 0]), enc(ids[:1]), atol=1e-4)


def test_text_encoder_refuses_bad_ids():
    enc = text_encoder()
    with pytest.raises(ValueError, match="encode"):
        enc(torch.ones(2, 4))  # floats
    with pytest.raises(ValueError, match="start with \\[CLS\\]"):
        enc(torch.full((1, 3), clip.WORD_ID["a"]))
    with pytest.raises(ValueError, match="at most 8 tokens"):
        enc(torch.full((1, 9), CLS_ID))


def test_text_and_image_encoders_share_the_block_code():
    enc = text_encoder(cfg=ClipConfig())
    vit = VisionTransformer(ClipConfig().vision_config()).eval()
    assert type(enc.blocks[0]) is type(vit.blocks[0])
    vit.blocks[: len(enc.blocks)].load_state_dict(enc.blocks.state_dict())
    vit.norm.load_state_dict(enc.norm.state_dict())
    ids = encode(["a red ring in the top left"])  # no padding: no mask needed
    x = enc.embed(ids)
    for block in vit.blocks[: len(enc.blocks)]:
        x = block(x)
    torch.testing.assert_close(enc.head(vit.norm(x)[:, 0]), enc(ids), rtol=0, atol=1e-6)


# --- batches, training, evaluation ----------------------------------------------------


def test_caption_batches_hold_no_caption_twice_and_are_deterministic():
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4, 5])
    a = list(caption_batches(ids, 4, 20, seed=3))
    b = list(caption_batches(ids, 4, 20, seed=3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for idx in a:
        assert len(set(ids[idx].tolist())) == 4
    assert set(torch.cat(a).tolist()) == set(range(10))  # every image gets drawn
    with pytest.raises(ValueError, match="distinct captions"):
        next(caption_batches(ids, 7, 1))


def test_a_short_run_is_the_start_of_a_longer_one():
    ds = ShapesDataset("test", n=400)
    cfg = ClipTrainConfig(steps=6, batch_size=16, warmup_steps=2)
    runs = []
    for stop in (None, 3):
        torch.manual_seed(0)
        model = CLIPLite(SMALL_TEXT)
        runs.append(train_clip(model, ds, cfg, progress=False, stop_after=stop)["step_loss"])
    assert len(runs[0]) == 6 and runs[1] == runs[0][:3]  # bit for bit
    assert runs[0][-1] < runs[0][0]


def test_recall_at_k_by_hand():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.0, 0.2, 0.1]])
    # ranks of the right answer: 0, 1, 1
    assert recall_at_k(sim, (1, 2)) == {1: pytest.approx(1 / 3), 2: pytest.approx(1.0)}
    with pytest.raises(ValueError, match="square"):
        recall_at_k(sim[:2])


def test_unique_caption_subset_one_image_per_caption():
    ids = torch.tensor([5, 3, 5, 0, 3])
    sub = clip.unique_caption_subset(ids)
    assert sub.tolist() == [3, 1, 0]  # captions 0, 3, 5: their first images


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = CLIPLite(SMALL_TEXT).eval()
    save_clip(model, tmp_path / "m.pt", {"a": 1})
    again, meta = load_clip(tmp_path / "m.pt")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(again.encode_image(x), model.encode_image(x), rtol=0, atol=0)
    assert meta == {"a": 1}
    with pytest.raises(FileNotFoundError, match="helpers.studies.clip"):
        load_clip(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="not a CLIP-lite"):
        load_clip(tmp_path / "o.pt")


# --- the command ----------------------------------------------------------------------


def test_command_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "c.pt"
    out.write_bytes(b"old")
    with pytest.raises(SystemExit):
        clip.main(["--out", str(out)])
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"old"
    with pytest.raises(SystemExit):
        clip.main(["--out", str(tmp_path / "c.json")])
    assert "must end in .pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        clip.main(["--out", str(tmp_path / "d.pt"), "--batch-size", "400"])
    assert "324 distinct captions" in capsys.readouterr().err


def test_command_writes_a_model_and_its_record(tmp_path, monkeypatch):
    small = ShapesDataset  # a few hundred images, so that the test takes seconds

    monkeypatch.setattr(clip, "ShapesDataset", lambda split: small(split, n=400))
    out = tmp_path / "c.pt"
    out.write_bytes(b"old")
    args = ["--out", str(out), "--steps", "3", "--batch-size", "16", "--threads", "1", "--force"]
    threads = torch.get_num_threads()
    try:
        meta = clip.main(args)
    finally:
        torch.set_num_threads(threads)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record == meta and record["command"] == "python -m helpers.studies.clip " + " ".join(
        args
    )
    assert len(record["step_loss"]) == 3 and record["threads"] == 1
    for key in ("zero_shot_ensemble", "image_to_text_R@1", "text_to_image_R@5"):
        assert 0 <= record["scores"][key] <= 1
    model, meta2 = load_clip(out)
    assert meta2["scores"] == record["scores"]
