"""The launch links: README's badges and each notebook's line under its title.

Every link has the form Colab, Binder and GitHub expect, names this repository (the one URL
of pyproject.toml, as the Colab cell does) and a notebook that exists; each notebook's line
names that notebook; Binder builds the root environment.yml. scripts/sync_notebooks.py writes
them all, so they cannot drift: a test fails until it has been run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.test_colab_cell import OWNER_NAME, URL, sync

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {p.name for p in sync.notebooks()}
REPO = re.escape(OWNER_NAME)
BRANCH = re.escape(sync.BRANCH)
FORMS = {  # kind -> the URL form; group 1 is the notebook's file name
    "colab": rf"https://colab\.research\.google\.com/github/{REPO}/blob/{BRANCH}/notebooks/([\w.-]+\.ipynb)",
    "binder": rf"https://mybinder\.org/v2/gh/{REPO}/{BRANCH}\?labpath=notebooks%2F([\w.-]+\.ipynb)",
    "download": rf"https://raw\.githubusercontent\.com/{REPO}/{BRANCH}/notebooks/([\w.-]+\.ipynb)",
}
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")  # a Markdown link (the badge's image aside)


def link_problem(url: str) -> str | None:
    """None if `url` is a launch link of a known form naming an existing notebook, else what
    is wrong with it."""
    for kind, form in FORMS.items():
        m = re.fullmatch(form, url)
        if m:
            if m.group(1) not in NOTEBOOKS:
                return f"{kind} link names {m.group(1)}, which is not in notebooks/"
            return None
    return f"{url} is not a Colab, Binder or download link of {URL} on {sync.BRANCH}"


def launch_line(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    title = sync.cell_source(sync.title_cell(nb))
    lines = [s for s in title.split("\n") if s.startswith(sync.BADGE_PREFIX)]
    assert len(lines) == 1, f"{path.name}: the title cell needs one line of launch links"
    assert title.split("\n")[2] == lines[0], f"{path.name}: the launch links go under the title"
    return lines[0]


@pytest.mark.parametrize("nb", sync.notebooks(), ids=lambda p: p.stem)
def test_each_notebook_has_its_launch_links_under_the_title(nb):
    line = launch_line(nb)
    assert line == sync.badge_line(nb.name), (
        f"{nb.name}: the launch links differ from the repository URL's: run "
        "`python scripts/sync_notebooks.py`"
    )
    urls = [url for _, url in LINK.findall(line)]
    kinds = []
    for url in urls:
        assert link_problem(url) is None, f"{nb.name}: {link_problem(url)}"
        kind = next(k for k, form in FORMS.items() if re.fullmatch(form, url))
        assert re.fullmatch(FORMS[kind], url).group(1) == nb.name, f"{nb.name} links {url}"
        kinds.append(kind)
    assert sorted(kinds) == ["binder", "colab", "download"], f"{nb.name}: {kinds}"


def test_colab_cell_and_badges_name_the_same_repository():
    cell = sync.render_cell()
    assert f'REPO = "{URL}"' in cell
    for url in sync.launch_links("00_overview.ipynb").values():
        assert f"/{OWNER_NAME}/" in url


def test_readme_badges_launch_existing_notebooks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == sync.with_badges(readme), "run `python scripts/sync_notebooks.py`"
    block = readme.split(sync.BADGES_START)[1].split(sync.BADGES_END)[0]
    assert readme.index(sync.BADGES_START) < readme.index("## "), "badges go at the top"
    urls = re.findall(r"\]\((https://[^)\s]+)\)", block)
    targets = [u for u in urls if not u.startswith(("https://mybinder.org/badge", "https://img."))]
    targets = [u for u in targets if "colab-badge.svg" not in u]
    archive = f"https://github.com/{OWNER_NAME}/archive/refs/heads/{sync.BRANCH}.zip"
    kinds = set()
    for url in targets:
        if url == archive:
            kinds.add("download")
            continue
        assert link_problem(url) is None, f"README.md: {link_problem(url)}"
        kinds |= {k for k, form in FORMS.items() if re.fullmatch(form, url)}
    assert kinds == {"binder", "colab", "download"}, f"README.md's badges launch only {kinds}"
    assert (ROOT / "environment.yml").exists(), "Binder builds the root environment.yml"


@pytest.mark.parametrize(
    "url, problem",
    [
        (
            f"https://colab.research.google.com/github/{OWNER_NAME}/blob/main/notebooks/99_x.ipynb",
            "not in notebooks/",
        ),
        (
            "https://colab.research.google.com/github/someone/else/blob/main/notebooks/"
            "00_overview.ipynb",
            "is not a Colab",
        ),
        (f"https://mybinder.org/v2/gh/{OWNER_NAME}/main?urlpath=lab", "is not a Colab"),
        (
            f"https://raw.githubusercontent.com/{OWNER_NAME}/dev/notebooks/00_overview.ipynb",
            "is not a Colab",
        ),
    ],
)
def test_a_wrong_link_is_named(url, problem):
    assert problem in (link_problem(url) or "")


def test_sync_writes_the_launch_line_under_the_title(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "# 42 · A title\n\nThe question?", "metadata": {}},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "42_title.ipynb"
    path.write_text(json.dumps(nb))
    cell = sync.render_cell()
    assert sync.sync(path, cell)
    title = sync.cell_source(json.loads(path.read_text())["cells"][0])
    assert title == f"# 42 · A title\n\n{sync.badge_line(path.name)}\n\nThe question?"
    assert not sync.sync(path, cell), "a second run changes nothing"
    moved = title.replace(sync.badge_line(path.name), sync.badge_line("other.ipynb"))
    assert sync.with_badge_line(moved, sync.badge_line(path.name)) == title


def test_sync_refuses_a_notebook_without_a_title_cell(tmp_path):
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match=r"nb\.ipynb: a notebook must start with a Markdown"):
        sync.sync(path, "# google.colab")


def test_a_repository_url_that_is_not_github_is_refused():
    with pytest.raises(ValueError, match="https://github.com/owner/name"):
        sync.launch_links("00_overview.ipynb", "https://gitlab.com/a/b")
