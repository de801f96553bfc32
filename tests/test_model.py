import os

import pytest
import torch

from helpers.model import (
    VisionTransformer,
    ViTConfig,
    adapt_to_image_size,
    check_attn_mask,
    count_parameters,
    init_cls_token,
    resample_pos_embed,
    sincos_2d,
)
from tests.timm_compat import import_timm_vit, timm_kwargs

SMALL = dict(dim=32, depth=2, heads=4)


def small(**kw):
    torch.manual_seed(0)
    return VisionTransformer(**{**SMALL, **kw}).eval()


def test_shapes_through_the_model():
    m = small()
    x = torch.rand(5, 3, 32, 32)
    assert m.embed(x).shape == (5, 65, 32)
    assert m.forward_features(x).shape == (5, 65, 32)
    assert m(x).shape == (5, 6)


def test_timm_parameter_names():
    names = set(small().state_dict())
    for key in [
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.weight",
        "blocks.0.norm2.weight",
        "blocks.0.mlp.fc1.weight",
        "blocks.1.mlp.fc2.bias",
        "norm.weight",
        "head.weight",
    ]:
        assert key in names
    assert {"attn_pool.latent", "attn_pool.kv.weight"} <= set(small(pool="map").state_dict())
    assert "fc_norm.weight" in small(pool="gap").state_dict()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"pool": "gap"},
        {"pool": "map"},
        {"pool": "gap", "class_token": False},
        {"pool": "map", "class_token": False},
        {"reg_tokens": 2},
    ],
)
def test_fused_and_weights_paths_agree(kw):
    m = small(**kw)
    x = torch.rand(3, 3, 32, 32)
    logits, attn = m(x, return_attention=True)
    torch.testing.assert_close(logits, m(x))
    T = m.cfg.num_prefix_tokens + 64
    assert len(attn) == 2 and all(a.shape == (3, 4, T, T) for a in attn)
    torch.testing.assert_close(attn[0].sum(-1), torch.ones(3, 4, T))


def test_attention_mask_is_applied_on_both_paths():
    m = small()
    x = torch.rand(2, 3, 32, 32)
    mask = torch.ones(65, 65, dtype=torch.bool)
    mask[0, 1:] = False  # CLS may read only itself
    logits, attn = m(x, attn_mask=mask, return_attention=True)
    torch.testing.assert_close(logits, m(x, attn_mask=mask))
    assert torch.all(attn[0][:, :, 0, 1:] == 0)
    assert not torch.allclose(logits, m(x))


def test_bad_attention_masks():
    with pytest.raises(ValueError, match="bool"):
        check_attn_mask(torch.ones(65, 65), 65)
    with pytest.raises(ValueError, match="end in"):
        check_attn_mask(torch.ones(10, 10, dtype=torch.bool), 65)
    empty = torch.ones(65, 65, dtype=torch.bool)
    empty[3] = False
    with pytest.raises(ValueError, match="no key"):
        check_attn_mask(empty, 65)


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        ViTConfig(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="not divisible by heads"):
        ViTConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="class_token"):
        ViTConfig(pool="cls", class_token=False)
    with pytest.raises(ValueError, match="pool"):
        ViTConfig(pool="max")


def test_input_errors_name_the_fix():
    m = small()
    with pytest.raises(ValueError, match="channel"):
        m(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="adapt_to_image_size"):
        m(torch.rand(2, 3, 48, 48))
    with pytest.raises(ValueError, match="unsqueeze"):
        m(torch.rand(3, 32, 32))


def test_cls_token_init_options():
    assert small().cls_token.std().item() == pytest.approx(0.02, rel=0.5)
    assert small().cls_token.abs().max().item() <= 0.04 + 1e-6  # truncated at 2 std
    assert torch.all(small(cls_init="zeros").cls_token == 0)
    assert small(cls_init="randn").cls_token.std().item() > 0.5
    with pytest.raises(ValueError):
        init_cls_token(torch.zeros(1, 1, 4), "ones")


def test_no_cls_token_model_has_no_prefix():
    m = small(pool="gap", class_token=False)
    assert m.cls_token is None and m.embed(torch.rand(1, 3, 32, 32)).shape == (1, 64, 32)


def test_gap_never_pools_the_cls_token():
    m = small(pool="gap")
    x = torch.rand(2, 3, 32, 32)
    feats = m.forward_features(x)
    expected = m.head(m.fc_norm(feats[:, 1:].mean(1)))
    torch.testing.assert_close(m(x), expected)


def test_sincos_and_none_position_embeddings():
    assert sincos_2d(8, 32).shape == (64, 32)
    m = small(pos_embed="sincos")
    assert "pos_embed" not in dict(m.named_parameters()) and "pos_embed" in m.state_dict()
    assert torch.all(m.pos_embed[0, 0] == 0)
    assert small(pos_embed="none").pos_embed is None


def test_resample_keeps_the_prefix_and_round_trips():
    pe = torch.randn(1, 1 + 64, 8)
    big = resample_pos_embed(pe, 12, 1)
    assert big.shape == (1, 1 + 144, 8)
    torch.testing.assert_close(big[:, :1], pe[:, :1])
    torch.testing.assert_close(resample_pos_embed(pe, 8, 1), pe)


def test_adapt_to_image_size_runs_larger_images():
    m = small()
    m48 = adapt_to_image_size(m, 48)
    assert m48(torch.rand(2, 3, 48, 48)).shape == (2, 6)
    torch.testing.assert_close(m48.cls_token, m.cls_token)


def test_parameter_count_matches_hand_count():
    D, hidden, L = 32, 64, 2
    block = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * hidden + hidden) + (hidden * D + D)
    stem = 3 * 4 * 4 * D + D + D + 65 * D  # conv, cls_token, pos_embed
    assert count_parameters(small()) == stem + L * block + 2 * D + (D * 6 + 6)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"pool": "gap", "class_token": False},
        {"pool": "map"},
        {"reg_tokens": 2},
        {"pool": "gap"},
    ],
)
def test_state_dict_loads_into_timm_with_same_logits(kw):
    timm_vit = import_timm_vit()
    if timm_vit is None:
        if os.environ.get("CI"):
            pytest.fail("timm is not installed in CI: the set-up must install it (--no-deps)")
        pytest.skip("timm not installed")
    ours = small(**kw)
    theirs = timm_vit(**timm_kwargs(ours.cfg)).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=1e-5, atol=1e-5)
