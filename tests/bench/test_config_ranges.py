"""Values out of range and repeated selectors are config errors before any work (issue 15, items 4 and 6)."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.config import parse_cli, resolve
from bench.errors import ConfigError


@pytest.mark.parametrize(("override", "needle"), [
    ("trainer.lr=-1", "trainer.lr=-1: it must be > 0"),
    ("trainer.lr=0", "trainer.lr=0: it must be > 0"),
    ("trainer.batch_size=0", "trainer.batch_size=0: it must be >= 1"),
    ("trainer.epochs=0", "trainer.epochs=0: it must be >= 1"),
    ("trainer.weight_decay=-0.1", "trainer.weight_decay=-0.1: it must be >= 0"),
    ("trainer.drop_path=1.0", "trainer.drop_path=1: it must be >= 0 and < 1"),
    ("trainer.grad_clip=0", "trainer.grad_clip=0: it must be null"),
    ("pretrain.trainer.batch_size=0", "pretrain.trainer.batch_size=0"),
    ("pretrain.trainer.epochs=-1", "pretrain.trainer.epochs=-1: it must be >= 0"),
    ("seeds=[0,0]", "seeds=[0, 0]: 0 given twice"),
    ("suite.variants=[objbg,objbg]", "suite.variants=['objbg', 'objbg']: objbg given twice"),
])
def test_out_of_range_and_repeated_values_are_named(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve("scanobjectnn", "point_mae", profile="demo", overrides=[override])
    assert needle in str(err.value)


def test_a_stage_trainer_out_of_range_names_the_stage() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.stages\.tokenizer\.trainer\.lr=-0\.5"):
        resolve("generation", "point_mge", profile="demo", overrides=["pretrain.stages.0.trainer.lr=-0.5"])


def test_a_pre_training_stage_of_zero_epochs_is_an_untrained_model_not_an_error() -> None:
    cfg = resolve("generation", "point_mge", profile="demo", overrides=["pretrain.stages.0.trainer.epochs=0"])
    assert cfg.pretrain.stages[0].trainer.epochs == 0


def test_a_method_named_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="scratch given twice"):
        parse_cli(["suite=scanobjectnn", "method=scratch,point_mae,scratch"])


def test_the_cli_exits_non_zero_without_a_traceback(tmp_path, capsys) -> None:
    code = main(["run", "suite=scanobjectnn", "method=scratch", "trainer.lr=-1", f"output.dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code != 0 and "trainer.lr=-1" in err and "Traceback" not in err
    assert not (tmp_path / "records").exists() and not (tmp_path / "mlflow.db").exists()
