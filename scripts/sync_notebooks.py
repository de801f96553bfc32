"""Write the Colab cell into every notebook, from its one template, and drop stored
widget state (it hides the static PNG of each widget in nbconvert HTML and on the site).

    python scripts/sync_notebooks.py            # rewrite the first code cell where it differs
    python scripts/sync_notebooks.py --check    # only list the notebooks that differ (exit 1)

The cell's text is scripts/colab_cell.py, with "@REPOSITORY@" replaced by the repository URL
of pyproject.toml ([project.urls] Repository). In each notebook it is the first code cell, right
after the Markdown title cell (a notebook without one gets one there).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "scripts" / "colab_cell.py"
PLACEHOLDER = "@REPOSITORY@"


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """[project.urls] Repository of pyproject.toml."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        m = re.search(r'^\[project\.urls\][^\[]*?^Repository\s*=\s*"([^"]+)"', text, re.M | re.S)
        return m.group(1)
    return tomllib.loads(text)["project"]["urls"]["Repository"]


def render_cell(url: str | None = None) -> str:
    """The first code cell of every notebook, as text (no trailing newline)."""
    text = TEMPLATE.read_text(encoding="utf-8").rstrip("\n")
    assert text.count(PLACEHOLDER) == 1, f"{TEMPLATE} must contain {PLACEHOLDER} once"
    return text.replace(PLACEHOLDER, url or repository_url())


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def colab_cell(nb: dict) -> dict | None:
    """The notebook's Colab cell: its first code cell, if that one mentions google.colab."""
    cell = next((c for c in nb["cells"] if c["cell_type"] == "code"), None)
    return cell if cell is not None and "google.colab" in cell_source(cell) else None


def cell_source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_views(nb: dict) -> list[dict]:
    """The outputs' data bundles that hold a widget view beside a static picture or page."""
    return [
        out["data"]
        for c in nb["cells"]
        for out in c.get("outputs", [])
        if WIDGET_VIEW in out.get("data", {}) and {"text/html", "image/png"} & set(out["data"])
    ]


def sync(path: Path, cell_text: str, write: bool = True) -> bool:
    """Make the first code cell of one notebook `cell_text`, and drop saved widget state and
    widget views that have a static form; True if anything differed.

    A notebook without a Colab cell gets one, after its Markdown title cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = colab_cell(nb)
    stored_widgets = "widgets" in nb.get("metadata", {}) or widget_views(nb)
    if cell is not None and cell_source(cell) == cell_text and not stored_widgets:
        return False
    if not write:
        return True
    # Saved widget state makes static renders (nbconvert HTML, the site) draw an empty widget
    # instead of the PNG each widget output carries: a committed notebook keeps none. And a
    # widget view with no state behind it reads "model not found" in JupyterLab before the
    # notebook runs, where its HTML or PNG would show the explorer: keep those instead (the
    # widget comes back when the cell runs).
    nb.get("metadata", {}).pop("widgets", None)
    for data in widget_views(nb):
        del data[WIDGET_VIEW]
    if cell is not None and cell_source(cell) == cell_text:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return True
    if cell is None:
        ids = {c.get("id") for c in nb["cells"]}
        cell = {
            "cell_type": "code",
            "execution_count": None,
            "id": "colab" if "colab" not in ids else uuid.uuid4().hex[:8],
            "metadata": {},
            "outputs": [],
            "source": [],
        }
        at = 1 if nb["cells"] and nb["cells"][0]["cell_type"] == "markdown" else 0
        nb["cells"].insert(at, cell)
    cell["source"] = cell_text.splitlines(keepends=True)
    cell["outputs"] = []  # outside Colab the cell prints nothing
    # the layout Jupyter writes: one-space indent, UTF-8 as is, a final newline
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    check = "--check" in argv
    cell_text = render_cell()
    changed = [p for p in notebooks() if sync(p, cell_text, write=not check)]
    for p in changed:
        print(f"{'differs' if check else 'updated'}: {p.relative_to(ROOT)}")
    if not changed:
        print("every notebook's first code cell is the Colab cell")
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
