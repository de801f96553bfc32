"""The attention measures of 05_layers_and_explanations: distance conventions, the uniform
reference, top receivers, and gradient-weighted rollout."""

import math

import pytest
import torch

from helpers.attention import (
    RECEIVER_KINDS,
    attention_received,
    get_attention,
    gradient_rollout,
    mean_attention_distance,
    receiver_kind,
    token_map,
    uniform_attention_distance,
)
from tests.conftest import TINY, build


def test_distance_conventions_for_weight_on_cls():
    # 1 CLS + a 2x2 grid, patch size 4: patch 0 puts half on CLS, half on patch 1 (4 px away)
    a = torch.zeros(5, 5)
    a[:, 0] = 1.0  # every other row: all on CLS (renormalizing an all-zero row gives 0)
    a[1] = torch.tensor([0.5, 0.0, 0.5, 0.0, 0.0])
    attn = a[None, None, None]  # (L=1, B=1, H=1, 5, 5)
    renorm = mean_attention_distance(attn, 4)
    zero = mean_attention_distance(attn, 4, prefix="zero")
    assert renorm.shape == (1, 1)
    assert renorm.item() == pytest.approx(4.0 / 4)  # 4 px for query 1, 0 for the others
    assert zero.item() == pytest.approx(2.0 / 4)  # the CLS half counts as distance 0
    with pytest.raises(ValueError, match="prefix must be one of"):
        mean_attention_distance(attn, 4, prefix="drop")


def test_uniform_reference_matches_uniform_attention():
    assert uniform_attention_distance(2, 1) == pytest.approx((2 + math.sqrt(2)) / 4)
    T = 1 + 64
    uniform = torch.full((2, 1, 3, T, T), 1 / T)
    got = mean_attention_distance(uniform, 4)
    torch.testing.assert_close(got, torch.full((2, 3), uniform_attention_distance(8, 4)))
    assert 16.4 < uniform_attention_distance(8, 4) < 16.6  # the 32x32 grid of the series
    with pytest.raises(ValueError):
        uniform_attention_distance(0, 4)


def test_attention_received_leaves_out_the_token_itself():
    T = 5
    uniform = torch.full((1, 2, 2, T, T), 1 / T)
    torch.testing.assert_close(attention_received(uniform), torch.full((1, 2, T), 1 / T))
    sink = torch.zeros(1, 1, 1, T, T)
    sink[..., 2] = 1.0  # every query reads token 2 only, token 2 too
    got = attention_received(sink)[0, 0]
    assert got[2].item() == pytest.approx(1.0) and got.sum().item() == pytest.approx(1.0)
    reads_self = torch.eye(T)[None, None, None]
    assert attention_received(reads_self).abs().max() == 0  # reading oneself does not count


def test_receiver_kind_tells_cls_object_and_background():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True  # patch size 4: the object covers patch 0 of the 2x2 grid
    received = torch.zeros(3, 1, 5)
    received[0, 0, 0] = 1  # layer 0: CLS
    received[1, 0, 1] = 1  # layer 1: patch 0, on the object
    received[2, 0, 4] = 1  # layer 2: patch 3, background
    assert receiver_kind(received, masks, 4).flatten().tolist() == [0, 1, 2]
    assert RECEIVER_KINDS == ("CLS", "object patch", "background patch")
    with pytest.raises(ValueError, match="same images"):
        receiver_kind(received, masks, 2)
    with pytest.raises(ValueError, match="attention_received"):
        receiver_kind(received[0], masks, 4)


def test_gradient_rollout_one_block_by_hand():
    m = build(**TINY)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    maps = gradient_rollout(m, x, batch_size=2)
    assert maps.shape == (3, 8, 8) and (maps >= 0).all()
    # one block: R = I + A_bar, so the CLS row over the patches is A_bar[CLS, patches]
    logits, attns = m(x, return_attention=True)
    attns[0].retain_grad()
    logits.gather(1, logits.argmax(-1, keepdim=True)).sum().backward()
    a_bar = (attns[0].grad * attns[0]).clamp_min(0).mean(1)  # (B, T, T)
    torch.testing.assert_close(maps, token_map(a_bar[:, 0]).detach())
    other = gradient_rollout(m, x, target=(logits.argmax(-1) + 1) % 6)
    assert not torch.allclose(other, maps)  # another class, another map
    assert all(p.grad is None for p in m.parameters())  # no gradients left behind


def test_gradient_rollout_weights_every_layer():
    m = build(embed_dim=16, depth=2, num_heads=2)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    _, attn = get_attention(m, x)
    maps = gradient_rollout(m, x)
    assert maps.shape == (2, 8, 8) and torch.isfinite(maps).all()
