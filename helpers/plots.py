"""Figures for the series: one style, one colormap for attention, big enough to project."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

ATTN_CMAP = "inferno"  # every attention map in the series uses this colormap

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.cmap": ATTN_CMAP,
}


def use_style() -> None:
    """Apply the series' matplotlib style (call once at the top of a notebook)."""
    mpl.rcParams.update(STYLE)


def to_numpy_image(image) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W, C) array (or (H, W) for one channel)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    image = np.clip(np.moveaxis(np.asarray(image), 0, -1), 0, 1)
    return image[..., 0] if image.shape[-1] == 1 else image


def draw_patch_grid(ax, image_size: int, patch_size: int, color="white", lw=0.6, alpha=0.5):
    """Thin lines at the patch borders over an image drawn with imshow."""
    for k in range(patch_size, image_size, patch_size):
        ax.axhline(k - 0.5, color=color, lw=lw, alpha=alpha)
        ax.axvline(k - 0.5, color=color, lw=lw, alpha=alpha)


def show_image(ax, image, title=None, grid: int | None = None):
    """An image without ticks, optionally with its patch grid (grid = patch size)."""
    img = to_numpy_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
    if grid:
        draw_patch_grid(ax, img.shape[0], grid)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def to_grey(image) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) luminance (ITU-R BT.601), for drawing under a heatmap."""
    img = to_numpy_image(image)
    return img if img.ndim == 2 else img @ np.array([0.299, 0.587, 0.114])


def show_attention(ax, image, amap, title=None, alpha=0.7, vmax=None, grid=None):
    """An attention map (g, g) stretched over the image, nearest patch.

    The picture is drawn in grey underneath, so every colour on the axes is the attention's
    (a red object cannot pass for attention). Returns the overlay's AxesImage, for a
    colorbar (`add_colorbar`).
    """
    grey = to_grey(image)
    amap = amap.detach().cpu().numpy() if isinstance(amap, torch.Tensor) else np.asarray(amap)
    H, W = grey.shape
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    overlay = ax.imshow(
        amap,
        cmap=ATTN_CMAP,
        alpha=alpha,
        vmin=0,
        vmax=vmax if vmax else max(amap.max(), 1e-9),
        extent=(-0.5, W - 0.5, H - 0.5, -0.5),
        interpolation="nearest",
    )
    if grid:
        draw_patch_grid(ax, H, grid, alpha=0.25)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title)
    return overlay


def add_colorbar(fig, mappable, ax, label="attention weight"):
    cb = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(label)
    return cb


def plot_history(history, title="Training", num_classes: int | None = None):
    """Loss per step (left) and accuracy over training (right): validation accuracy at every
    evaluation and, from two epochs on, training accuracy per epoch (at the epoch's last
    step); with `num_classes`, a chance line."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    loss = np.asarray(history.step_loss)
    a1.plot(loss, alpha=0.3, color="C0", label="per step")
    k = max(1, len(loss) // 50)
    if len(loss) >= k:
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        a1.plot(np.arange(k - 1, len(loss)), smooth, color="C0", label=f"mean of {k} steps")
    a1.set(xlabel="step", ylabel="cross-entropy loss", title=f"{title}: loss")
    a1.legend()
    steps_per_epoch = len(loss) // max(1, len(history.epoch))
    epoch_end = [e * steps_per_epoch for e in history.epoch]
    if len(history.epoch) > 1:  # one point per epoch: a curve only from two epochs on
        a2.plot(epoch_end, history.train_acc, "o-", label="train (mean over each epoch)")
    if history.val_acc:
        a2.plot(history.val_step, history.val_acc, "s-", ms=4, label="validation")
    if num_classes:
        a2.axhline(1 / num_classes, color="gray", ls="--", label=f"chance: 1/{num_classes}")
    a2.set(xlabel="step", ylabel="accuracy", title=f"{title}: accuracy", ylim=(0, 1.02))
    if a2.get_legend_handles_labels()[0]:
        a2.legend()
    fig.tight_layout()
    return fig


def plot_confusion(cm, classes, title="Confusion matrix (test set)"):
    """A confusion matrix (true rows, predicted columns) with the counts written in."""
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="images")
    fig.tight_layout()
    return fig


def plot_layer_heads(ax, values, reference=None, ref_label=None, ylabel=None, title=None):
    """One dot per head, layer on the x-axis (the style of the ViT paper's Fig. 7), the mean
    over heads as a line, and an optional dashed reference (e.g. uniform attention).

    values: (layers, heads) numbers, e.g. from mean_attention_distance."""
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"values must be (layers, heads), got shape {v.shape}.")
    L, H = v.shape
    offsets = (np.arange(H) - (H - 1) / 2) * min(0.08, 0.5 / H)  # heads side by side
    for h in range(H):
        ax.scatter(np.arange(L) + offsets[h], v[:, h], s=45, color="C0", alpha=0.7, zorder=3)
    ax.plot(np.arange(L), v.mean(1), "-", color="C0", lw=2, label="mean of the heads")
    ax.scatter([], [], s=45, color="C0", alpha=0.7, label="one head")
    if reference is not None:
        ax.axhline(reference, color="gray", ls="--", label=ref_label or "reference")
    ax.set_xticks(range(L))
    ax.set(xlabel="layer", ylabel=ylabel, title=title)
    ax.legend(loc="best")
    return ax
