"""The layout of helpers/ by job: imports run one way (no loop, the ViT's tools never import
the packages built on them), and each notebook's exercises live in a module of their own."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "helpers"
PACKAGES = ("explorer", "exercises", "studies")  # built on the top-level modules


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(HELPERS.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every helpers module that `path` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from helpers.studies import dino` imports the module helpers.studies.dino
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        found |= {t for t in targets if t == "helpers" or t.startswith("helpers.")}
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (loop := visit(nxt)):
                return loop
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (loop := visit(node)):
            return loop
    return None


def test_the_cycle_finder_finds_a_loop_and_no_false_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    # an import inside a function counts: the old widgets <-> explorer_export loop
    assert find_cycle({"w": {"e"}, "e": {"w"}}) == ["e", "w", "e"]


def test_lazy_and_relative_imports_are_read():
    mods = modules()
    graph = import_graph()
    assert "helpers.explorer.maps" in graph["helpers.explorer.widget"]  # from .maps import
    assert "helpers.model" in graph["helpers.studies.dino"]  # from ..model import
    assert set(graph) == set(mods)


def test_no_import_loop_inside_helpers():
    loop = find_cycle(import_graph())
    assert loop is None, "import loop: " + " -> ".join(loop)


def test_the_vit_and_its_tools_do_not_import_the_packages_built_on_them():
    for name, deps in import_graph().items():
        if name.count(".") == 1 and name.split(".")[1] not in PACKAGES:
            above = sorted(d for d in deps if d.split(".")[1:2] and d.split(".")[1] in PACKAGES)
            assert not above, f"{name} imports {above}"


def test_nothing_in_helpers_imports_a_notebook_or_the_tests():
    for path in HELPERS.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import) (tests|notebooks)\b", text, re.M), path


def test_the_explorer_views_ship_beside_its_code():
    from helpers.explorer.export import asset

    assert "export default" in asset("view.js") and asset("view.css").strip()


def notebook_imports(nb_path: Path) -> dict[str, set[str]]:
    """{module: names} of a notebook's `from helpers.exercises... import` statements."""
    found: dict[str, set[str]] = {}
    for cell in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        code = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "helpers.exercises"
            ):
                found.setdefault(node.module, set()).update(a.name for a in node.names)
    return found


EXERCISE_MODULES = sorted((HELPERS / "exercises").glob("nb*.py"))


@pytest.mark.parametrize("path", EXERCISE_MODULES, ids=lambda p: p.stem)
def test_each_exercise_module_holds_one_notebooks_exercises(path):
    import importlib

    from helpers.exercises.core import Exercise

    number = re.match(r"nb(\d\d)_", path.stem).group(1)
    notebooks = sorted((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
    assert len(notebooks) == 1, f"{path.stem} names no notebook {number}_*.ipynb"
    module = importlib.import_module(f"helpers.exercises.{path.stem}")
    exercises = {k for k, v in vars(module).items() if isinstance(v, Exercise)}
    assert exercises, f"{path.stem} holds no exercise"
    used = notebook_imports(notebooks[0]).get(module.__name__, set())
    assert exercises <= used, f"{notebooks[0].name} never uses {sorted(exercises - used)}"
    # and no other notebook reaches into it
    for other in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if other != notebooks[0]:
            assert module.__name__ not in notebook_imports(other), (other.name, path.stem)


def test_every_notebook_takes_its_exercises_from_its_own_module():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for mod in notebook_imports(nb):
            assert mod.startswith(f"helpers.exercises.nb{nb.name[:2]}_"), (nb.name, mod)


def command_modules() -> list[str]:
    """Every module of helpers/ that runs as a command (`if __name__ == "__main__":`)."""
    return sorted(
        name
        for name, path in modules().items()
        if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
    )


def test_the_commands_are_the_studies_and_the_top_levels_two():
    names = command_modules()
    assert {"helpers.train", "helpers.claims"} <= set(names)
    others = [n for n in names if n not in ("helpers.train", "helpers.claims")]
    assert others and all(n.startswith("helpers.studies.") for n in others), others


def test_every_command_runs_under_its_name_and_says_so():
    """`python -m NAME --help` in a fresh interpreter: the module path the README and the
    records give is the one that runs, and its usage line names it."""
    import subprocess
    import sys

    script = (
        "import contextlib, io, runpy, sys\n"
        "for name in sys.argv[1:]:\n"
        "    out = io.StringIO()\n"
        "    sys.argv = [name, '--help']\n"
        "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "        runpy.run_module(name, run_name='__main__', alter_sys=True)\n"
        "    usage = out.getvalue().splitlines()[0]\n"
        "    assert usage.startswith(f'usage: python -m {name}'), (name, usage)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *command_modules()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
