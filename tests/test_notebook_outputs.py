"""What the committed notebooks show without a kernel (GitHub, nbconvert HTML, JupyterLab).

Every text a renderer may fall back on, text/plain of every output (widgets included) and
every stream, is read: a progress bar must have ended (100%, k/n with k = n)."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
PERCENT = re.compile(r"(\d{1,3})%\|")  # tqdm: " 40%|████      |"
COUNT = re.compile(r"(\d+)/(\d+) \[")  # tqdm: "100/250 [00:02<00:03"


def output_texts(nb: dict):
    """(cell index, text) for every text fallback of every output of every code cell."""
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                yield i, "".join(out.get("text", ""))
            for mime, text in out.get("data", {}).items():
                if mime == "text/plain":
                    yield i, "".join(text) if isinstance(text, list) else str(text)


def unfinished_bars(text: str) -> list[str]:
    """The progress bars in `text` that stopped below 100%."""
    bad = [m.group(0) for m in PERCENT.finditer(text) if int(m.group(1)) < 100]
    bad += [m.group(0) for m in COUNT.finditer(text) if int(m.group(1)) < int(m.group(2))]
    return bad


def test_unfinished_bars_are_found():
    assert unfinished_bars("training:   0%|          | 0/250 [00:00<?, ?step/s]")
    assert unfinished_bars("runs:  40%|████      | 6/15 [00:30<00:45, 5.0s/run]")
    assert unfinished_bars("runs: 12/15 [00:30<00:07]")
    assert not unfinished_bars("training: 100%|██████████| 250/250 [00:04<00:00, 55 step/s]")
    assert not unfinished_bars("accuracy 84.3% (chance 16.7%), 1/65 per token")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_progress_bar_below_100_percent(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = [(i, bar) for i, text in output_texts(nb) for bar in unfinished_bars(text)]
    assert not found, (
        f"{path.name}: progress bars that stopped below 100% in the committed outputs "
        f"(cell, text): {found}. Use helpers.progress.progress_bar and re-execute the notebook."
    )
