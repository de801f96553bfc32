"""Build a reveal.js lecture deck per notebook from the committed, executed notebooks.

    python scripts/build_slides.py               # into build/slides/ (what `make slides` runs)
    python scripts/build_slides.py --out DIR
    python scripts/build_slides.py --mark        # give cells without slide metadata a default

What a lecture shows is chosen in each notebook, by Jupyter's own slide metadata
(`cell.metadata.slideshow.slide_type`: "slide", "subslide", "fragment", "-" to continue the
slide, "skip", "notes" for the speaker's notes) and two tags: `slides-hide-input` shows a
cell's output without its code; `slides-full-text` puts a Markdown cell's whole text on the
slide. Edit them in JupyterLab (the property inspector, "Slide Type"; the tags in "Cell Tags").

A slide is projected, not read: of a Markdown cell the slide shows its headings, display
equations and lists, and the first paragraph of a cell that opens a section (the question),
or the first sentence of any other; the whole text goes into the speaker's notes (key S).
A long printed output shows its first lines. Every deck fits 1280x800 without scrolling
(tests/test_slides.py steps through each one in Chromium at that size).

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
import base64
import json
import math
import re
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_site as site  # noqa: E402  (the site's builder: paths, templates, checks)

OUT = ROOT / "build" / "slides"
REVEAL = ROOT / ".vendor" / "node_modules" / "reveal.js"
HIDE_INPUT = "slides-hide-input"
FULL_TEXT = "slides-full-text"
OUTPUT_LINES = 14  # a printed output longer than this shows its first lines on a slide
SLIDE_TYPES = ("slide", "subslide", "fragment", "-", "skip", "notes")
SHORT_CODE = 8  # lines: longer code shows only its output on a slide


def slide_type(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type")


SLIDE_PX = 720  # content height a 1280x800 slide holds (the rest is its margins)
IMAGE_PX = 560  # the tallest a figure is drawn on a slide (the template's CSS says the same)


def _png_px(out: dict) -> int:
    """The height a PNG output takes on a slide: its own, scaled to fit IMAGE_PX and the width."""
    head = base64.b64decode("".join(out["data"]["image/png"]).replace("\n", "")[:44])
    w, h = struct.unpack(">II", head[16:24])  # the PNG's IHDR chunk
    meta = out.get("metadata", {}).get("image/png", {})
    if meta.get("width"):  # a size set by the notebook (retina figures)
        w, h = meta["width"], meta.get("height", h * meta["width"] / w)
    return int(min(IMAGE_PX, h * min(1.0, 1200 / w)))


def _text_px(text: str, chars: int, line_px: int) -> int:
    return sum(max(1, math.ceil(len(line) / chars)) for line in text.split("\n")) * line_px


def cell_px(cell: dict, kind: str, hide: bool) -> int:
    """An estimate of the height a cell takes on a slide, in pixels at 1280x800."""
    src = site.sync.cell_source(cell)
    if cell["cell_type"] == "markdown":
        shown, _ = lead(src, kind in ("slide", "subslide") or src.lstrip().startswith("#"))
        px = 0
        for block in shown.split("\n\n"):
            if block.startswith("#"):
                px += 75
            elif block.startswith(("$$", "\\[")):
                px += 90
            else:
                px += _text_px(block, 80, 35) + 22
        return px
    px = 0 if hide else _text_px(src, 100, 24) + 30
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if "image/png" in data:
            px += _png_px(out) + 10
        elif "text/html" in data or "text/markdown" in data:
            px += SLIDE_PX  # the explorer, a rendered table: a slide of its own
        elif out.get("output_type") == "stream" or "text/plain" in data:
            text = out.get("text") if out.get("output_type") == "stream" else data["text/plain"]
            text = "".join(text) if isinstance(text, list) else text
            lines = text.rstrip("\n").split("\n")[:OUTPUT_LINES]
            px += _text_px("\n".join(lines), 100, 24) + 30
    return px


def default_marks(nb: dict) -> list[tuple[str, bool]]:
    """(slide type, hide input) for every cell: the first choice `--mark` writes.

    The title and each section heading open a slide, a "###" heading a subslide; a figure
    (or the explorer) gets a subslide, without its code; short code stays with its printed
    result, long code shows only its result; the Colab and set-up cells, the "predict" code,
    everything after the exercises' heading and the closing's code are skipped. A cell that would not fit on
    the slide so far (cell_px) starts a subslide of its own.
    """
    colab = site.sync.colab_cell(nb)
    marks, in_exercises, seen_setup = [], False, False
    for i, cell in enumerate(nb["cells"]):
        src = site.sync.cell_source(cell)
        if cell["cell_type"] == "markdown":
            if src.startswith("## "):
                in_exercises = src.startswith(("## Exercises", "## What we learned"))
                marks.append(("slide", False))
            elif i == 0:
                marks.append(("slide", False))
            elif in_exercises and not src.startswith("**Next"):
                marks.append(("skip", False))
            elif src.startswith("### "):
                marks.append(("subslide", False))
            else:
                marks.append(("-", False))
            continue
        outputs = cell.get("outputs", [])
        shown = any(
            {"image/png", "text/html", "text/markdown"} & set(o.get("data", {})) for o in outputs
        )
        if cell is colab or not seen_setup or src.lstrip().startswith("my_guess") or in_exercises:
            seen_setup = seen_setup or (cell is not colab)
            marks.append(("skip", False))
        elif shown:
            marks.append(("subslide", True))
        elif not outputs:
            marks.append(("skip", False))
        else:
            marks.append(("-", len(src.splitlines()) > SHORT_CODE))
    used = 0
    for i, (cell, (kind, hide)) in enumerate(zip(nb["cells"], marks)):
        if kind in ("skip", "notes"):
            continue
        px = cell_px(cell, kind, hide)
        if kind == "-" and used + px > SLIDE_PX:
            marks[i] = ("subslide", hide)
            used = px
        else:
            used = px if kind in ("slide", "subslide") else used + px
    return marks


def mark(path: Path, reset: bool = False) -> bool:
    """Write the default slide metadata into the cells of `path` that have none (into every
    cell, replacing what is there, with reset=True)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    if reset:
        for cell in nb["cells"]:
            cell.get("metadata", {}).pop("slideshow", None)
            tags = cell.get("metadata", {}).get("tags")
            if tags and HIDE_INPUT in tags:
                tags.remove(HIDE_INPUT)
                if not tags:
                    del cell["metadata"]["tags"]
    changed = reset
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


def _sentences(text: str) -> list[str]:
    """Split prose into sentences (not inside inline math, not after "e.g." or "i.e.")."""
    parts, start, depth = [], 0, 0
    for m in re.finditer(r"\$|[.!?](?=\s+[A-Z*(\[`])", text):
        if m.group() == "$":
            depth ^= 1
        elif not depth and not text[max(0, m.start() - 3) : m.end()].endswith(("e.g.", "i.e.")):
            parts.append(text[start : m.end()].strip())
            start = m.end()
    tail = text[start:].strip()
    return parts + ([tail] if tail else [])


def lead(source: str, opens_section: bool) -> tuple[str, str]:
    """(what a slide shows, the rest) of a Markdown cell's source: headings and display
    equations stay, a list keeps the first sentence of each item; of the prose, the first
    paragraph when the cell opens a section, else the first sentence."""
    shown, rest, prose_done = [], [], False
    blocks = []
    for block in re.split(r"\n\s*\n", source.strip()):
        head, _, body = block.strip().partition("\n")
        blocks += [head, body] if head.startswith("#") and body.strip() else [block]
    for b in (block.strip() for block in blocks):
        if b.startswith("#") or b.startswith("$$") or b.startswith("\\["):
            shown.append(b)
        elif re.match(r"([-*]|\d+\.) ", b):  # a list: the first sentence of each item
            items = re.split(r"\n(?=(?:[-*]|\d+\.) )", b)
            cut = [_sentences(re.sub(r"\s*\n\s*", " ", item))[0] for item in items]
            shown.append("\n".join(cut))
            if cut != items:
                rest.append(b)
        elif not prose_done:
            prose_done = True
            if opens_section:
                shown.append(b)
            else:
                first, *more = _sentences(b)
                shown.append(first)
                rest.append(" ".join(more))
        else:
            rest.append(b)
    return "\n\n".join(shown), "\n\n".join(r for r in rest if r)


def lecture_cells(nb) -> None:
    """Turn a notebook's cells into a lecture's (in place): Markdown cut to its lead with the
    whole text as the speaker's notes, long printed outputs cut to their first lines."""
    import nbformat

    cells = []
    for cell in nb.cells:
        kind = cell.metadata.get("slideshow", {}).get("slide_type", "-")
        tags = cell.metadata.get("tags", [])
        cells.append(cell)
        if kind in ("skip", "notes"):
            continue
        if cell.cell_type == "markdown" and FULL_TEXT not in tags:
            opens = kind in ("slide", "subslide") or cell.source.lstrip().startswith("#")
            shown, rest = lead(cell.source, opens)
            if rest:
                cell.source = shown
                notes = nbformat.v4.new_markdown_cell(rest)
                notes.metadata["slideshow"] = {"slide_type": "notes"}
                cells.append(notes)
        for out in cell.get("outputs", []):
            if out.output_type == "stream" or "text/plain" in out.get("data", {}):
                text = out.text if out.output_type == "stream" else out.data["text/plain"]
                lines = text.rstrip("\n").split("\n")
                if len(lines) > OUTPUT_LINES and not (
                    {"image/png", "text/html", "text/markdown"} & set(out.get("data", {}))
                ):
                    cut = "\n".join(lines[: OUTPUT_LINES - 1])
                    cut += f"\n... ({len(lines) - OUTPUT_LINES + 1} more lines in the notebook)\n"
                    if out.output_type == "stream":
                        out.text = cut
                    else:
                        out.data["text/plain"] = cut
    nb.cells = cells


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
    lecture_cells(nb)
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
        items.append(
            f'<li class="map-item"><a class="map-title" href="{page.href}">'
            f"{site.html.escape(page.title)}</a></li>"
        )
    # the index page in the site's style (its stylesheet travels with the decks)
    shutil.copy2(site.TEMPLATES / "site.css", static / "site.css")
    (out / "index.html").write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{site.TITLE}: lectures</title>"
        f'<link rel="stylesheet" href="{site.STATIC}/site.css"></head>'
        f'<body class="site-home-page"><main><h1>{site.TITLE}: one lecture per notebook</h1>'
        f'<ol class="series-map">{"".join(items)}</ol><p>Keys: arrows or space to move, S for '
        "the speaker's notes, F for full screen, Esc for the overview.</p></main></body></html>\n",
        encoding="utf-8",
    )
    return warnings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/build_slides.py", description=__doc__)
    p.add_argument("--out", default=str(OUT), help="output folder (emptied first)")
    p.add_argument("--mark", action="store_true", help="write default slide metadata")
    p.add_argument(
        "--reset", action="store_true", help="with --mark: replace the slide metadata of every cell"
    )
    a = p.parse_args(argv)
    if a.mark:
        for path in site.sync.notebooks():
            if mark(path, reset=a.reset):
                print(f"marked: {path.relative_to(ROOT)}")
        return 0
    return site.run_build(build, Path(a.out), "slides")


if __name__ == "__main__":
    sys.exit(main())
