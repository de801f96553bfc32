"""Write the Colab cell and the launch links into every notebook, from the one repository URL,
and drop stored widget state (it hides the static PNG of each widget in nbconvert HTML and on
the site). Also writes the launch badges at the top of README.md.

    python scripts/sync_notebooks.py            # rewrite what differs
    python scripts/sync_notebooks.py --check    # only list the files that differ (exit 1)

The cell's text is scripts/colab_cell.py, with "@REPOSITORY@" replaced by the repository URL
of pyproject.toml ([project.urls] Repository). In each notebook it is the first code cell, right
after the Markdown title cell (a notebook without one gets one there).

The launch links (Colab, Binder with the root environment.yml, the notebook's file) are one
line of the title cell, right under its "# NN · Title" heading: `badge_line()`. They are plain
links, not badge images, so that they show in every renderer, offline too. README.md holds
image badges for the series between BADGES_START and BADGES_END.
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


BRANCH = "main"  # the branch that Colab, Binder and the download links open
BADGES_START, BADGES_END = "<!-- badges:start -->", "<!-- badges:end -->"
BADGE_PREFIX = "[Open in Colab]("  # how the launch line of a title cell begins


def owner_and_name(url: str | None = None) -> str:
    """ "owner/name" of a https://github.com/owner/name repository URL."""
    url = url or repository_url()
    m = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", url)
    if m is None:
        raise ValueError(
            f"[project.urls] Repository = {url!r}: the launch links need a GitHub URL of the "
            "form https://github.com/owner/name"
        )
    return m.group(1)


def launch_links(notebook: str, url: str | None = None) -> dict[str, str]:
    """Colab, Binder and download URLs of notebooks/`notebook` (a file name)."""
    repo = owner_and_name(url)
    return {
        "colab": f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/notebooks/{notebook}",
        "binder": f"https://mybinder.org/v2/gh/{repo}/{BRANCH}?labpath=notebooks%2F{notebook}",
        "download": f"https://raw.githubusercontent.com/{repo}/{BRANCH}/notebooks/{notebook}",
    }


def badge_line(notebook: str, url: str | None = None) -> str:
    """The launch line of a notebook's title cell (Markdown, one line)."""
    links = launch_links(notebook, url)
    return (
        f"{BADGE_PREFIX}{links['colab']}) · [Launch on Binder]({links['binder']}) · "
        f"[Download the notebook]({links['download']})"
    )


def readme_badges(url: str | None = None, first: str = "00_overview.ipynb") -> str:
    """The README's badges: Binder and Colab open the first notebook; the archive of the
    repository holds them all."""
    links = launch_links(first, url)
    repo = owner_and_name(url)
    return (
        f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({links['binder']}) "
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({links['colab']}) "
        f"[![Download the notebooks](https://img.shields.io/badge/download-notebooks-blue)]"
        f"(https://github.com/{repo}/archive/refs/heads/{BRANCH}.zip)"
    )


def with_badges(readme: str, url: str | None = None) -> str:
    """README text with the badges between BADGES_START and BADGES_END rewritten."""
    if readme.count(BADGES_START) != 1 or readme.count(BADGES_END) != 1:
        raise ValueError(f"README.md must hold {BADGES_START} once, then {BADGES_END} once.")
    head, rest = readme.split(BADGES_START)
    _, tail = rest.split(BADGES_END)
    return f"{head}{BADGES_START}\n{readme_badges(url)}\n{BADGES_END}{tail}"


def with_badge_line(title: str, line: str) -> str:
    """A title cell's Markdown with its launch line set to `line` (inserted under the heading
    if it has none)."""
    lines = title.split("\n")
    at = [i for i, s in enumerate(lines) if s.startswith(BADGE_PREFIX)]
    if at:
        lines[at[0]] = line
        return "\n".join(lines)
    heading, rest = lines[0], "\n".join(lines[1:]).lstrip("\n")
    return f"{heading}\n\n{line}\n\n{rest}" if rest else f"{heading}\n\n{line}"


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
# The Colab cell, folded for readers: JupyterLab hides its code, Colab shows it as a form with
# its "# @title" line; it still runs in both.
FOLDED = {"jupyter": {"source_hidden": True}, "cellView": "form"}


def is_placeholder(cell: dict) -> bool:
    """A code cell of comments only that names a maintenance script (a left-over placeholder
    for the Colab cell): nothing for a reader. A learner's "# my guess:" cell is no such."""
    if cell["cell_type"] != "code":
        return False
    lines = [s.strip() for s in cell_source(cell).splitlines() if s.strip()]
    return bool(lines) and all(s.startswith("#") for s in lines) and "scripts/" in cell_source(cell)


def widget_views(nb: dict) -> list[dict]:
    """The outputs' data bundles that hold a widget view beside a static picture or page."""
    return [
        out["data"]
        for c in nb["cells"]
        for out in c.get("outputs", [])
        if WIDGET_VIEW in out.get("data", {}) and {"text/html", "image/png"} & set(out["data"])
    ]


def title_cell(nb: dict) -> dict:
    """The notebook's Markdown title cell ("# NN · Title"), its first cell."""
    cell = nb["cells"][0] if nb["cells"] else None
    if cell is None or cell["cell_type"] != "markdown" or not cell_source(cell).startswith("# "):
        raise ValueError("a notebook must start with a Markdown title cell ('# NN · Title')")
    return cell


def sync(path: Path, cell_text: str, write: bool = True) -> bool:
    """Make the first code cell of one notebook `cell_text`, write the launch line of its title
    cell, and drop saved widget state and widget views that have a static form; True if
    anything differed.

    A notebook without a Colab cell gets one, after its Markdown title cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    try:
        title = title_cell(nb)
    except ValueError as e:
        raise ValueError(f"{path.name}: {e}") from None
    titled = with_badge_line(cell_source(title), badge_line(path.name))
    cell = colab_cell(nb)
    stored_widgets = "widgets" in nb.get("metadata", {}) or widget_views(nb)
    same_title = cell_source(title) == titled
    folded = cell is not None and all(cell["metadata"].get(k) == v for k, v in FOLDED.items())
    placeholders = [c for c in nb["cells"] if is_placeholder(c)]
    if (
        cell is not None
        and cell_source(cell) == cell_text
        and not stored_widgets
        and same_title
        and folded
        and not placeholders
    ):
        return False
    if not write:
        return True
    nb["cells"] = [c for c in nb["cells"] if not is_placeholder(c)]
    if not same_title:
        title["source"] = titled.splitlines(keepends=True)
    # Saved widget state makes static renders (nbconvert HTML, the site) draw an empty widget
    # instead of the PNG each widget output carries: a committed notebook keeps none. And a
    # widget view with no state behind it reads "model not found" in JupyterLab before the
    # notebook runs, where its HTML or PNG would show the explorer: keep those instead (the
    # widget comes back when the cell runs).
    nb.get("metadata", {}).pop("widgets", None)
    for data in widget_views(nb):
        del data[WIDGET_VIEW]
    if cell is not None and cell_source(cell) == cell_text:
        cell["metadata"].update(FOLDED)
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
    cell["metadata"].update(FOLDED)
    # the layout Jupyter writes: one-space indent, UTF-8 as is, a final newline
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def sync_readme(path: Path = ROOT / "README.md", write: bool = True) -> bool:
    """Rewrite the README's badges; True if they differed."""
    text = path.read_text(encoding="utf-8")
    new = with_badges(text)
    if new != text and write:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    cell_text = render_cell()
    changed = [p for p in notebooks() if sync(p, cell_text, write=not check)]
    if sync_readme(write=not check):
        changed.append(ROOT / "README.md")
    for p in changed:
        print(f"{'differs' if check else 'updated'}: {p.relative_to(ROOT)}")
    if not changed:
        print("every notebook has the Colab cell and its launch links; README has its badges")
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
