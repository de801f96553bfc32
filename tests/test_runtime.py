"""Runtime set-up and the device policy: start() chooses the device once and says why; every
helper that takes a model runs it where the model is; no helper picks a device itself."""

import os
import platform

import pytest
import torch

from helpers.attention import cls_maps, get_attention
from helpers.data import ShapesDataset
from helpers.explorer.widget import AttentionExplorer
from helpers.model import VisionTransformer, ViTConfig
from helpers.runtime import (
    available_cpus,
    choose_device,
    cpu_kind,
    provenance,
    same_numerics,
    start,
)
from helpers.studies.runner import compare_configs
from helpers.train import TrainConfig, evaluate, predict, predictions, train
from tests.conftest import TINY


def test_start_seeds_and_finds_the_data(capsys):
    ns = start(seed=3)
    a = torch.rand(1)
    start(seed=3)
    assert torch.equal(a, torch.rand(1))
    assert ns.device == torch.device("cpu") and ns.checkpoint.exists()
    out = capsys.readouterr().out
    assert "device: cpu (the default" in out and f"torch {torch.__version__}" in out


def test_available_cpus_follows_the_cgroup_quota(tmp_path):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert available_cpus(quota) == cores  # no quota: every CPU we may run on
    quota.write_text("50000 100000\n")
    assert available_cpus(quota) == 1  # half a CPU still gets one thread
    quota.write_text(f"{100000 * (cores + 4)} 100000\n")
    assert available_cpus(quota) == cores  # a quota above the affinity changes nothing
    assert available_cpus(tmp_path / "missing") == cores


@pytest.fixture
def gpu_everywhere(monkeypatch):
    """Pretend a CUDA GPU (and Apple's MPS) is present. This torch has no CUDA, so any helper
    that moved a tensor or a model to "cuda" on its own would fail."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


def test_start_uses_the_cpu_unless_asked(gpu_everywhere, capsys):
    assert start().device == torch.device("cpu")
    assert choose_device("auto")[0] == torch.device("cuda")
    assert "a CUDA GPU is here" in choose_device("auto")[1]


def test_asking_for_a_missing_gpu_names_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match='start\\(device="auto"\\)'):
        choose_device("cuda")
    with pytest.raises(ValueError, match="not one of"):
        choose_device("tpu")


def test_no_helper_picks_a_gpu_on_its_own(gpu_everywhere):
    ds = ShapesDataset("test", n=24)
    x, _ = ds.batch(torch.arange(4))
    torch.manual_seed(0)
    model = VisionTransformer(**TINY)
    train(model, ds, ds, TrainConfig(epochs=1, batch_size=8, warmup_steps=1), progress=False)
    evaluate(model, ds), predict(model, x), predictions(model, ds)
    get_attention(model, x), cls_maps(model, x, use_rollout=True)
    AttentionExplorer(model, ds).set(layer=0)
    base = ViTConfig(**TINY)
    compare_configs({"a": {}}, ds, ds, TrainConfig(epochs=1, batch_size=8), (0,), base)
    assert all(p.device.type == "cpu" for p in model.parameters())


class ReachedTheModel(Exception):
    """Raised by the spy once it has seen the input: the rest of the helper is not needed."""


class Spy(VisionTransformer):
    """A ViT that checks every input is on its own device, then stops the helper."""

    def forward(self, x, *args, **kwargs):
        here = self.cls_token.device
        assert x.device == here, f"the helper called the model on {x.device}, it is on {here}"
        raise ReachedTheModel


@pytest.mark.parametrize(
    "call",
    [
        lambda m, ds, x: train(m, ds, None, TrainConfig(epochs=1, batch_size=8), progress=False),
        lambda m, ds, x: evaluate(m, ds),
        lambda m, ds, x: predict(m, x),
        lambda m, ds, x: get_attention(m, x),
        lambda m, ds, x: cls_maps(m, x),
    ],
    ids=["train", "evaluate", "predict", "get_attention", "cls_maps"],
)
def test_helpers_run_the_model_on_its_own_device(call):
    """With the model on the "meta" device (shapes, no data) and the data on the CPU, each
    helper must move its inputs to the model, and must not move the model."""
    ds = ShapesDataset("test", n=16)
    x, _ = ds.batch(torch.arange(4))
    torch.manual_seed(0)
    spy = Spy(**TINY).to("meta")
    with pytest.raises(ReachedTheModel):
        call(spy, ds, x)
    assert spy.cls_token.device.type == "meta"


def test_provenance_records_the_command_as_typed_and_the_thread_count():
    rec = provenance("helpers.train", ["--out", "x.pt", "--threads", "1"])
    assert rec["command"] == "python -m helpers.train --out x.pt --threads 1"
    assert rec["threads"] == torch.get_num_threads() and rec["torch"] == torch.__version__
    assert rec["machine"] and rec["python"]
    assert rec["cpu"] == cpu_kind() and rec["cpu"].startswith(platform.machine())


def test_same_numerics_says_when_a_rerun_must_match_its_record_and_why_not():
    here = {"torch": str(torch.__version__), "cpu": cpu_kind()}
    assert same_numerics(here, "cpu") == (True, "")
    exact, why = same_numerics({**here, "torch": "2.2.0"}, "cpu")
    assert not exact and "2.2.0 in the record" in why
    exact, why = same_numerics({**here, "cpu": "x86_64, AVX512, another CPU"})
    assert not exact and "AVX512, another CPU" in why
    exact, why = same_numerics({"torch": here["torch"]})  # a record from before "cpu" existed
    assert not exact and "does not say which kind of CPU" in why
    exact, why = same_numerics(here, torch.device("meta"))
    assert not exact and "meta" in why


def test_threads_runs_a_block_at_a_records_count_and_restores():
    import torch

    from helpers.runtime import threads

    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), threads(1):  # restored after an error too
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be"), threads(bad):
            pass
