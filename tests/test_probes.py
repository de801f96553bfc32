"""helpers.probes: block states, the logit lens, linear probes and deletion curves."""

import pytest
import torch

from helpers.probes import (
    block_states,
    curve_area,
    deletion_curve,
    fit_probe,
    layer_profile,
    logit_lens,
    mean_tokens,
    probe_accuracy,
    rank_patches,
)
from tests.conftest import SMALL, TINY, build


def run_blocks(m, x):
    for block in m.blocks:
        x = block(x)
    return m.forward_head(m.norm(x))


def images(n, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_block_states_are_the_residual_stream():
    m = build(**SMALL)
    x = images(5)
    s = block_states(m, x, batch_size=2)
    assert s.shape == (SMALL["depth"] + 1, 5, 65, SMALL["embed_dim"])
    with torch.no_grad():
        torch.testing.assert_close(s[0], m.embed(x))
        torch.testing.assert_close(s[1], m.blocks[0](m.embed(x)))
        torch.testing.assert_close(m.forward_head(m.norm(s[-1])), m(x))
    torch.testing.assert_close(block_states(m, x, batch_size=2, token=0), s[:, :, 0])
    torch.testing.assert_close(block_states(m, x, token=-1), s[:, :, -1])
    with pytest.raises(ValueError, match="token must be an index"):
        block_states(m, x, token=65)


def test_logit_lens_on_the_last_cls_state_is_the_output():
    m = build(**SMALL)
    x = images(4)
    s = block_states(m, x)
    lens = logit_lens(m, s)
    assert lens.shape == (SMALL["depth"] + 1, 4, 65, 6)
    with torch.no_grad():
        torch.testing.assert_close(lens[-1, :, 0], m(x))
        torch.testing.assert_close(lens[1, :, 3], m.head(m.norm(s[1, :, 3])))
    with pytest.raises(ValueError, match="width D = 32"):
        logit_lens(m, torch.zeros(2, 16))
    with pytest.raises(ValueError, match='global_pool="map"'):
        logit_lens(build(global_pool="map", **TINY), torch.zeros(2, 16))


def test_probe_learns_a_linear_rule_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 5, generator=g) * torch.tensor([1.0, 100.0, 1.0, 1.0, 0.01])
    labels = (feats[:, 0] > 0).long() + 2 * (feats[:, 4] > 0).long()  # 4 classes
    p = fit_probe(feats, labels)
    assert p.weight.shape == (4, 5) and probe_accuracy(p, feats, labels) > 0.97
    q = fit_probe(feats, labels)
    assert torch.equal(p.weight, q.weight)  # full batch from zero: the same every run
    noise = torch.randn(300, 5, generator=g)
    assert probe_accuracy(fit_probe(noise[:200], labels[:200]), noise[200:], labels[200:]) < 0.5


def test_probe_bad_input():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fit_probe(torch.zeros(10), torch.zeros(10))
    with pytest.raises(ValueError, match="one per feature row"):
        fit_probe(torch.zeros(10, 3), torch.zeros(9))
    with pytest.raises(ValueError, match="lie in 0..1"):
        fit_probe(torch.zeros(3, 2), torch.tensor([0, 1, 2]), num_classes=2)


def test_deletion_curve_ends():
    m = build(**SMALL)
    x, y = images(12), torch.arange(12) % 6
    scores = torch.rand(12, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = (m(x).argmax(-1) == y).float().mean()
    curve = deletion_curve(m, x, y, scores, [0, 64], batch_size=5)
    assert curve[0] == plain  # nothing removed: the model itself
    # every patch replaced by the mean token: every image becomes the same input
    fill = mean_tokens(m, x)
    with torch.no_grad():
        same = run_blocks(m, fill[None]).argmax(-1)
    assert curve[1] == (y == same).float().mean()
    again = deletion_curve(m, x, y, scores.reshape(12, 8, 8), [0, 64], fill=fill)
    torch.testing.assert_close(again, curve)
    each = deletion_curve(m, x, y, scores, [0, 64], batch_size=5, per_image=True)
    assert each.shape == (2, 12) and set(each.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(each.mean(1), curve)  # the accuracy is the mean over images


def test_deletion_removes_the_top_ranked_patches():
    m = build(**SMALL)
    x, y = images(6), torch.zeros(6, dtype=torch.long)
    scores = torch.zeros(6, 64)
    scores[:, 5] = 1.0  # patch 5 ranks first
    got = deletion_curve(m, x, y, scores, [1], fill="zero")
    x0 = m.embed(x).detach()
    x0[:, 1 + 5] = 0  # token 1 + 5: CLS comes first
    with torch.no_grad():
        want = (run_blocks(m, x0).argmax(-1) == y).float().mean()
    assert got.item() == pytest.approx(want.item())


def test_deletion_bad_input():
    m = build(**TINY)
    x, y = images(2), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="one score per patch"):
        deletion_curve(m, x, y, torch.zeros(2, 10), [1])
    with pytest.raises(ValueError, match="0..64"):
        deletion_curve(m, x, y, torch.zeros(2, 64), [65])
    with pytest.raises(ValueError, match="fill must be one of"):
        deletion_curve(m, x, y, torch.zeros(2, 64), [1], fill="noise")
    with pytest.raises(ValueError, match=r"\(T, D\)"):
        deletion_curve(m, x, y, torch.zeros(2, 64), [1], fill=torch.zeros(3, 3))


def test_rank_patches_is_stable_and_curve_area():
    order = rank_patches(torch.tensor([[0.0, 1.0, 0.0, 1.0]]))
    assert order.tolist() == [[1, 3, 0, 2]]  # ties keep reading order
    assert curve_area([0, 8, 64], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert curve_area([0, 64], [1.0, 0.0]) == pytest.approx(0.5)
    assert curve_area([0, 32, 64], [1.0, 0.0, 0.0]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="increase"):
        curve_area([0, 8, 4], [1, 1, 1])
    with pytest.raises(ValueError, match="at least two"):
        curve_area([0], [1])
    # one curve per image: the areas per image, whose mean is the area of the mean curve
    per_image = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # (len(ks), 2 images)
    areas = curve_area([0, 32, 64], per_image)
    torch.testing.assert_close(areas, torch.tensor([0.25, 1.0], dtype=torch.float64))
    assert areas.mean().item() == pytest.approx(curve_area([0, 32, 64], per_image.mean(1)))
    with pytest.raises(ValueError, match="one value per k"):
        curve_area([0, 32, 64], torch.zeros(2, 4))


def test_layer_profile_shapes_and_agreement():
    from helpers.attention import (
        attention_entropy,
        attention_received,
        get_attention,
        mean_attention_distance,
        receiver_kind,
    )
    from helpers.data import ShapesDataset

    ds = ShapesDataset("test", n=6)
    x, y = ds.batch(torch.arange(6))
    m = build(**SMALL)
    prof = layer_profile(m, x, y, ds.masks, batch_size=4)  # two batches of unequal size
    L, H = SMALL["depth"], SMALL["num_heads"]
    for key in ("cls_entropy", "on_object", "distance"):
        assert prof[key].shape == (L, H)
    assert prof["receivers"].shape == (L, 3) and (prof["receivers"].sum(1) == 6).all()
    assert prof["lens"].shape == (L + 1,)
    logits, attn = get_attention(m, x)
    received = attention_received(attn)
    torch.testing.assert_close(prof["top"], received.argmax(-1))
    # the norm ratio, by hand, for every layer with a background top receiver
    states = block_states(m, x)
    kinds = receiver_kind(received, ds.masks, 4)
    for la in range(L):
        bg = (kinds[la] == 2).nonzero().flatten()
        if len(bg) == 0:
            assert torch.isnan(prof["norm_ratio"][la])
            continue
        nrm = states[la].norm(dim=-1)  # (B, T): the input of layer la
        want = (nrm[bg, prof["top"][la, bg]] / nrm[bg, 1:].median(1).values).mean()
        torch.testing.assert_close(prof["norm_ratio"][la], want.float())
    torch.testing.assert_close(prof["cls_entropy"], attention_entropy(attn[:, :, :, 0]).mean(1))
    torch.testing.assert_close(prof["distance"], mean_attention_distance(attn, 4))
    assert prof["lens"][-1] == (logits.argmax(-1) == y).float().mean()


def test_plot_layer_heads_draws_a_dot_per_head():
    import matplotlib.pyplot as plt

    from helpers.plots import plot_layer_heads

    fig, ax = plt.subplots()
    plot_layer_heads(ax, torch.rand(4, 3), reference=0.5, ref_label="uniform", ylabel="y")
    assert len(ax.collections) == 3 + 1  # a scatter per head, plus the legend's marker
    assert sum(len(c.get_offsets()) for c in ax.collections) == 12
    with pytest.raises(ValueError, match="layers, heads"):
        plot_layer_heads(ax, torch.rand(4))
    plt.close(fig)
