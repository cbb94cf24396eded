"""LaTeX: each leaderboard table as a ``tabular`` fragment to ``\\input`` into a paper, captions that name only the
statistics a table has, and (where a TeX engine is installed) both the fragments and the whole document compile."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import build_record, realistic_set

from reports.latex import latex_fragments, render_latex
from reports.leaderboard import summarize
from reports.render import write_leaderboard

NAMES = {"fewshot-real-paper", "modelnet40-real-paper", "s3dis-real-paper", "scanobjectnn-real-paper",
         "scanobjectnn-synthetic-demo", "shapenetpart-real-paper"}


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> dict[str, Path]:
    records = [*realistic_set(), *(build_record(method="my_method", variant="a&b", seed=s, data_kind="synthetic",
                                                profile="odd_one") for s in range(2))]
    return write_leaderboard(records, tmp_path_factory.mktemp("tex") / "leaderboard")


def _tabulars(tex: str) -> list[str]:
    return re.findall(r"\\begin\{tabular\}.*?\\end\{tabular\}", tex, re.S)


def test_one_fragment_per_table_next_to_the_document(board):
    fragments = {key.removeprefix("tex:"): path for key, path in board.items() if key.startswith("tex:")}
    assert set(fragments) == {*NAMES, "scanobjectnn-synthetic-odd_one"}
    assert all(path.parent == board["tex"].parent and path.name == f"{name}.tex" for name, path in fragments.items())
    document = board["tex"].read_text(encoding="utf-8")
    whole = _tabulars(document)
    for path in fragments.values():
        text = path.read_text(encoding="utf-8")
        assert text.startswith("% pointbench: ") and "\\usepackage{booktabs}" in text.splitlines()[1]
        code = [line for line in text.splitlines() if not line.startswith("%")]
        assert code[0].startswith(r"\begin{tabular}{ll") and code[-1] == r"\end{tabular}"  # the tabular alone
        for word in (r"\documentclass", r"\begin{table}", r"\caption", r"\begin{document}"):
            assert word not in "\n".join(code), word
        assert _tabulars(text)[0] in whole  # the same rows as the document's table


def test_fragment_comment_gives_the_caption_to_paste(board):
    text = board["tex:scanobjectnn-real-paper"].read_text(encoding="utf-8")
    caption = text.splitlines()[2]
    assert caption.startswith("% scanobjectnn --- real data --- profile paper. Acc.")
    assert "honest = mean $\\pm$ sample std over seeds (n = 3)" in caption


def test_synthetic_captions_name_no_published_numbers_and_no_absent_vote():
    records = [build_record(seed=s, data_kind="synthetic", profile="demo") for s in range(2)]
    (fragment,) = latex_fragments(summarize(records)).values()
    caption = fragment.splitlines()[2]
    assert "published" not in caption.replace("not comparable to published numbers", "")
    assert "vote" not in caption  # these records have no vote statistic
    document = render_latex(summarize(records))
    shown = re.search(r"\\caption\{(.*)\}", document).group(1)
    assert "published:" not in shown and "vote" not in shown


def test_real_captions_keep_published_and_vote_where_the_table_has_them():
    vote = {"vote": 93.4}
    records = [build_record(suite="modelnet40", variant="1k", seed=s, extra_final=vote) for s in range(2)]
    caption = latex_fragments(summarize(records))["modelnet40-real-paper"].splitlines()[2]
    assert "vote = one vote pass" in caption and r"published: $^{\ast}$ = not checked" in caption


def test_fragment_names_are_file_safe_and_unique():
    records = [build_record(suite="my suite/x", seed=0), build_record(suite="my suite?x", seed=0)]
    assert sorted(latex_fragments(summarize(records))) == ["my_suite_x-real-paper", "my_suite_x-real-paper-2"]


def _pdflatex(folder: Path, name: str) -> subprocess.CompletedProcess:
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no TeX engine here (pdflatex not on PATH; apt-get install texlive-latex-recommended): the "
                    "LaTeX is then checked for structure only")
    return subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", name],
                          cwd=folder, capture_output=True, text=True, timeout=180, check=False)


PAPER = r"""\documentclass{article}
\usepackage{booktabs}
\begin{document}
%s
\end{document}
"""


def test_every_fragment_compiles_when_input_into_a_paper(board):
    folder = board["tex"].parent
    stems = [path.stem for key, path in sorted(board.items()) if key.startswith("tex:")]
    inputs = [f"\\begin{{table}}\\centering\\input{{{stem}}}\\caption{{Table {i}}}\\end{{table}}\\clearpage"
              for i, stem in enumerate(stems)]
    (folder / "paper.tex").write_text(PAPER % "\n".join(inputs), encoding="utf-8")
    done = _pdflatex(folder, "paper.tex")
    assert done.returncode == 0, done.stdout[-3000:]
    assert (folder / "paper.pdf").stat().st_size > 0 and "Output written on paper.pdf (7 pages" in done.stdout


def test_the_whole_document_compiles(board):
    done = _pdflatex(board["tex"].parent, "leaderboard.tex")
    assert done.returncode == 0, done.stdout[-3000:]
