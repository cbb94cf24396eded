"""LaTeX output: escaping, booktabs structure, one table per leaderboard table, the right numbers."""

from __future__ import annotations

import re

import pytest

from reports.latex import latex_escape, render_latex
from reports.leaderboard import summarize
from reports.tables import SYNTHETIC_LABEL


@pytest.mark.parametrize(("text", "expected"), [
    ("a_b & 50% #1", r"a\_b \& 50\% \#1"),
    ("{x} $y$ ~ ^", r"\{x\} \$y\$ \textasciitilde{} \textasciicircum{}"),
    ("back\\slash", r"back\textbackslash{}slash"),
    ("86.1 ± 2.5 Δ — 84.2✱ −1", r"86.1 $\pm$ 2.5 $\Delta$ --- 84.2$^{\ast}$ $-$1"),
    ("<b>|</b>", r"\textless{}b\textgreater{}\textbar{}\textless{}/b\textgreater{}"),
])
def test_escape(text, expected):
    assert latex_escape(text) == expected


def _check_structure(tex: str) -> list[list[str]]:
    """Balanced environments; every tabular row has as many cells as its column spec; returns each table's rows."""
    begins = re.findall(r"\\begin\{(\w+)\}", tex)
    ends = re.findall(r"\\end\{(\w+)\}", tex)
    assert sorted(begins) == sorted(ends) and begins[0] == "document" and ends[-1] == "document"
    tables = []
    for spec, body in re.findall(r"\\begin\{tabular\}\{(\w+)\}\n(.*?)\\end\{tabular\}", tex, re.S):
        lines = body.strip().splitlines()
        assert lines[0] == r"\toprule" and lines[2] == r"\midrule" and lines[-1] == r"\bottomrule"
        rows = [line for line in lines if line.endswith(r" \\")]
        for row in rows:
            assert len(re.split(r"(?<!\\)&", row)) == len(spec), row
        tables.append(rows)
    return tables


def test_document_structure_and_numbers(realistic):
    tex = render_latex(summarize(realistic))
    assert tex.startswith("% pointbench") and r"\usepackage{booktabs}" in tex
    tables = _check_structure(tex)
    assert len(tables) == 6 == tex.count(r"\begin{table}") == tex.count(r"\caption{")
    fewshot = next(rows for rows in tables if "5w10s" in rows[0])
    assert fewshot[0] == r"Method & Statistic & 5w10s & 5w20s & 10w10s & 10w20s \\"
    paper = r"Point-MAE & paper & 96.30 $\pm$ 1.16 & 97.80 $\pm$ 1.16 & 92.30 $\pm$ 1.16 & 94.80 $\pm$ 1.16 \\"
    assert paper in fewshot
    assert r" & published & 96.3 $\pm$ 2.5 & 97.8 $\pm$ 1.8 & 92.6 $\pm$ 4.1 & 95 $\pm$ 3 \\" in fewshot
    partseg = next(rows for rows in tables if "Inst. mIoU" in rows[0])
    assert partseg[0] == r"Method & Statistic & Inst. mIoU & Cls. mIoU \\"
    assert r" & published & 86.1 & 84.2$^{\ast}$ \\" in partseg
    modelnet = next(rows for rows in tables if rows[0].endswith(r"& 1k \\"))
    assert r" & vote & 93.40 $\pm$ 0.00 \\" in modelnet and r" & published vote & 93.8 \\" in modelnet
    assert sum(" & published & " in row for row in fewshot) == 1  # scratch has no published line


def test_synthetic_tables_have_no_published_line_and_an_escaped_label(make_record):
    records = [make_record(seed=s, data_kind="synthetic", method="my_method", variant="a&b") for s in range(2)]
    tex = render_latex(summarize(records))
    (rows,) = _check_structure(tex)
    assert not any("published" in row for row in rows)
    assert latex_escape(SYNTHETIC_LABEL) in tex and "my\\_method" in tex and r"a\&b" in tex


def test_empty_input_still_compiles_looking():
    tex = render_latex(summarize([]))
    assert r"\begin{document}" in tex and tex.rstrip().endswith(r"\end{document}") and "nothing to report" in tex


def test_caption_uses_the_records_selection_wording(make_record):
    rule = {"best": "test accuracy at the reference's fixed C", "last": "C chosen on a held-out 20% of train"}
    tex = render_latex(summarize([make_record(seed=s, suite="svm", selection=rule) for s in (0, 1)]))
    assert "best (test accuracy at the reference's fixed C)" in tex
    assert r"last (C chosen on a held-out 20\% of train)" in tex
