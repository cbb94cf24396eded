"""The HTML report fits the page at 1400 px: every table in a scroll wrapper, fixed provenance columns, commands that
wrap at spaces and long tokens at ``/ = , .`` (never mid-word), checked statically everywhere and, where Chromium is
installed (``apt-get install chromium``), measured and screenshotted in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import build_record, realistic_set, tuning_summary
from html_support import BalancedHTML

from reports.page import CSS
from reports.provenance import COLUMNS, breakable
from reports.render import write_leaderboard

WIDTH = 1400
LONG_COMMAND = ("bench --quiet run suite=scanobjectnn method=point_mae,scratch,point_pqae 'suite.variants=[objbg]' "
                "'seeds=[0]' trainer.epochs=2 pretrain.trainer.batch_size=8 data.standin_size=tiny "
                "data.root=/tmp/pytest-of-runner/pytest-1234/test_a_long_sweep_name0/data/synthetic/scanobjectnn "
                "output.dir=/tmp/pytest-of-runner/pytest-1234/test_a_long_sweep_name0/runs/scanobjectnn_objbg")
COMMIT = "fc8f8aac716dab1bf70c23b26c59c776ddc24207"
RUN_ID = "5f0c2b8e9d1a4e7f8a3b6c9d0e1f2a3b"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _long_records():
    """Records with what made the provenance overflow: a long command with paths, a whole commit hash, a run id
    that links to an MLflow server."""
    config = {"seed": 0, "tracking": {"uri": "http://mlflow.example:5000", "experiment": "pointbench"}}
    env = {"git_commit": COMMIT, "torch": "2.4.0", "cuda": "12.4", "ops_backend": "cuda", "device": "cuda:0",
           "world_size": 4}
    return [build_record(method="point_madi", seed=s, command=LONG_COMMAND, env=env, config={**config, "seed": s},
                         mlflow_run_id=RUN_ID) for s in range(2)]


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("width")
    (out / "tuning" / "study").mkdir(parents=True)
    (out / "tuning" / "study" / "summary.json").write_text(json.dumps(tuning_summary()), encoding="utf-8")
    return write_leaderboard([*realistic_set(), *_long_records()], out / "leaderboard", out / "tuning")["html"]


class Wrapped(BalancedHTML):
    """Every table with whether a ``div.scroll`` encloses it, and the ``<col>`` styles."""

    def __init__(self) -> None:
        super().__init__()
        self.divs: list[bool] = []
        self.tables: list[tuple[str, bool]] = []
        self.cols: list[str] = []

    def opened(self, tag, attrs):
        if tag == "div":
            self.divs.append("scroll" in (attrs.get("class") or "").split())
        elif tag == "table":
            self.tables.append((attrs.get("class") or "", any(self.divs)))
        elif tag == "col":
            self.cols.append(attrs.get("style") or "")

    def closed(self, tag):
        if tag == "div":
            self.divs.pop()


def test_every_wide_table_sits_in_a_scroll_wrapper(page_file):
    page = Wrapped()
    page.feed(page_file.read_text(encoding="utf-8"))
    page.close()
    assert page.errors == []
    assert [cls for cls, inside in page.tables if not inside] == [] and len(page.tables) > 20
    widths = [int(re.search(r"width: (\d+)%", style).group(1)) for style in page.cols[:len(COLUMNS)]]
    assert widths == [w for _, w in COLUMNS] and sum(widths) == 100


def test_css_fixes_the_provenance_layout_and_never_breaks_words_anywhere():
    rules = {m.group(1).strip(): m.group(2) for m in re.finditer(r"([^{}]+)\{([^}]*)\}", CSS)}
    assert "table-layout: fixed" in rules["table.provenance"] and "width: 100%" in rules["table.provenance"]
    assert "overflow-x: auto" in rules["div.scroll"]
    assert "word-break: normal" in rules["code.command"] and "white-space: normal" in rules["code.command"]
    assert "break-all" in rules["td.hash"]  # hashes have no sensible break point
    assert "anywhere" not in CSS  # overflow-wrap: anywhere broke normal words mid-word


def test_long_tokens_get_break_points_at_separators_only():
    assert breakable("bench run seeds=[0] trainer.epochs=2") == "bench run seeds=[0] trainer.epochs=2"  # short ones
    shown = breakable("data.root=/tmp/a_long/path/x.npy and <b>")
    assert shown == "data.<wbr>root=<wbr>/<wbr>tmp/<wbr>a_long/<wbr>path/<wbr>x.<wbr>npy and &lt;b&gt;"
    assert breakable("method=point_mae,scratch,point_pqae") == "method=<wbr>point_mae,<wbr>scratch,<wbr>point_pqae"


def test_the_long_command_and_hashes_are_in_the_provenance(page_file):
    text = page_file.read_text(encoding="utf-8")
    assert f'<td class="hash" title="{COMMIT}">{COMMIT[:12]}</td>' in text
    plain = html.unescape(re.sub(r"<wbr>", "", text))
    assert LONG_COMMAND in plain and "cuda:0 x 4 processes" in plain


# --- headless Chromium -------------------------------------------------------------------------------------------

MEASURE = """<script>
(function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  var root = document.documentElement, out = {page: root.scrollWidth, viewport: window.innerWidth, wide: [],
                                              past: [], split: [], words: 0};
  var body = document.body.getBoundingClientRect().right - parseFloat(getComputedStyle(document.body).paddingRight);
  document.querySelectorAll("table, figure, pre, p, ul, h2, h3, details").forEach(function (el) {
    var right = el.getBoundingClientRect().right;
    if (right > body + 1) out.past.push(el.tagName + "." + el.className + " " + Math.round(right) + ">" + body);
  });
  document.querySelectorAll("div.scroll").forEach(function (box) {
    if (box.scrollWidth > box.clientWidth + 1) out.wide.push(box.firstElementChild.className + " " +
                                                              box.scrollWidth + ">" + box.clientWidth);
  });
  document.querySelectorAll("table.provenance td:not(.hash)").forEach(function (code) {
    var walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT), node, match, words = /[A-Za-z]{3,}/g;
    while ((node = walker.nextNode())) {
      while ((match = words.exec(node.data))) {
        var range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        out.words += 1;
        if (range.getClientRects().length > 1) out.split.push(match[0]);
      }
    }
  });
  document.body.setAttribute("data-measured", JSON.stringify(out));
})();
</script>"""


def _browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        pytest.skip("no Chromium here (apt-get install chromium): the layout is then checked statically only")
    return found


def _chromium(page: Path, tmp_path: Path, width: int, height: int, *flags: str) -> str:
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{height}", *flags, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _measured(page_file: Path, tmp_path: Path, width: int) -> dict:
    probe = tmp_path / f"probe-{width}.html"
    probe.write_text(page_file.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = _chromium(probe, tmp_path, width, 900, "--dump-dom", "--virtual-time-budget=5000")

    class Body(HTMLParser):
        found: str | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "body":
                Body.found = dict(attrs).get("data-measured")

    Body().feed(dom)
    assert Body.found, "the measuring script did not run"
    return json.loads(Body.found)


def test_chromium_every_table_fits_at_1400_px_and_words_stay_whole(page_file, tmp_path):
    found = _measured(page_file, tmp_path, WIDTH)
    assert found["viewport"] == WIDTH and found["page"] <= WIDTH, found
    assert found["wide"] == [], found["wide"]  # no table needs its own scroll bar at 1400 px
    assert found["past"] == [], found["past"][:10]  # nothing reaches past the body's content box
    assert found["words"] > 100 and found["split"] == [], found["split"][:20]  # cells wrap between words


def test_chromium_a_narrow_window_scrolls_tables_not_the_page(page_file, tmp_path):
    found = _measured(page_file, tmp_path, 900)
    assert found["page"] <= 900, found


def test_chromium_screenshot_is_page_wide_with_clear_margins(page_file, tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    shot = tmp_path / "report.png"
    _chromium(page_file, tmp_path, WIDTH, 2400, f"--screenshot={shot}")
    with image_module.open(shot) as image:
        assert image.size == (WIDTH, 2400)
        rgb = image.convert("RGB")
        margin = (WIDTH - 1320 - 2 * 24) // 2  # body: 1320 px of content and 1.5em (24 px) of padding each side
        strip = rgb.crop((WIDTH - margin + 2, 0, WIDTH, 2400))
        assert strip.getextrema() == ((255, 255), (255, 255), (255, 255))  # nothing painted past the body
        content = rgb.crop((0, 0, WIDTH - margin, 2400)).convert("L").getextrema()
        assert content[0] < 100  # the page did render (text is dark)
