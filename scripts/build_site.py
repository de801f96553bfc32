"""Build the series' static site from the committed, executed notebooks (nothing is executed).

    python scripts/build_site.py                 # into build/site/ (what `make site` runs)
    python scripts/build_site.py --out DIR

One page per notebook of notebooks/ (nbconvert's HTML exporter, JupyterLab's layout, with the
template in scripts/site_template/), a home page with the series map and the claims index
(helpers/claims.py, each row linked to its section), a copy of each notebook to download, and
the site's own copy of MathJax (vendored by `scripts/setup.sh --dev` into .vendor/): no page
loads anything from the network, so the folder works opened from disk or on any static host.

A committed notebook must be executed: a code cell without an execution count is reported as
a warning (its outputs are missing), and so is anything nbconvert warns about. The command
exits with status 1 if there was a warning.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "site"
TEMPLATES = ROOT / "scripts" / "site_template"
MATHJAX = ROOT / ".vendor" / "node_modules" / "mathjax" / "es5" / "tex-svg-full.js"
STATIC = "_static"
TITLE = "Inside the CLS Token"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = _load("sync_notebooks", ROOT / "scripts" / "sync_notebooks.py")


class Page:
    """One notebook: its file, page name, title and question (the title cell's text)."""

    def __init__(self, path: Path):
        self.path = path
        self.nb = json.loads(path.read_text(encoding="utf-8"))
        source = sync.cell_source(sync.title_cell(self.nb))
        lines = source.split("\n")
        self.title = lines[0].lstrip("# ").strip()
        body = [s for s in lines[1:] if not s.startswith(sync.BADGE_PREFIX)]
        paragraphs = [p.strip() for p in "\n".join(body).split("\n\n") if p.strip()]
        self.question = paragraphs[0] if paragraphs else ""
        self.number = path.name[:2]
        self.href = path.stem + ".html"


def unexecuted_cells(nb: dict) -> list[int]:
    """Indices of the code cells (the Colab cell aside) that were never run."""
    colab = sync.colab_cell(nb)
    return [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code"
        and c is not colab
        and sync.cell_source(c).strip()
        and c.get("execution_count") is None
    ]


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def section_ids(page_html: str) -> dict[str, str]:
    """Section number -> heading id of a rendered page ("5" -> "5.-Prepending-CLS...")."""
    ids = {}
    for m in re.finditer(r'<h2 id="([^"]+)"', page_html):
        anchor = html.unescape(m.group(1))
        num = re.match(r"(\d+)\b", anchor)
        if num:
            ids.setdefault(num.group(1), anchor)
    return ids


def where_html(where: str, pages: dict[str, Page], anchors: dict[str, dict]) -> str:
    """A claim's "where" with each "NN §k" part linked to that section of notebook NN."""

    def link(part: str) -> str:
        m = re.match(r"\s*(\d\d) §(\d+)", part)
        if not m or m.group(1) not in pages:
            return html.escape(part)
        nb, sec = m.groups()
        anchor = anchors[nb].get(sec)
        href = pages[nb].href + (f"#{anchor}" if anchor else "")
        lead = part[: len(part) - len(part.lstrip())]
        return f'{lead}<a href="{html.escape(href)}">{html.escape(part.strip())}</a>'

    return ";".join(link(p) for p in where.split(";"))


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def claims_html(pages: dict[str, Page], anchors: dict[str, dict]) -> str:
    from helpers.claims import CLAIMS, at_scale_text, check_claims

    check_claims()
    rows = []
    for i, c in enumerate(CLAIMS, 1):
        verdict = c.verdict.replace(" ", "-")
        rows.append(
            f'<tr><td>{i}</td><td>{_inline(c.claim)}</td><td class="verdict verdict-{verdict}">'
            f"<strong>{html.escape(c.verdict)}</strong></td><td>{_inline(c.number or '–')}</td>"
            f"<td>{where_html(c.where, pages, anchors)}</td>"
            f'<td class="at-scale">{_inline(at_scale_text(c))}</td></tr>'
        )
    return (
        '<table class="claims"><thead><tr><th>#</th><th>claim (the brief\'s words)</th>'
        "<th>verdict</th><th>the number that decides it</th><th>where</th><th>in real ViTs</th>"
        "</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def readme_intro() -> str:
    """The README's first paragraph (what the series is), as Markdown."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").split(sync.BADGES_END, 1)[-1]
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return paragraphs[0]


def home_page(pages: list[Page], anchors: dict[str, dict]) -> str:
    from nbconvert.filters import markdown2html

    by_number = {p.number: p for p in pages}
    links = sync.launch_links(pages[0].path.name) if pages else {}
    cards = "".join(
        f'<li class="map-item"><a class="map-title" href="{p.href}">{html.escape(p.title)}</a>'
        f'<div class="map-question">{markdown2html(p.question)}</div></li>'
        for p in pages
    )
    launch = (
        f'<p class="launch"><a href="{links["binder"]}">Launch on Binder</a> · '
        f'<a href="{links["colab"]}">Open the overview in Colab</a> · '
        f'<a href="{html.escape(sync.repository_url())}">The repository</a> · '
        '<a href="#claims">The claims index</a></p>'
        if links
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{TITLE}</title>
<link rel="stylesheet" href="{STATIC}/site.css">
<script>
window.MathJax = {{
  tex: {{inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], processEscapes: true}},
  options: {{enableMenu: false}}
}};
</script>
<script defer src="{STATIC}/mathjax/tex-svg-full.js"></script>
</head>
<body class="site-home-page">
<main>
<h1>{TITLE}</h1>
<div class="intro">{markdown2html(readme_intro())}</div>
{launch}
<h2 id="the-series">The series</h2>
<ol class="series-map">{cards}</ol>
<h2 id="claims">The claims, and what the series finds</h2>
<p>Every claim of the explanation the series tests, in its words and order: the verdict on this
series' model, the number that decides it (as the notebook prints it), and the section that
decides it.</p>
{claims_html(by_number, anchors)}
</main>
</body>
</html>
"""


def merge_streams(nb) -> None:
    """Join a cell's consecutive stream outputs of one name, as JupyterLab shows them (an
    executed file may keep them apart: a print's text, then its newline)."""
    for cell in nb.cells:
        merged = []
        for out in cell.get("outputs", []):
            last = merged[-1] if merged else None
            if (
                out.output_type == "stream"
                and last is not None
                and last.output_type == "stream"
                and last.name == out.name
            ):
                last.text += out.text
            else:
                merged.append(out)
        if "outputs" in cell:
            cell.outputs = merged


def label_figures(nb) -> None:
    """Give every PNG output an alternative text: the section it belongs to."""
    section = "the introduction"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heads = re.findall(r"^#{1,3} +(.+)$", cell.source, re.M)
            if heads:
                section = heads[-1].strip()
            continue
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                out.setdefault("metadata", {})["site_alt"] = f"Figure of the section {section}"


def _nav(page: Page | None) -> dict | None:
    return None if page is None else {"href": page.href, "label": page.title.split(" · ")[0]}


def export(page: Page, prev: Page | None, nxt: Page | None) -> str:
    """The page of one notebook (no execution), the Colab cell left out (the page has the
    launch links), the download link pointing at the site's own copy."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.reads(json.dumps(page.nb), as_version=4)
    colab = sync.colab_cell(page.nb)
    if colab is not None:
        del nb.cells[page.nb["cells"].index(colab)]
    merge_streams(nb)
    label_figures(nb)
    exporter = HTMLExporter(template_name="site", extra_template_basedirs=[str(TEMPLATES)])
    site = {"static": STATIC, "title": TITLE, "prev": _nav(prev), "next": _nav(nxt)}
    body, _ = exporter.from_notebook_node(
        nb, resources={"metadata": {"name": page.title}, "site": site}
    )
    raw = sync.launch_links(page.path.name)["download"]
    return body.replace(f'href="{raw}"', f'href="notebooks/{page.path.name}" download')


def build(out: Path = OUT, notebooks: list[Path] | None = None) -> list[str]:
    """Write the site into `out` (emptied first); returns the warnings."""
    warnings: list[str] = []
    if not MATHJAX.exists():
        raise FileNotFoundError(
            f"{MATHJAX.relative_to(ROOT)} is missing: the site ships its own MathJax. "
            "Run `bash scripts/setup.sh --dev` (it runs npm install into .vendor/)."
        )
    paths = sorted(notebooks if notebooks is not None else sync.notebooks())
    if not paths:
        raise FileNotFoundError("no notebooks in notebooks/: nothing to publish")
    pages = [Page(p) for p in paths]
    if out.exists():
        shutil.rmtree(out)
    (out / STATIC / "mathjax").mkdir(parents=True)
    (out / "notebooks").mkdir()
    shutil.copy2(MATHJAX, out / STATIC / "mathjax" / MATHJAX.name)
    shutil.copy2(TEMPLATES / "site.css", out / STATIC / "site.css")
    collect = _Collect()
    logger = logging.getLogger("traitlets")  # nbconvert's exporters log here
    logger.addHandler(collect)
    anchors = {}
    try:
        for i, page in enumerate(pages):
            missing = unexecuted_cells(page.nb)
            if missing:
                warnings.append(
                    f"{page.path.name}: code cells {missing} have no outputs (never executed): "
                    "execute the notebook before publishing it"
                )
            collect.messages.clear()
            prev = pages[i - 1] if i > 0 else None
            nxt = pages[i + 1] if i + 1 < len(pages) else None
            body = export(page, prev, nxt)
            warnings += [f"{page.path.name}: {m}" for m in collect.messages]
            anchors[page.number] = section_ids(body)
            (out / page.href).write_text(body, encoding="utf-8")
            shutil.copy2(page.path, out / "notebooks" / page.path.name)
    finally:
        logger.removeHandler(collect)
    (out / "index.html").write_text(home_page(pages, anchors), encoding="utf-8")
    return warnings


def run_build(build_fn, out: Path, what: str) -> int:
    """Run a build into `out`, print its warnings and where to open it; exit status 1 on an
    error or a warning (shared by the site and the slides)."""
    start = time.perf_counter()
    try:
        warnings = build_fn(out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    index = out.resolve() / "index.html"
    print(f"{what} built in {time.perf_counter() - start:.1f} s: open {index.as_uri()}")
    return 1 if warnings else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/build_site.py", description=__doc__)
    p.add_argument("--out", default=str(OUT), help="output folder (emptied first)")
    a = p.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return run_build(build, Path(a.out), "site")


if __name__ == "__main__":
    sys.exit(main())
