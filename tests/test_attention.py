import math

import pytest
import torch

from helpers.attention import (
    attention_entropy,
    chance_mass_on_object,
    cls_attention,
    cls_maps,
    fuse_heads,
    get_attention,
    get_pool_attention,
    mass_on_object,
    mean_attention_distance,
    rollout,
    token_map,
)
from helpers.model import VisionTransformer


def random_attn(L=3, B=2, H=2, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(L, B, H, T, T, generator=g).softmax(-1)


def test_get_attention_shapes_and_logits():
    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=2, num_heads=2)
    x = torch.rand(3, 3, 32, 32)
    logits, attn = get_attention(m, x)
    assert attn.shape == (2, 3, 2, 65, 65)
    torch.testing.assert_close(logits, m(x))


def test_rollout_two_layer_hand_computed():
    a1 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    a2 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    attn = torch.stack([a1, a2])[:, None, None]  # (L=2, B=1, H=1, 2, 2)
    r = rollout(attn, residual=True)
    eye = torch.eye(2)
    r1 = 0.5 * a1 + 0.5 * eye
    r2 = (0.5 * a2 + 0.5 * eye) @ r1
    torch.testing.assert_close(r[0, 0], r1)
    torch.testing.assert_close(r[1, 0], r2)
    torch.testing.assert_close(r2, torch.tensor([[0.75, 0.25], [0.1875, 0.8125]]))
    torch.testing.assert_close(rollout(attn, residual=False)[1, 0], a2 @ a1)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_rows_sum_to_one_at_every_layer(fusion):
    r = rollout(random_attn(L=4), head_fusion=fusion)
    torch.testing.assert_close(r.sum(-1), torch.ones(4, 2, 5))


def test_fuse_heads():
    a = random_attn()
    torch.testing.assert_close(fuse_heads(a, "mean"), a.mean(2))
    torch.testing.assert_close(fuse_heads(a, "max"), a.max(2).values)
    torch.testing.assert_close(fuse_heads(a, 1), a[:, :, 1])
    with pytest.raises(ValueError):
        fuse_heads(a, "median")


def test_cls_attention_is_the_cls_row_on_the_grid():
    attn = random_attn(T=1 + 16)
    m = cls_attention(attn, layer=1, head=0)
    assert m.shape == (2, 4, 4)
    torch.testing.assert_close(m.flatten(1), attn[1, :, 0, 0, 1:])
    q = cls_attention(attn, layer=0, head="mean", query=5)
    torch.testing.assert_close(q.flatten(1), attn[0, :, :, 5, 1:].mean(1))
    with pytest.raises(ValueError, match="square"):
        token_map(torch.rand(2, 1 + 15))


def test_mass_on_object():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True  # top-left patch of a 2x2 grid (patch size 4)
    on = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(mass_on_object(on, masks, 4), torch.tensor([1.0]))
    torch.testing.assert_close(mass_on_object(torch.ones(1, 2, 2), masks, 4), torch.tensor([0.25]))
    torch.testing.assert_close(chance_mass_on_object(masks, 4), torch.tensor([0.25]))


def test_entropy_bounds():
    T = 7
    uniform = torch.full((T,), 1 / T)
    assert attention_entropy(uniform).item() == pytest.approx(math.log(T))
    assert attention_entropy(torch.eye(T)[0]).item() == pytest.approx(0.0, abs=1e-6)


def test_mean_attention_distance():
    N = 4  # 2x2 grid, patch size 4
    self_only = torch.eye(1 + N)[None, None, None]  # (1, 1, 1, 5, 5)
    assert mean_attention_distance(self_only, 4).item() == pytest.approx(0.0)
    spread = torch.zeros(1, 1, 1, 1 + N, 1 + N)
    spread[..., 1:, 1:] = 1 / N
    # from each corner of a 2x2 grid: distances 0, 4, 4, 4*sqrt(2)
    expected = (0 + 4 + 4 + 4 * math.sqrt(2)) / 4
    assert mean_attention_distance(spread, 4).item() == pytest.approx(expected)


def test_cls_maps_in_batches_equal_one_pass():
    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=2, num_heads=2)
    x = torch.rand(7, 3, 32, 32)
    _, attn = get_attention(m, x)
    torch.testing.assert_close(cls_maps(m, x, batch_size=3), cls_attention(attn, layer=-1))
    rolled = token_map(rollout(attn)[-1][:, 0])
    torch.testing.assert_close(cls_maps(m, x, use_rollout=True, batch_size=2), rolled)
    both = cls_maps(m, x, use_rollout="both", batch_size=2)  # one pass, the same two maps
    torch.testing.assert_close(both[0], cls_attention(attn, layer=-1))
    torch.testing.assert_close(both[1], rolled)
    with pytest.raises(ValueError, match="use_rollout"):
        cls_maps(m, x, use_rollout="yes")


def test_pool_attention_of_a_map_model():
    torch.manual_seed(0)
    m = VisionTransformer(embed_dim=16, depth=1, num_heads=2, global_pool="map").eval()
    x = torch.rand(3, 3, 32, 32)
    logits, att = get_pool_attention(m, x)
    torch.testing.assert_close(logits, m(x))
    assert att.shape == (3, 2, 64)  # (images, heads, patches): one query over the patches
    torch.testing.assert_close(att.sum(-1), torch.ones(3, 2))
    with pytest.raises(ValueError, match='global_pool="map"'):
        get_pool_attention(VisionTransformer(embed_dim=16, depth=1, num_heads=2), x)
