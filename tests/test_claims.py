"""The claims index: one table, the same in README.md and notebook 00, backed by printed numbers."""

import json
import re
from pathlib import Path

import pytest

from helpers.claims import (
    CLAIMS,
    NO_MEASUREMENT,
    VERDICT_MEANINGS,
    VERDICTS,
    Claim,
    check_claims,
    claims_table,
    main,
    verdict_table,
    with_table,
)

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"-?\d+\.\d+%?|\d+%")  # what a notebook prints: 98.8%, 0.020, 57%


def notebook_text(prefix: str) -> str:
    """Every printed text (streams, text/plain) of the committed notebook NN_*.ipynb."""
    (path,) = ROOT.glob(f"notebooks/{prefix}_*.ipynb")
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            out.append("".join(o.get("text", "")))
            out.append("".join(o.get("data", {}).get("text/plain", "")))
            out.append("".join(o.get("data", {}).get("text/markdown", "")))
    return "\n".join(out)


def test_readme_holds_the_rendered_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert with_table(readme) == readme, "README's claims table is stale: python -m helpers.claims"
    assert main(["--check", "--readme", str(ROOT / "README.md")]) == 0


def test_notebook_00_shows_the_table_from_helpers():
    nb = json.loads((ROOT / "notebooks/00_overview.ipynb").read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if "".join(c["source"]).strip() == "show_claims()"]
    assert len(cells) == 1
    shown = [o["data"]["text/markdown"] for o in cells[0]["outputs"] if "data" in o]
    assert shown and "".join(shown[0]) == claims_table()  # the committed output is current


def test_one_row_per_claim_of_the_brief_with_a_valid_verdict():
    assert len(CLAIMS) == 25
    assert all(c.verdict in VERDICTS for c in CLAIMS)
    table = claims_table()
    assert table.count("\n") == 25 + 1  # header, rule, 25 rows
    check_claims()


@pytest.mark.parametrize("i", range(len(CLAIMS)))
def test_every_deciding_number_is_printed_by_its_notebook(i):
    c = CLAIMS[i]
    if c.verdict == "not yet tested":
        assert c.where.startswith("planned: 0")
        return
    where = re.findall(r"(?:^|; )(0\d) §", c.where)  # "04 §4 ...; 06 §5 ...": 04 and 06
    assert where and c.where.startswith(where[0]), f"claim {i + 1}: name the notebook first"
    text = "\n".join(notebook_text(nb) for nb in where)
    missing = [n for n in NUMBER.findall(c.number) if n.lstrip("-") not in text]
    assert not missing, f"claim {i + 1}: notebooks {where} print none of {missing}"


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="verdict"):
        check_claims([Claim("x", "true", "1", "01 §1")])
    with pytest.raises(ValueError, match="number"):
        check_claims([Claim("x", "holds", "", "01 §1")])
    with pytest.raises(ValueError, match="planned"):
        check_claims([Claim("x", "not yet tested", "", "05")])
    with pytest.raises(ValueError, match="markers|START|claims:start"):
        with_table("no markers here")


SOURCE = re.compile(  # a year, then where in the paper: table, figure, section, or the code
    r"\b(19|20)\d\d\b.*(§|\b(Table|Fig\.|Figure|Sec\.|App\.|Appendix|abstract|code))"
)


@pytest.mark.parametrize("i", range(len(CLAIMS)))
def test_every_claim_has_an_at_scale_entry_with_its_source(i):
    c = CLAIMS[i]
    assert c.at_scale, f"claim {i + 1}: say what real ViTs show, or {NO_MEASUREMENT!r}"
    if c.at_scale == NO_MEASUREMENT:
        assert not c.source
        return
    assert SOURCE.search(c.source), (
        f"claim {i + 1}: the source {c.source!r} must name the paper's year and the table, "
        "figure or section that holds the finding"
    )


def test_the_verdict_vocabulary_is_the_one_readme_explains():
    assert tuple(VERDICT_MEANINGS) == VERDICTS
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The claims, and what the series finds", 1)[1].split(START_MARK)[0]
    explained = re.findall(r"^- \*\*(.+?)\*\*: (.+)$", section, flags=re.M)
    assert explained == list(VERDICT_MEANINGS.items())


START_MARK = "<!-- claims:start -->"


def test_verdict_table_shows_the_index_at_scale_and_refuses_drift():
    n = next(i for i, c in enumerate(CLAIMS, 1) if c.verdict != "not yet tested")
    c = CLAIMS[n - 1]
    t = verdict_table({n: (c.verdict, "our 1.23")})
    md, plain = t._repr_markdown_(), repr(t)
    assert "our 1.23" in md and "our 1.23" in plain and c.verdict.upper() in plain
    assert md.count("\n") == 2  # header, rule, one row
    other = next(v for v in VERDICTS if v != c.verdict)
    with pytest.raises(ValueError, match="index says"):
        verdict_table({n: (other, "x")})
    with pytest.raises(ValueError, match="not one of"):
        verdict_table({n: ("true", "x")})
    with pytest.raises(ValueError, match="numbers its claims"):
        verdict_table({0: (c.verdict, "x")})
    with pytest.raises(ValueError, match="Markdown"):
        verdict_table({n: (c.verdict, "a | b")})
