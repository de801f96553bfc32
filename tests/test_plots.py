import matplotlib.pyplot as plt
import numpy as np
import torch

from helpers.plots import (
    ATTN_CMAP,
    add_colorbar,
    plot_confusion,
    plot_history,
    show_attention,
    show_image,
    to_numpy_image,
)
from helpers.train import History


def test_to_numpy_image():
    assert to_numpy_image(torch.rand(3, 8, 8)).shape == (8, 8, 3)
    assert to_numpy_image(torch.rand(1, 8, 8)).shape == (8, 8)
    assert to_numpy_image(torch.full((3, 2, 2), 2.0)).max() == 1.0


def test_attention_overlay_uses_the_series_colormap():
    fig, ax = plt.subplots()
    show_image(ax, torch.rand(3, 32, 32), title="x", grid=4)
    overlay = show_attention(ax, torch.rand(3, 32, 32), torch.rand(8, 8), title="attn")
    assert overlay.get_cmap().name == ATTN_CMAP
    assert overlay.get_extent() == [-0.5, 31.5, 31.5, -0.5]  # stretched over the image
    assert add_colorbar(fig, overlay, ax).ax.get_ylabel() == "attention weight"
    plt.close(fig)


def test_history_and_confusion_figures_are_labelled():
    h = History(
        step_loss=[2.0, 1.0, 0.5],
        epoch=[1],
        train_loss=[1.2],
        train_acc=[0.5],
        seconds=[1.0],
        val_step=[2, 3],
        val_seconds=[0.5, 1.0],
        val_acc=[0.4, 0.6],
    )
    fig = plot_history(h, num_classes=6)
    lines = {line.get_label(): line for line in fig.axes[1].lines}
    curve = lines["validation"]  # validation accuracy: one point per evaluation
    assert list(curve.get_xdata()) == [2, 3] and list(curve.get_ydata()) == [0.4, 0.6]
    assert "chance: 1/6" in lines  # the line every accuracy is read against
    assert not any(k.startswith("train") for k in lines)  # one epoch: no one-point "curve"
    two = History(**{**vars(h), "epoch": [1, 2], "train_acc": [0.5, 0.7], "step_loss": [1.0] * 4})
    labels = [line.get_label() for line in plot_history(two).axes[1].lines]
    assert any(k.startswith("train") for k in labels)  # from two epochs on, a training curve
    assert [a.get_xlabel() for a in fig.axes] == ["step", "step"]
    assert all(a.get_title() for a in fig.axes)
    fig2 = plot_confusion(np.eye(3, dtype=int) * 5, ["a", "b", "c"])
    assert fig2.axes[0].get_xlabel() == "predicted class"
    plt.close("all")


def test_attention_is_drawn_over_a_grey_picture():
    """Every colour on an attention panel is the colormap's: the picture underneath is grey."""
    red = torch.zeros(3, 32, 32)
    red[0] = 1.0  # a pure red image: luminance 0.299
    fig, ax = plt.subplots()
    show_attention(ax, red, torch.rand(8, 8))
    base = ax.images[0]
    assert base.get_array().ndim == 2 and base.get_cmap().name == "gray"
    np.testing.assert_allclose(base.get_array(), 0.299)
    plt.close(fig)
