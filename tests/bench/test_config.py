"""Config resolution: layering order, strict keys with did-you-mean, selectors, recipes, profiles."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from bench.config import parse_cli, resolve, suite_names, variant_config
from bench.errors import ConfigError
from bench.plan import select_methods


def test_all_is_left_to_the_planner():
    """method=all depends on each suite's protocol, so the planner expands it (tests/bench/test_plan.py)."""
    request = parse_cli(["suite=scanobjectnn", "method=all"])
    assert request.methods is None
    assert request.suites == ["scanobjectnn"]
    assert request.profile is None and request.recipe == "method"


def test_comma_list_and_overrides_are_split():
    request = parse_cli(["suite=modelnet40", "method=scratch,point_mae", "trainer.lr=1e-4", "profile=quick"])
    assert request.methods == ["scratch", "point_mae"]
    assert request.overrides == ["trainer.lr=1e-4"]
    assert request.profile == "quick"


@pytest.mark.parametrize(
    ("tokens", "needle"),
    [
        (["suite=scanobjectn", "method=all"], 'Did you mean "scanobjectnn"'),
        (["suite=scanobjectnn", "method=point_ma"], 'Did you mean "point_mae"'),
        (["suite=scanobjectnn", "profile=papr"], 'Did you mean "paper"'),
        (["suite=scanobjectnn", "recipe=mine"], "recipe"),
        (["suite=scanobjectnn", "oops"], "key=value"),
    ],
)
def test_bad_selectors_fail_with_a_hint(tokens, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_cli(tokens)


def test_unknown_override_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as err:
        resolve("scanobjectnn", "scratch", profile="demo", overrides=["trainer.lrr=1"])
    assert "trainer.lrr" in str(err.value) and "lr" in str(err.value) and "command line" in str(err.value)


def test_ill_typed_override_fails():
    with pytest.raises(ConfigError, match="trainer.epochs"):
        resolve("scanobjectnn", "scratch", profile="demo", overrides=["trainer.epochs=many"])


def test_layer_order_cli_beats_profile_beats_suite():
    paper = resolve("scanobjectnn", "scratch", profile="paper")
    demo = resolve("scanobjectnn", "scratch", profile="demo")
    cli = resolve("scanobjectnn", "scratch", profile="demo", overrides=["trainer.epochs=3", "seeds=[5]"])
    assert paper.trainer.epochs == 300 and paper.suite.npoints == 2048 and len(paper.seeds) == 8
    assert demo.trainer.epochs == 15 and demo.suite.npoints == 1024  # global profile, then suite profiles.demo
    assert cli.trainer.epochs == 3 and list(cli.seeds) == [5]


def test_npoints_interpolates_into_transform_chains():
    cfg = resolve("scanobjectnn", "scratch", profile="demo", overrides=["suite.npoints=512"])
    train = OmegaConf.to_container(cfg.suite.transforms.train, resolve=True)
    assert train == [{"random_subset": {"n": 512}}]


def test_method_recipe_applies_unless_shared():
    own = resolve("scanobjectnn", "point_mae", profile="paper", recipe="method")
    shared = resolve("scanobjectnn", "point_mae", profile="paper", recipe="shared")
    assert list(shared.suite.transforms.augment) == ["rotate_y"]  # the suite's shared recipe
    assert list(own.suite.transforms.augment) == ["scale_translate"]  # Point-MAE's own (protocols.md 1.3)


def test_variant_options_merge_over_suite():
    cfg = resolve("scanobjectnn", "scratch", profile="demo")
    hardest = variant_config(cfg, "hardest")
    assert OmegaConf.to_container(hardest.suite.transforms.vote_each, resolve=True)[-1] == "rotate_y"
    assert variant_config(cfg, "objbg").suite.transforms.vote_each == cfg.suite.transforms.vote_each


def test_unknown_variant_fails():
    with pytest.raises(ConfigError, match='unknown variant "objbgg".*Did you mean "objbg"'):
        resolve("scanobjectnn", "scratch", profile="demo", overrides=["suite.variants=[objbgg]"])


def test_resolved_config_is_frozen():
    cfg = resolve("scanobjectnn", "scratch", profile="demo")
    from omegaconf.errors import ReadonlyConfigError

    with pytest.raises(ReadonlyConfigError):
        cfg.trainer.epochs = 1


def test_bad_yaml_top_level_key_names_the_file(tmp_path, monkeypatch):
    import bench.config as config

    (tmp_path / "broken.yaml").write_text("suite:\n  name: broken\ntrainr:\n  epochs: 1\n")
    monkeypatch.setattr(config, "SUITES_DIR", tmp_path)
    with pytest.raises(ConfigError, match=r"broken\.yaml.*trainr.*Did you mean \"trainer\""):
        resolve("broken", "scratch", profile="demo")


@pytest.mark.parametrize("suite", suite_names())
@pytest.mark.parametrize("profile", ["paper", "quick", "demo"])
def test_every_suite_resolves_for_every_method_and_profile(suite, profile):
    for method in select_methods(suite, parse_cli([f"suite={suite}", "method=all"])):
        cfg = resolve(suite, method, profile=profile)
        assert cfg.suite.name == suite and cfg.suite.version >= 1
        for variant in cfg.suite.variants:
            variant_cfg = variant_config(cfg, variant)
            assert variant_cfg.suite.npoints >= variant_cfg.suite.num_group
            OmegaConf.to_container(variant_cfg, resolve=True)  # every interpolation resolves


def test_tilde_removes_keys_of_free_form_mappings_before_the_command_line():
    """``~tune.space`` empties the method's space so the command line gives a new one; ``~a.b`` drops one key."""
    request = parse_cli(["suite=scanobjectnn", "method=scratch", "~tune.space", "tune.space.trainer.lr.low=1e-4",
                         "tune.space.trainer.lr.high=1e-3"])
    cfg = resolve("scanobjectnn", "scratch", profile="demo", overrides=request.overrides)
    assert OmegaConf.to_container(cfg.tune.space) == {"trainer": {"lr": {"low": 1e-4, "high": 1e-3}}}
    cfg = resolve("scanobjectnn", "scratch", profile="demo", overrides=["~tune.space.trainer.drop_path"])
    assert sorted(cfg.tune.space.trainer) == ["lr", "weight_decay"]


@pytest.mark.parametrize(("token", "needle"), [
    ("~trainer.lr", "fixed key of the schema"), ("~trainer", "fixed key of the schema"),
    ("~tune.space.nope", 'no key "tune.space.nope"'),
])
def test_tilde_on_schema_or_missing_keys_fails(token, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve("scanobjectnn", "scratch", profile="demo", overrides=[token])


def test_a_list_element_is_set_by_its_index_and_a_bad_index_is_named():
    cfg = resolve("generation", "point_mge", profile="demo",
                  overrides=["pretrain.stages.0.trainer.epochs=2", "pretrain.stages.1.trainer.epochs=3"])
    assert [dict(s.trainer) for s in cfg.pretrain.stages] == [{"epochs": 2}, {"epochs": 3}]
    assert cfg.pretrain.stages[0].name == "tokenizer"  # the rest of the element is kept
    for bad, needle in [("pretrain.stages.5.trainer.epochs=2", "has 2 element(s), no element 5"),
                        ("pretrain.stages.0.bogus=1", "bogus"),
                        ("pretrain.stages.x.trainer=1", "set one element of a list by its index")]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            resolve("generation", "point_mge", profile="demo", overrides=[bad])


def test_sampler_settings_never_re_run_a_pre_training():
    from bench.identity import stage_hash

    base = resolve("generation", "point_mge", profile="demo")
    sampled = resolve("generation", "point_mge", profile="demo",
                      overrides=["method.sampler.steps=3", "method.surface.seeds=8"])
    trained = resolve("generation", "point_mge", profile="demo", overrides=["method.mask.end=0.8"])
    kinds = ["synthetic", "synthetic"]
    assert [stage_hash(sampled, i, kinds) for i in (0, 1)] == [stage_hash(base, i, kinds) for i in (0, 1)]
    assert stage_hash(trained, 1, kinds) != stage_hash(base, 1, kinds)


def test_new_side_data_re_runs_the_stages_that_read_it():
    from bench.identity import stage_hash

    cfg = resolve("scanobjectnn", "mmpd", profile="demo")
    kinds = ["synthetic", "synthetic"]
    random_teachers, real_teachers = [{"teachers": "a" * 64}, {}], [{"teachers": "b" * 64}, {}]
    assert stage_hash(cfg, 0, kinds, random_teachers) != stage_hash(cfg, 0, kinds, real_teachers)
    assert stage_hash(cfg, 1, kinds, random_teachers) != stage_hash(cfg, 1, kinds, real_teachers)  # it follows
    assert stage_hash(cfg, 0, kinds, [{}, {}]) == stage_hash(cfg, 0, kinds)  # no side data: the hash as before
