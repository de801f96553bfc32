"""Build a reveal.js lecture deck per notebook from the committed, executed notebooks.

    python scripts/build_slides.py               # into build/slides/ (what `make slides` runs)
    python scripts/build_slides.py --out DIR
    python scripts/build_slides.py --mark        # give cells without slide metadata a default

What a lecture shows is chosen in each notebook, by Jupyter's own slide metadata
(`cell.metadata.slideshow.slide_type`: "slide", "subslide", "fragment", "-" to continue the
slide, "skip") and one tag, `slides-hide-input`, that shows a cell's output without its code.
Edit them in JupyterLab (the property inspector, "Slide Type"; the tag in "Cell Tags").

`--mark` writes a first choice into every cell that has none, so a new notebook starts with a
deck: the title and each section heading open a slide; a figure (or the explorer) gets a
slide of its own, without its code; short code stays with its printed result; long code shows
only its result; the Colab and set-up cells, the exercises' code and the "predict" cells are
skipped. It never changes a cell that already has slide metadata, nor any output.

reveal.js and MathJax come from .vendor/ (scripts/setup.sh --dev, npm) and are copied into the
deck folder: the decks load nothing from the network.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_site as site  # noqa: E402  (the site's builder: paths, templates, checks)

OUT = ROOT / "build" / "slides"
REVEAL = ROOT / ".vendor" / "node_modules" / "reveal.js"
HIDE_INPUT = "slides-hide-input"
SLIDE_TYPES = ("slide", "subslide", "fragment", "-", "skip", "notes")
SHORT_CODE = 8  # lines: longer code shows only its output on a slide


def slide_type(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type")


def default_marks(nb: dict) -> list[tuple[str, bool]]:
    """(slide type, hide input) for every cell: the first choice `--mark` writes."""
    colab = site.sync.colab_cell(nb)
    marks, in_exercises, seen_setup = [], False, False
    for i, cell in enumerate(nb["cells"]):
        src = site.sync.cell_source(cell)
        if cell["cell_type"] == "markdown":
            if src.startswith("## "):
                in_exercises = src.startswith("## Exercises")
            if i == 0 or src.startswith("## "):
                marks.append(("slide", False))
            elif src.startswith("### "):
                marks.append(("subslide", False))
            else:
                marks.append(("-", False))
            continue
        outputs = cell.get("outputs", [])
        shown = any({"image/png", "text/html"} & set(o.get("data", {})) for o in outputs)
        if cell is colab or not seen_setup or src.lstrip().startswith("my_guess") or in_exercises:
            seen_setup = seen_setup or (cell is not colab)
            marks.append(("skip", False))
        elif shown:
            marks.append(("subslide", True))
        elif not outputs:
            marks.append(("skip", False))
        else:
            marks.append(("-", len(src.splitlines()) > SHORT_CODE))
    return marks


def mark(path: Path) -> bool:
    """Write the default slide metadata into the cells of `path` that have none."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for cell, (kind, hide) in zip(nb["cells"], default_marks(nb)):
        if slide_type(cell) is not None:
            continue
        cell.setdefault("metadata", {})["slideshow"] = {"slide_type": kind}
        if hide:
            tags = cell["metadata"].setdefault("tags", [])
            if HIDE_INPUT not in tags:
                tags.append(HIDE_INPUT)
        changed = True
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def export(page: site.Page) -> str:
    import nbformat
    from nbconvert import SlidesExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.reads(json.dumps(page.nb), as_version=4)
    site.merge_streams(nb)
    site.label_figures(nb)
    # the title cell's launch links are for readers, not for a projected title
    title = nb.cells[0]
    title.source = "\n".join(
        s for s in title.source.split("\n") if not s.startswith(site.sync.BADGE_PREFIX)
    )
    exporter = SlidesExporter(
        template_name="slides",
        extra_template_basedirs=[str(site.TEMPLATES)],
        reveal_url_prefix=f"{site.STATIC}/reveal",
        reveal_theme="white",
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_input_tags={HIDE_INPUT}, enabled=True), enabled=True
    )
    resources = {"metadata": {"name": page.title}, "site": {"static": site.STATIC}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def build(out: Path = OUT, notebooks: list[Path] | None = None) -> list[str]:
    """Write one deck per notebook and an index into `out` (emptied first); the warnings."""
    for need in (site.MATHJAX, REVEAL / "dist" / "reveal.js"):
        if not need.exists():
            raise FileNotFoundError(
                f"{need.relative_to(ROOT)} is missing: the decks ship their own copy. Run "
                "`bash scripts/setup.sh --dev` (it runs npm install into .vendor/)."
            )
    pages = [site.Page(p) for p in sorted(notebooks or site.sync.notebooks())]
    if out.exists():
        shutil.rmtree(out)
    static = out / site.STATIC
    (static / "mathjax").mkdir(parents=True)
    shutil.copy2(site.MATHJAX, static / "mathjax" / site.MATHJAX.name)
    for rel in ("dist/reveal.css", "dist/reveal.js", "dist/theme/white.css"):
        (static / "reveal" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REVEAL / rel, static / "reveal" / rel)
    shutil.copytree(REVEAL / "dist/theme/fonts", static / "reveal/dist/theme/fonts")
    (static / "reveal/plugin/notes").mkdir(parents=True)
    shutil.copy2(REVEAL / "plugin/notes/notes.js", static / "reveal/plugin/notes/notes.js")
    warnings = []
    items = []
    for page in pages:
        unmarked = [i for i, c in enumerate(page.nb["cells"]) if slide_type(c) is None]
        if unmarked:
            warnings.append(
                f"{page.path.name}: cells {unmarked} have no slide metadata: run "
                "`python scripts/build_slides.py --mark`, then choose in JupyterLab"
            )
        missing = site.unexecuted_cells(page.nb)
        if missing:
            warnings.append(f"{page.path.name}: code cells {missing} were never executed")
        (out / page.href).write_text(export(page), encoding="utf-8")
        items.append(f'<li><a href="{page.href}">{site.html.escape(page.title)}</a></li>')
    (out / "index.html").write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{site.TITLE}: '
        f"lectures</title></head><body><h1>{site.TITLE}: one lecture per notebook</h1>"
        f"<ol>{''.join(items)}</ol><p>Keys: arrows or space to move, S for the speaker's "
        "notes, F for full screen, Esc for the overview.</p></body></html>\n",
        encoding="utf-8",
    )
    return warnings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/build_slides.py", description=__doc__)
    p.add_argument("--out", default=str(OUT), help="output folder (emptied first)")
    p.add_argument("--mark", action="store_true", help="write default slide metadata")
    a = p.parse_args(argv)
    if a.mark:
        for path in site.sync.notebooks():
            if mark(path):
                print(f"marked: {path.relative_to(ROOT)}")
        return 0
    return site.run_build(build, Path(a.out), "slides")


if __name__ == "__main__":
    sys.exit(main())
