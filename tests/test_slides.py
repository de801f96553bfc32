"""The lecture decks (scripts/build_slides.py, `make slides`), one per notebook.

Every cell of every notebook says what the lecture does with it (slide metadata), the decks
build with no warning and link only to their own files, `--mark` fills in only cells that have
no choice yet, and one deck, opened in headless Chromium from file:// with the network
blocked, steps from its first slide to its last at 1280x800 with every slide fitting the screen,
every image loaded and its math typeset.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.test_site import PAGE_FACTS_JS, RAW_TEX, _typeset, link_problems, site

ROOT = Path(__file__).resolve().parents[1]
slides = site._load("build_slides", ROOT / "scripts" / "build_slides.py")
DECK = "03_attention"  # the deck the browser steps through
MIN_SLIDES, MAX_SLIDES = 10, 32  # a 20-minute lecture, about a minute a slide


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    for need in (site.MATHJAX, slides.REVEAL / "dist" / "reveal.js"):
        if not need.exists():
            reason = f"{need.relative_to(ROOT)} is missing (scripts/setup.sh --dev vendors it)"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    out = tmp_path_factory.mktemp("slides") / "slides"
    return out, slides.build(out)


@pytest.mark.parametrize("nb", site.sync.notebooks(), ids=lambda p: p.stem)
def test_every_cell_has_slide_metadata(nb):
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    for i, cell in enumerate(cells):
        kind = slides.slide_type(cell)
        assert kind in slides.SLIDE_TYPES, (
            f"{nb.name} cell {i}: slide type {kind!r}; run `python scripts/build_slides.py "
            "--mark` for a first choice"
        )
    assert slides.slide_type(cells[0]) == "slide", "the title opens the deck"


def test_decks_build_and_link_only_their_own_files(decks):
    out, warnings = decks
    assert warnings == [], "\n".join(warnings)
    for nb in site.sync.notebooks():
        assert (out / f"{nb.stem}.html").is_file(), f"{nb.name} has no deck"
    assert link_problems(out) == []


def test_the_lectures_index_has_the_sites_style(decks):
    out, _ = decks
    index = (out / "index.html").read_text(encoding="utf-8")
    assert f'href="{site.STATIC}/site.css"' in index and (out / site.STATIC / "site.css").is_file()
    assert 'class="site-home-page"' in index
    assert index.count('class="map-item"') == len(site.sync.notebooks())


def test_mark_fills_only_cells_without_a_choice(tmp_path):
    src = ROOT / "notebooks" / f"{DECK}.ipynb"
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"][1:]:
        cell["metadata"].pop("slideshow", None)
    nb["cells"][0]["metadata"]["slideshow"] = {"slide_type": "skip"}  # a lecturer's choice
    path = tmp_path / src.name
    path.write_text(json.dumps(nb))
    assert slides.mark(path)
    marked = json.loads(path.read_text())
    assert slides.slide_type(marked["cells"][0]) == "skip", "a choice already made is kept"
    assert all(slides.slide_type(c) in slides.SLIDE_TYPES for c in marked["cells"])
    assert [c.get("outputs") for c in marked["cells"]] == [c.get("outputs") for c in nb["cells"]]
    colab = next(c for c in marked["cells"] if c["cell_type"] == "code")
    assert slides.slide_type(colab) == "skip", "the Colab cell is not lecture material"
    figures = [
        c
        for c in marked["cells"]
        if any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
    ]
    assert all(slides.HIDE_INPUT in c["metadata"].get("tags", []) for c in figures)
    assert not slides.mark(path), "a second run changes nothing"


SLIDE_JS = """() => { const s = Reveal.getCurrentSlide();
  return {images: [...s.querySelectorAll('img')].filter(
            i => !i.complete || i.naturalWidth === 0).length,
          overflow: s.scrollHeight - s.clientHeight,
          scrolls: s.querySelector('.celltag_slides-scroll') !== null,
          words: (s.innerText || '').split(/\\s+/).filter(Boolean).length,
          title: (s.innerText || '').trim().split('\\n')[0]}; }"""


def test_lead_keeps_headings_equations_lists_and_the_question():
    src = (
        "## 2. Where does CLS look?\n\nRow 0 is the CLS query. It splits attention.\n\n"
        "$$a = b$$\n\nMore prose, for the notes."
    )
    shown, rest = slides.lead(src, opens_section=True)
    assert (
        shown
        == "## 2. Where does CLS look?\n\nRow 0 is the CLS query. It splits attention.\n\n$$a = b$$"
    )
    assert rest == "More prose, for the notes."
    shown, rest = slides.lead("The counts agree (e.g. layer 2). So far, so good.", False)
    assert (shown, rest) == ("The counts agree (e.g. layer 2).", "So far, so good.")
    shown, _ = slides.lead("## What we learned\n- One. Two.\n- Three $x. Y$ four. Five.", True)
    assert shown == "## What we learned\n\n- One.\n- Three $x. Y$ four."


def test_lecture_cells_move_the_rest_to_notes_and_cut_long_outputs():
    import nbformat

    nb = nbformat.v4.new_notebook()
    md = nbformat.v4.new_markdown_cell("First sentence. Second sentence.")
    code = nbformat.v4.new_code_cell("print(x)")
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="\n".join(map(str, range(40))))
    ]
    nb.cells = [md, code]
    slides.lecture_cells(nb)
    assert [c.source for c in nb.cells[:2]] == ["First sentence.", "Second sentence."]
    assert nb.cells[1].metadata["slideshow"]["slide_type"] == "notes"
    text = nb.cells[2].outputs[0].text
    assert len(text.strip().split("\n")) == slides.OUTPUT_LINES and "more lines" in text


def test_every_deck_fits_the_screen_and_steps_through_offline(decks):
    """Each deck, at 1280x800 in Chromium from file:// with the network blocked: a lecture's
    length (about a minute a slide), every slide fits without scrolling (unless a cell asks
    to scroll, as the claims table does), every image loads, the math is typeset."""
    from tests.test_browser import ARTIFACTS, VIEWPORT, _browser_or_skip, _offline_page

    assert (VIEWPORT["width"], VIEWPORT["height"]) == (1280, 800)
    sync_playwright = _browser_or_skip()
    out, _ = decks
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page, blocked, errors = _offline_page(pw, out)
        try:
            for nb in site.sync.notebooks():
                deck = nb.stem
                page.goto((out / f"{deck}.html").as_uri())
                page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=20_000)
                _typeset(page)
                total = page.evaluate("() => Reveal.getTotalSlides()")
                assert MIN_SLIDES <= total <= MAX_SLIDES, f"{deck}: {total} slides"
                seen = 0
                for step in range(total):
                    s = page.evaluate(SLIDE_JS)
                    where = f"{deck}, slide {step + 1} ({s['title'][:50]!r})"
                    assert s["images"] == 0, f"{where}: an image did not load"
                    assert s["overflow"] <= 2 or s["scrolls"], (
                        f"{where} is {s['overflow']} px too tall for 1280x800: start a subslide "
                        "or move text to the notes (scripts/build_slides.py)"
                    )
                    if deck == DECK and step in (0, total // 2):
                        page.screenshot(path=str(ARTIFACTS / f"slides_{deck}_{step + 1}.png"))
                    seen += 1
                    if page.evaluate("() => Reveal.isLastSlide()"):
                        break
                    page.keyboard.press("Space")  # the next slide, down the columns too
                    page.wait_for_timeout(30)
                assert page.evaluate("() => Reveal.isLastSlide()"), f"{deck}: did not reach the end"
                assert seen == total, f"{deck}: stepped through {seen} of {total} slides"
                facts = page.evaluate(PAGE_FACTS_JS)
                assert facts["math"] > 0 and facts["mathErrors"] == 0, f"{deck}: math not typeset"
                raw = RAW_TEX.search(facts["prose"])
                assert raw is None, f"{deck}: raw LaTeX {raw and raw.group(0)!r}"
                assert facts["broken"] == 0
                assert not re.search(r"Loading widget", facts["text"])
                assert not errors, f"{deck}: page errors: {errors}"
        finally:
            browser.close()
    assert not blocked, f"a deck asked the network for {blocked}"
