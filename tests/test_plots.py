import matplotlib.pyplot as plt
import numpy as np
import torch

from helpers.notebook import start
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
        val_acc=[0.6],
        seconds=[1.0],
    )
    fig = plot_history(h)
    assert [a.get_xlabel() for a in fig.axes] == ["step", "epoch"]
    assert all(a.get_title() for a in fig.axes)
    fig2 = plot_confusion(np.eye(3, dtype=int) * 5, ["a", "b", "c"])
    assert fig2.axes[0].get_xlabel() == "predicted class"
    plt.close("all")


def test_start_seeds_and_finds_the_data(capsys):
    ns = start(seed=3)
    a = torch.rand(1)
    start(seed=3)
    assert torch.equal(a, torch.rand(1))
    assert ns.device == torch.device("cpu") and ns.data.name == "data"
    assert ns.checkpoint.exists()
    assert "torch" in capsys.readouterr().out


def test_available_cpus_follows_the_cgroup_quota(tmp_path):
    import os

    from helpers.notebook import available_cpus

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert available_cpus(quota) == cores  # no quota: every CPU we may run on
    quota.write_text("50000 100000\n")
    assert available_cpus(quota) == 1  # half a CPU still gets one thread
    quota.write_text(f"{100000 * (cores + 4)} 100000\n")
    assert available_cpus(quota) == cores  # a quota above the affinity changes nothing
    assert available_cpus(tmp_path / "missing") == cores
