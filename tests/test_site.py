"""The static site (scripts/build_site.py, `make site`), built from the committed notebooks.

Built once into a temporary folder: it builds with no warning (no missing outputs), every
notebook has a page, every link inside the site resolves (files and #sections), every image
decodes, and nothing is loaded from the network. Then in Debian's headless Chromium, opened
from file:// with every non-file request aborted: the home page shows the claims index; each
notebook page shows its figures and its math typeset by the site's MathJax (no raw LaTeX
left), no "Loading widget", no empty output box, no progress bar short of 100%; where a page
holds the explorer's kernel-free view, it draws and answers a layer change and a patch click.

Needs MathJax vendored by `scripts/setup.sh --dev` (npm): skipped without it outside CI.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import json
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site)
NOTEBOOKS = site.sync.notebooks()
BUILD_BUDGET_S = 60  # the whole site on a shared 2-core machine
# attributes that make the browser load something (a link's href only navigates)
LOADING = {
    ("img", "src"),
    ("script", "src"),
    ("link", "href"),
    ("iframe", "src"),
    ("source", "src"),
    ("video", "src"),
    ("audio", "src"),
    ("embed", "src"),
}


class Links(HTMLParser):
    """The ids, links and loaded resources of one page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, name, value))


def parse(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not site.MATHJAX.exists():
        reason = f"{site.MATHJAX.relative_to(ROOT)} is missing (scripts/setup.sh --dev vendors it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("site") / "site"
    start = time.perf_counter()
    warnings = site.build(out)
    return out, warnings, time.perf_counter() - start


def test_site_builds_without_warnings_in_budget(built):
    _, warnings, seconds = built
    assert warnings == [], "\n".join(warnings)
    assert seconds < BUILD_BUDGET_S, f"the site took {seconds:.0f} s to build"


def test_every_notebook_has_a_page_linked_from_home(built):
    out, _, _ = built
    home = {v for tag, _, v in parse(out / "index.html").refs if tag == "a"}
    for nb in NOTEBOOKS:
        assert (out / f"{nb.stem}.html").is_file(), f"{nb.name} has no page"
        assert f"{nb.stem}.html" in home, f"the home page does not link {nb.name}"
        assert (out / "notebooks" / nb.name).read_bytes() == nb.read_bytes()


def test_every_link_resolves_and_nothing_comes_from_the_network(built):
    out, _, _ = built
    problems = link_problems(out)
    assert not problems, "\n".join(problems)


def link_problems(out: Path) -> list[str]:
    """Links of the pages of `out` that lead nowhere, and resources loaded from the network."""
    pages = {p.name: parse(p) for p in out.glob("*.html")}
    problems = []
    for name, links in pages.items():
        for tag, attr, value in links.refs:
            url = urlsplit(value)
            if url.scheme in ("data", "mailto"):
                continue
            if url.scheme or value.startswith("//"):
                if (tag, attr) in LOADING:
                    problems.append(f"{name}: <{tag} {attr}> loads {value} from the network")
                continue
            target = name if not url.path else unquote(url.path)
            path = (out / target).resolve()
            if not path.is_file() or out.resolve() not in path.parents:
                problems.append(f"{name}: {value} is not a file of the site")
            elif url.fragment and url.fragment not in pages.get(target, Links()).ids:
                problems.append(f"{name}: {value}: no #{url.fragment} in {target}")
    return problems


def test_every_image_decodes(built):
    from PIL import Image

    out, _, _ = built
    count = 0
    for page in out.glob("*.html"):
        for tag, _, value in parse(page).refs:
            if tag != "img":
                continue
            assert value.startswith("data:image/"), f"{page.name}: image {value[:60]}"
            try:
                raw = base64.b64decode(value.split(",", 1)[1], validate=True)
                Image.open(io.BytesIO(raw)).verify()
            except (binascii.Error, OSError) as e:
                raise AssertionError(f"{page.name}: an image does not decode: {e}") from None
            count += 1
    pngs = sum(_figures(nb) for nb in NOTEBOOKS)
    assert count >= pngs, f"{count} images in the site, {pngs} figures in the notebooks"


def _figures(nb: Path) -> int:
    """The notebook's figures: PNG outputs (one with an HTML form shows that instead)."""
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    data = [o.get("data", {}) for c in cells for o in c.get("outputs", [])]
    return sum("image/png" in d and "text/html" not in d for d in data)


def _has_math(nb: Path) -> bool:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return bool(re.search(r"\$[^$\n]+\$", re.sub(r"`[^`]*`", "", text)))


# ---------------- in a browser, offline ----------------

# Text of the rendered Markdown (math, code and preformatted text taken out), the output
# boxes with nothing in them, every image that did not load, and what MathJax could not parse.
PAGE_FACTS_JS = """() => {
  const prose = [...document.querySelectorAll('.jp-RenderedMarkdown, .intro, table.claims')]
    .map(el => { const c = el.cloneNode(true);
      c.querySelectorAll('mjx-container, code, pre, script, style').forEach(x => x.remove());
      return c.textContent; }).join('\\n');
  const empty = [...document.querySelectorAll('.jp-OutputArea-output')].filter(el =>
    !el.textContent.trim() && !el.querySelector('img, canvas, svg, table, video')).length;
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
  return {prose, empty, broken, images: document.querySelectorAll('.jp-RenderedImage img').length,
    math: document.querySelectorAll('mjx-container').length,
    mathErrors: document.querySelectorAll('mjx-merror').length,
    text: document.body.innerText};
}"""
RAW_TEX = re.compile(r"\$[^$\n]+\$|\\(?:[a-zA-Z]{2,}|[()\[\]])")
WIDGET_TROUBLE = ("Loading widget", "Error displaying widget", "model not found")


def _typeset(page) -> None:
    page.wait_for_function(
        "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000
    )
    page.evaluate("() => MathJax.startup.promise")


def test_site_in_a_browser_offline(built):
    from helpers.claims import CLAIMS, VERDICTS
    from tests.test_browser import (
        ARTIFACTS,
        _browser_or_skip,
        _check_layer_and_patch,
        _offline_page,
    )

    sync_playwright = _browser_or_skip()
    out, _, _ = built
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page, blocked, errors = _offline_page(pw, out)
        try:
            page.goto((out / "index.html").as_uri())
            _typeset(page)
            rows = page.locator("table.claims tbody tr")
            assert rows.count() == len(CLAIMS), "the home page shows every claim"
            for i in (0, len(CLAIMS) - 1):
                verdict = rows.nth(i).locator("td.verdict").inner_text().strip()
                assert verdict == CLAIMS[i].verdict and verdict in VERDICTS
            facts = page.evaluate(PAGE_FACTS_JS)
            assert not RAW_TEX.search(facts["prose"]), RAW_TEX.search(facts["prose"])
            assert facts["broken"] == 0
            page.screenshot(path=str(ARTIFACTS / "site_home.png"))
            for nb in NOTEBOOKS:
                _check_notebook_page(page, out, nb, ARTIFACTS, _check_layer_and_patch)
            assert not errors, f"page errors: {errors}"
        finally:
            browser.close()
    assert not blocked, f"the site asked the network for {blocked}"


def _check_notebook_page(page, out: Path, nb: Path, artifacts: Path, check_explorer) -> None:
    name = nb.stem
    page.goto((out / f"{name}.html").as_uri())
    _typeset(page)
    facts = page.evaluate(PAGE_FACTS_JS)
    assert facts["images"] == _figures(nb), f"{name}: {facts['images']} figures shown"
    assert facts["broken"] == 0, f"{name}: {facts['broken']} images did not load"
    if _has_math(nb):
        assert facts["math"] > 0, f"{name}: no math was typeset"
    assert facts["mathErrors"] == 0, f"{name}: MathJax could not parse some math"
    raw = RAW_TEX.search(facts["prose"])
    assert raw is None, f"{name}: raw LaTeX on the page: {raw and raw.group(0)!r}"
    assert facts["empty"] == 0, f"{name}: {facts['empty']} empty output boxes"
    for trouble in WIDGET_TROUBLE:
        assert trouble not in facts["text"], f"{name}: the page shows {trouble!r}"
    short = [p for p in re.findall(r"(\d{1,3})%\|", facts["text"]) if int(p) < 100]
    assert not short, f"{name}: a progress bar stopped at {short}%"
    page.screenshot(path=str(artifacts / f"site_{name}.png"))
    if "clsx" in nb.read_text(encoding="utf-8"):
        view = page.locator(".clsx").first
        view.wait_for(state="visible", timeout=20_000)
        view.evaluate("el => el.scrollIntoView({block: 'start'})")
        check_explorer(view, f"site_{name}_explorer")
