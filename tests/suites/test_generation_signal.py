"""The stand-in carries the generation suite's signal: a trained Point-MGE scores measurably better 1-NNA (and MMD,
COV) than the same model untrained, through ``bench run suite=generation`` end to end. Both pre-train on the
PC15k airplane train split of the demo stand-in (48 shapes) and are scored against 12 `val` references."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.records import load_records

COMMON = ["suite=generation", "method=point_mge", "profile=demo", "data.standin_size=demo", "suite.variants=[airplane]",
          "pretrain.dataset=shapenet15k", "pretrain.variant=airplane", "suite.finetune_epochs=0",
          "suite.sampling_seeds=[0,1]", "suite.emd_audit=0", "suite.reference_size=12", "tracking.enabled=false",
          "executor.workers=1", "trainer.threads=2"]


def scores(tmp_path: Path, data_root: Path, name: str, tokenizer_epochs: int, generator_epochs: int) -> dict:
    out = tmp_path / name
    code = main(["--quiet", "run", *COMMON, f"data.root={data_root}", f"output.dir={out}",
                 f"pretrain.stages.0.trainer.epochs={tokenizer_epochs}",
                 f"pretrain.stages.1.trainer.epochs={generator_epochs}"])
    assert code == 0
    (record,) = load_records(out / "records")
    return {r.name: r.value("honest") for r in record.results}


@pytest.mark.slow
def test_a_trained_generator_beats_an_untrained_one(tmp_path):
    data_root = tmp_path / "data"
    untrained = scores(tmp_path, data_root, "untrained", 0, 0)
    trained = scores(tmp_path, data_root, "trained", 40, 80)
    assert untrained["nna_cd"] > 95.0  # an untrained generator's samples are told apart from every reference
    assert trained["nna_cd"] <= untrained["nna_cd"] - 10.0  # the binomial floor: 10.2 points at n = 12
    assert trained["mmd_cd"] < 0.5 * untrained["mmd_cd"] and trained["cov_cd"] > untrained["cov_cd"]
