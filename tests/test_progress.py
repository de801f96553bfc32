"""Progress bars end at 100% wherever they are read: a terminal, a live notebook, and the
saved file (GitHub, nbconvert HTML, JupyterLab without a kernel)."""

import json
import re
from pathlib import Path

from helpers.progress import progress_bar
from tests.conftest import ROOT, execute_cells

BAR = re.compile(r"(\d+)%\|")


def test_in_a_terminal_the_bar_goes_to_stderr(capsys):
    bar = progress_bar(5, desc="work", unit="step")
    for _ in range(5):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "work: 100%|" in err and "5/5" in err
    assert progress_bar(5, disable=True).disable


def test_a_saved_notebook_keeps_the_last_frame(tmp_path):
    cells = [
        "import time\n"
        "from helpers.progress import progress_bar\n"
        "bar = progress_bar(30, desc='steps', unit='step')\n"
        "for i in range(30):\n"
        "    time.sleep(0.05)\n"
        "    bar.update(1)\n"
        "    bar.set_postfix(loss=f'{1 / (i + 1):.2f}', refresh=False)\n"
        "bar.close()",
        "from helpers.data import ShapesDataset\n"
        "from helpers.studies.runner import compare_configs\n"
        "from helpers.model import ViTConfig\n"
        "from helpers.train import TrainConfig\n"
        "ds = ShapesDataset('train', n=64)\n"
        "cfg = TrainConfig(epochs=1, batch_size=32, warmup_steps=1)\n"
        "base = ViTConfig(embed_dim=16, depth=1, num_heads=2)\n"
        "rows = compare_configs({'a': {}}, ds, ds, cfg, (0, 1), base, progress=True)",
    ]
    saved = execute_cells(cells, tmp_path)
    for cell, total in ((saved.cells[0], 30), (saved.cells[1], 2)):
        texts = [o["data"]["text/plain"] for o in cell.outputs if "data" in o]
        assert len(cell.outputs) == 1 and len(texts) == 1, cell.outputs  # one line, replaced
        assert "100%|" in texts[0] and f"{total}/{total}" in texts[0], texts[0]
    assert "loss=0.03" in saved.cells[0].outputs[0]["data"]["text/plain"]


def committed_texts(path: Path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            yield i, text


def test_no_committed_notebook_shows_a_bar_below_100_percent():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, text in committed_texts(path):
            low = [int(p) for p in BAR.findall(text) if int(p) < 100]
            assert not low, f"{path.name}, cell {i}: a progress bar stops at {low[0]}%: {text!r}"
