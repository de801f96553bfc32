import hashlib
from dataclasses import replace

import pytest
import torch

from helpers.model import (
    VisionTransformer,
    ViTConfig,
    adapt_to_image_size,
    check_attn_mask,
    count_parameters,
    init_cls_token,
    layer_masks,
    make_config,
    normal_,
    resample_pos_embed,
    sincos_2d,
    trunc_normal_,
    uniform_,
)
from helpers.timm_adapter import timm_kwargs
from tests.conftest import SMALL, build


def small(**kw):
    return build(**{**SMALL, **kw})


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
    assert {"attn_pool.latent", "attn_pool.kv.weight"} <= set(small(global_pool="map").state_dict())
    assert "fc_norm.weight" in small(global_pool="avg").state_dict()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"global_pool": "avg"},
        {"global_pool": "map"},
        {"global_pool": "avg", "class_token": False},
        {"global_pool": "map", "class_token": False},
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
        ViTConfig(img_size=30, patch_size=4)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        ViTConfig(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="class_token"):
        ViTConfig(global_pool="token", class_token=False)
    with pytest.raises(ValueError, match="global_pool"):
        ViTConfig(global_pool="max")


def test_old_option_names_point_to_timms():
    with pytest.raises(TypeError, match="'dim'.*now 'embed_dim'"):
        VisionTransformer(dim=32)
    with pytest.raises(TypeError, match="'pool'.*now 'global_pool'"):
        make_config(pool="gap")
    with pytest.raises(TypeError, match="no option 'widht'"):
        make_config(widht=3)
    assert make_config(ViTConfig(depth=2), embed_dim=8, num_heads=2) == ViTConfig(
        depth=2, embed_dim=8, num_heads=2
    )


def test_input_errors_name_the_fix():
    m = small()
    with pytest.raises(ValueError, match="channel"):
        m(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="adapt_to_image_size"):
        m(torch.rand(2, 3, 48, 48))
    with pytest.raises(ValueError, match="unsqueeze"):
        m(torch.rand(3, 32, 32))


def test_cls_token_init_options():
    m = small()
    assert m.cls_token.abs().max().item() <= 0.04  # truncated at 2 std of 0.02
    assert small(cls_init="normal").cls_token.std().item() == pytest.approx(1e-6, rel=0.5)
    assert torch.all(small(cls_init="zeros").cls_token == 0)
    assert small(cls_init="randn").cls_token.std().item() > 0.5
    with pytest.raises(ValueError, match="unknown CLS init"):
        init_cls_token(torch.zeros(1, 1, 4), "ones")


def test_samplers_draw_the_documented_distributions():
    torch.manual_seed(0)
    t = trunc_normal_(torch.empty(200_000), std=0.02)
    assert t.abs().max().item() <= 0.04 and t.abs().max().item() > 0.039
    assert t.std().item() == pytest.approx(0.02 * 0.8796, rel=0.01)  # a 2-std cut: 0.88 std
    n = normal_(torch.empty(200_000), std=3.0)
    assert n.std().item() == pytest.approx(3.0, rel=0.01) and n.abs().max().item() > 12
    u = uniform_(torch.empty(200_000), 0.5)
    assert u.abs().max().item() <= 0.5 and u.std().item() == pytest.approx(0.5 / 3**0.5, rel=0.01)


def state_hash(model) -> str:
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode() + value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# Same seed, same initial weights, on every torch version: the samplers use torch.rand only.
# These values were computed on torch 2.13 and checked on torch 2.2 and 2.11.
INIT_HASHES = {
    "default": "c0b3172d07b736f1",
    "map, registers, sincos": "5a0af475030f26f8",
}


def test_same_seed_gives_the_same_initial_weights_on_every_torch_version():
    models = {
        "default": build(seed=0),
        "map, registers, sincos": build(
            seed=1, global_pool="map", reg_tokens=2, pos_embed="sincos", cls_init="normal"
        ),
    }
    assert {k: state_hash(m) for k, m in models.items()} == INIT_HASHES


def test_init_weights_redraws_every_parameter():
    m = small(global_pool="map", reg_tokens=1)
    torch.manual_seed(0)
    m.init_weights()
    torch.manual_seed(0)
    again = {k: v.clone() for k, v in m.state_dict().items()}
    m.init_weights()
    for k, v in m.state_dict().items():
        assert torch.equal(v, again[k]), k
    assert torch.all(m.blocks[0].attn.qkv.bias == 0) and torch.all(m.norm.weight == 1)


def test_no_cls_token_model_has_no_prefix():
    m = small(global_pool="avg", class_token=False)
    assert m.cls_token is None and m.embed(torch.rand(1, 3, 32, 32)).shape == (1, 64, 32)


def test_gap_never_pools_the_cls_token():
    m = small(global_pool="avg")
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
        {"global_pool": "avg", "class_token": False},
        {"global_pool": "map"},
        {"reg_tokens": 2},
        {"global_pool": "avg"},
        {"pos_embed": "sincos", "cls_init": "zeros"},
        {"pos_embed": "none", "mlp_ratio": 3.0},
    ],
)
def test_state_dict_loads_into_timm_with_same_logits(kw, timm_vit_class):
    ours = small(**kw)
    kwargs = timm_kwargs(ours.cfg)  # the same option names, so the same keywords
    assert set(kwargs) == set(ours.cfg.to_dict()) - {"cls_init"}
    theirs = timm_vit_class(**kwargs).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=1e-5, atol=1e-5)


def test_blocks_return_the_tensor_and_the_weights_only_when_asked():
    m = small()
    x = m.embed(torch.rand(2, 3, 32, 32))
    out = m.blocks[0](x)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape
    y, att = m.blocks[0](x, return_attention=True)
    torch.testing.assert_close(y, out)
    assert att.shape == (2, 4, 65, 65)
    assert isinstance(m.blocks[0].attn(x), torch.Tensor)


def test_attention_mask_can_differ_per_layer():
    m = small()
    x = torch.rand(3, 3, 32, 32)
    blind = torch.ones(65, 65, dtype=torch.bool)
    blind[0, 1:] = False
    with torch.no_grad():
        z = m.embed(x)
        z = m.blocks[0](z, blind)  # masked in block 0 only
        z = m.blocks[1](z)
        by_hand = m.forward_head(m.norm(z))
        per_layer = m(x, attn_mask=[blind, None])
    torch.testing.assert_close(per_layer, by_hand)
    assert not torch.allclose(per_layer, m(x, attn_mask=blind))
    torch.testing.assert_close(m(x, attn_mask=[None, None]), m(x))
    per_image = blind.expand(3, 1, 65, 65).clone()
    per_image[1] = True  # image 1 unmasked
    got = m(x, attn_mask=[per_image, None])
    torch.testing.assert_close(got[[0, 2]], per_layer[[0, 2]])
    torch.testing.assert_close(got[1], m(x)[1])
    with pytest.raises(ValueError, match="one per block"):
        m(x, attn_mask=[blind])
    with pytest.raises(ValueError, match="bool"):
        layer_masks([blind, torch.ones(65, 65)], 2, 65)


def test_map_pool_attention_is_inspectable():
    m = small(global_pool="map")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        feats = m.forward_features(x)
        logits, att = m.forward_head(feats, return_attention=True)
    torch.testing.assert_close(logits, m(x))
    assert att.shape == (2, 4, 1, 64)  # (B, heads, one query, the 64 patches)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, 1))
    assert small().forward_head(feats[:, :65], return_attention=True)[1] is None


def test_adapt_to_image_size_keeps_the_rest_and_sincos_gets_its_own_table():
    m = small(pos_embed="sincos")
    m48 = adapt_to_image_size(m, 48)
    assert m48.cfg == replace(m.cfg, img_size=48)
    torch.testing.assert_close(m48.pos_embed[0, 1:], sincos_2d(12, 32))
    torch.testing.assert_close(m48.blocks[0].attn.qkv.weight, m.blocks[0].attn.qkv.weight)
