"""MLflow run ids link to the run in the UI when the record's tracking URI is a server; text for SQLite / files."""

from __future__ import annotations

import pytest

from reports.leaderboard import summarize
from reports.provenance import mlflow_run_url
from reports.render import render_html

RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("uri", "expected"), [
    ("http://mlflow.lab:5000", f"http://mlflow.lab:5000/#/runs/{RUN}"),
    ("https://host/mlflow/", f"https://host/mlflow/#/runs/{RUN}"),  # a server under a path prefix
    ("https://alice:secret@host:8443", f"https://host:8443/#/runs/{RUN}"),  # credentials stay out of the page
    ("sqlite:////runs/mlflow.db", None),
    ("file:///runs/mlruns", None),
    ("/runs/mlruns", None),
    (None, None),
])
def test_run_url_only_for_servers(uri, expected):
    assert mlflow_run_url(uri, RUN) == expected


def test_run_url_with_an_experiment_id_and_without_a_run():
    assert mlflow_run_url("http://h:5000", RUN, "7") == f"http://h:5000/#/experiments/7/runs/{RUN}"
    assert mlflow_run_url("http://h:5000", None) is None and mlflow_run_url("http://h:5000", "") is None


def _page(make_record, uri):
    config = {"seed": 0, "tracking": {"enabled": True, "uri": uri, "experiment": "pointbench"}}
    records = [make_record(seed=0, mlflow_run_id=RUN, config=config)]
    return render_html(summarize(records), records)


def test_provenance_links_the_run_on_a_tracking_server(make_record):
    page = _page(make_record, "http://mlflow.lab:5000")
    assert f'<a href="http://mlflow.lab:5000/#/runs/{RUN}" title="the run in the MLflow UI">{RUN}</a>' in page


@pytest.mark.parametrize("uri", ["sqlite:////runs/mlflow.db", None])
def test_provenance_keeps_the_id_as_text_for_local_stores(make_record, uri):
    page = _page(make_record, uri)
    assert f'<td class="hash">{RUN}</td>' in page and "<a href=\"http" not in page
