"""Config resolution: YAML layers + dotted ``key=value`` overrides over the typed schema (:mod:`bench.schema`).

``bench run suite=scanobjectnn method=all trainer.epochs=5`` is parsed by :func:`parse_cli` into selectors
(suite, method list, profile, recipe) and a dotlist; :func:`resolve` builds one frozen config per
(suite, method). ``method=all`` and comma lists are expanded from the registry *before* merging, which is
why this is not Hydra (Hydra rejects ``method=all`` as a config group).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from bench.errors import ConfigError
from bench.registry import DATASETS, METHODS, PROTOCOLS, did_you_mean, load_plugins
from bench.schema import DATA_SOURCES, PROFILES, RECIPES, RunConfig, TrainerConfig, check_report

REPO_ROOT = Path(__file__).resolve().parents[1]
SUITES_DIR = REPO_ROOT / "suites"
METHOD_CONFIGS_DIR = REPO_ROOT / "methods" / "configs"
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
SELECTORS = ("suite", "method", "profile", "recipe")
#: sections a suite yaml may set (besides ``profiles``); a method yaml sets method/pretrain/recipes/profiles
SUITE_SECTIONS = ("suite", "trainer", "seeds", "pretrain", "tune")
METHOD_SECTIONS = ("method", "pretrain", "tune")
#: ``+overrides=<file.yaml>``: a YAML mapping of config keys merged after the profiles, before ``key=value``
OVERRIDES_FILE = "+overrides"
#: ``~a.b``: remove key ``b`` of the free-form mapping ``a`` (e.g. ``~tune.space`` before giving a new space)
REMOVE = "~"


@dataclass
class CliRequest:
    """What the user asked for on the command line."""

    suites: list[str]
    methods: list[str] | None  # None: method=all, every method whose capabilities each suite's protocol accepts
    profile: str | None  # None: automatic (paper on real data, demo on the synthetic stand-in)
    recipe: str
    overrides: list[str] = field(default_factory=list)


def suite_names() -> list[str]:
    """Suites are the YAML files in ``suites/`` (file stem = suite name)."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def parse_cli(tokens: list[str]) -> CliRequest:
    """Split ``key=value`` tokens into selectors and config overrides; validate the selectors."""
    selected: dict[str, str] = {}
    overrides: list[str] = []
    for token in tokens:
        if token.startswith(REMOVE) and "=" not in token:
            overrides.append(token)  # ~key: remove a key of a free-form mapping (see resolve)
            continue
        if "=" not in token:
            raise ConfigError(f'cannot parse "{token}": arguments are key=value (e.g. suite=scanobjectnn).')
        key, value = token.split("=", 1)
        if key in SELECTORS:
            selected[key] = value
        elif key == OVERRIDES_FILE:
            read_yaml(Path(value).expanduser())  # a missing or malformed file fails here, naming it
            overrides.append(f"{OVERRIDES_FILE}={Path(value).expanduser().resolve()}")
        else:
            _check_override_value(key, value)
            overrides.append(token)
    suites = _expand(selected.get("suite", ""), suite_names(), "suite")
    profile = selected.get("profile") or None
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f'unknown profile "{profile}".{did_you_mean(profile, PROFILES)} '
                          f"Choose from {', '.join(PROFILES)}.")
    recipe = selected.get("recipe", "method")
    if recipe not in RECIPES:
        raise ConfigError(f'unknown recipe "{recipe}". Choose "method" (each method\'s own) or "shared".')
    load_plugins()  # the selectors above fail fast, before the plug-ins (torch) are imported
    method = selected.get("method", "all")
    methods = None if method == "all" else _expand(method, METHODS.names(), "method")
    return CliRequest(suites, methods, profile, recipe, overrides)


def _check_override_value(key: str, value: str) -> None:
    """An override's value is read as YAML (as OmegaConf's dotlist reads it); one YAML cannot parse (``[1,``, an
    unbalanced quote) is a ConfigError naming the key, before anything is imported or run."""
    try:
        yaml.safe_load(value)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f'{key}={value}: the value is not valid YAML ({problem}). A list is [a,b] with its brackets '
                          "closed; quote a string holding brackets, quotes or a colon, e.g. "
                          f"{key}='\"text\"' in the shell.") from None


def _expand(value: str, known: list[str], kind: str) -> list[str]:
    if not value:
        raise ConfigError(f"no {kind} given: add {kind}=<name> (known: {', '.join(known)}).")
    if value == "all":
        return list(known)
    names = [v.strip() for v in value.split(",") if v.strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{kind}={value}: {', '.join(repeated)} given twice; name each {kind} once.")
    for name in names:
        if name not in known:
            hint = did_you_mean(name, known)
            raise ConfigError(f'unknown {kind} "{name}".{hint} Known {kind}s: {", ".join(known)}.')
    return names


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, a parse error or a non-mapping is a ConfigError naming the file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse YAML in {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, not {type(data).__name__}.")
    return data


def _sections(data: dict[str, Any], allowed: tuple[str, ...], source: str, extra: tuple[str, ...]) -> dict:
    unknown = set(data) - set(allowed) - set(extra)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f'{source}: unknown top-level key "{key}".{did_you_mean(key, allowed + extra)} '
            f"Allowed: {', '.join(allowed + extra)}."
        )
    return {k: v for k, v in data.items() if k in allowed}


def config_layers(suite: str, method: str, profile: str, recipe: str) -> list[tuple[str, dict]]:
    """The ordered (source, mapping) layers for one (suite, method, profile, recipe)."""
    suite_path = SUITES_DIR / f"{suite}.yaml"
    method_path = METHOD_CONFIGS_DIR / f"{method}.yaml"
    suite_yaml = read_yaml(suite_path)
    method_yaml = read_yaml(method_path) if method_path.exists() else {}
    layers = [
        (str(suite_path), _sections(suite_yaml, SUITE_SECTIONS, str(suite_path), ("profiles",))),
        (str(method_path), _sections(method_yaml, METHOD_SECTIONS, str(method_path), ("recipes", "profiles"))),
    ]
    recipes = method_yaml.get("recipes") or {}
    if recipe == "method" and suite in recipes:
        layers.append((f"{method_path} recipes.{suite}", recipes[suite]))
    profile_path = PROFILES_DIR / f"{profile}.yaml"
    layers.append((str(profile_path), read_yaml(profile_path)))
    for path, data in ((suite_path, suite_yaml), (method_path, method_yaml)):
        section = (data.get("profiles") or {}).get(profile)
        if section:
            layers.append((f"{path} profiles.{profile}", section))
    return layers


def protocol_name(layers: list[tuple[str, dict]], overrides: list[str]) -> str:
    """The protocol the layers select (the last ``suite.protocol`` set; a command-line one wins)."""
    name = "finetune"
    for _, layer in layers:
        name = ((layer.get("suite") or {}) if isinstance(layer, dict) else {}).get("protocol", name)
    for token in overrides:
        if token.startswith("suite.protocol="):
            name = token.split("=", 1)[1]
    return name


def resolve(suite: str, method: str, *, profile: str, recipe: str = "method", overrides: list[str] = ()) -> DictConfig:
    """Merge every layer over the schema; return a read-only DictConfig (``OmegaConf.to_object`` gives objects).

    The ``suite`` section's schema is the protocol's ``suite_class`` (its own settings are keys of ``suite``), the
    ``method`` section's the method's ``config_class``: an unknown key in either is an error."""
    load_plugins()
    method_cls = METHODS.get(method)
    layers = config_layers(suite, method, profile, recipe)
    protocol_cls = PROTOCOLS.get(protocol_name(layers, list(overrides)))
    merged = OmegaConf.structured(RunConfig(method=method_cls.config_class(name=method),
                                            suite=protocol_cls.suite_class()))
    env_root = os.environ.get("BENCH_DATA")
    if env_root:
        merged = _merge(merged, {"data": {"root": env_root}}, "environment variable BENCH_DATA")
    for source, layer in layers:
        merged = _merge(merged, layer, source)
    merged = _merge(merged, {"profile": profile, "recipe": recipe}, "selectors")
    files = [o.split("=", 1)[1] for o in overrides if o.startswith(f"{OVERRIDES_FILE}=")]
    for path in files:
        merged = _merge(merged, read_yaml(Path(path)), f"overrides file {path}")
    overrides = [o for o in overrides if not o.startswith(f"{OVERRIDES_FILE}=")]
    for token in (o for o in overrides if o.startswith(REMOVE)):
        merged = _remove(merged, token[len(REMOVE):])
    overrides = [o for o in overrides if not o.startswith(REMOVE)]
    indexed = [o for o in overrides if _indexes_a_list(o)]
    try:
        dotlist = OmegaConf.from_dotlist([o for o in overrides if o not in indexed])
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        raise ConfigError(f"cannot parse command-line overrides {list(overrides)}: {err}") from None
    merged = _merge(merged, dotlist, "command line")
    for token in indexed:
        merged = _set_indexed(merged, token)
    _check_interpolations(merged)
    _validate(merged)
    OmegaConf.set_readonly(merged, True)
    return merged


def _check_interpolations(cfg: DictConfig) -> None:
    """Every ``${...}`` resolves (a bad one would otherwise surface as a traceback wherever it is first read)."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        where = f" (key {key})" if key else ""
        raise ConfigError(f"an interpolation in the config cannot be resolved{where}: "
                          f"{str(err).splitlines()[0]}.") from None


def _indexes_a_list(token: str) -> bool:
    """``pretrain.stages.0.trainer.epochs=5``: an override whose key names a list element by its index."""
    return any(part.isdigit() for part in token.split("=", 1)[0].split("."))


def _set_indexed(cfg: DictConfig, token: str) -> DictConfig:
    """Apply one ``a.<index>.b=value`` override (a dotlist merge cannot reach into a list); the value is parsed as
    every override's is. A missing index or an unknown key is a ConfigError naming the key."""
    key, _, raw = token.partition("=")
    try:
        value = OmegaConf.from_dotlist([f"value={raw}"])["value"]
        cfg = copy.deepcopy(cfg)
        node, parts = cfg, key.split(".")
        for depth, part in enumerate(parts[:-1]):  # every list on the way must hold the index
            if isinstance(node, ListConfig) and not (part.isdigit() and int(part) < len(node)):
                raise KeyError(f"{'.'.join(parts[:depth])} has {len(node)} element(s), no element {part}")
            node = node[int(part)] if isinstance(node, ListConfig) else node[part]
        OmegaConf.update(cfg, key, value, merge=True)
    except (OmegaConfBaseException, yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as err:
        raise ConfigError(f'command line: cannot set "{key}": {str(err).splitlines()[0]}') from None
    return cfg


def _remove(cfg: DictConfig, key: str) -> DictConfig:
    """``~a.b``: drop key ``b`` from the free-form mapping ``a`` (``~tune.space.trainer.lr``), or empty ``a.b``
    when it is a free-form mapping in a fixed section (``~tune.space``); applied before the command line's
    ``key=value``, so a space can be replaced. Keys of the schema's fixed sections cannot be removed."""
    parent_key, _, name = key.rpartition(".")
    cfg = copy.deepcopy(cfg)
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or name not in parent:
        raise ConfigError(f'cannot remove "{REMOVE}{key}": there is no key "{key}" in the resolved config.')
    value = parent[name]
    if OmegaConf.get_type(parent) is dict:
        del parent[name]
    elif isinstance(value, DictConfig) and OmegaConf.get_type(value) is dict:
        for child in list(value.keys()):
            del value[child]
    else:
        raise ConfigError(f'cannot remove "{REMOVE}{key}": it is a fixed key of the schema; only free-form mappings '
                          "such as tune.space (or their keys) can be removed.")
    return cfg


def _merge(base: DictConfig, layer: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, layer)
    except TypeError as err:  # a mapping where the config holds a list, or the reverse
        raise ConfigError(f"{source}: {err}: a list in the config was given a mapping (or a mapping a list); set "
                          "one element of a list by its index, e.g. pretrain.stages.0.trainer.epochs=5") from None
    except ValidationError as err:  # the key exists (an unknown one is a ConfigKeyError): its value is wrong
        if getattr(err, "full_key", None):
            raise ConfigError(bad_value(source, err.full_key, err.value, str(err))) from None
        raise ConfigError(f"{source}: bad config value: {str(err).splitlines()[0]}") from None
    except OmegaConfBaseException as err:
        first_line = str(err).splitlines()[0]
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f'{source}: bad config key "{key}": {first_line}') from None


#: OmegaConf's words for a value of the wrong type -> what the key takes
_EXPECTED = {"to Integer": "an integer", "to Float": "a number", "valid bool": "true or false",
             "is not a ListConfig": "a list"}


def bad_value(source: str, key: str, value: Any, detail: str) -> str:
    """The message for a known key given a value of the wrong type: ``trainer.epochs=abc`` -> not an integer;
    ``seeds=0,1`` -> not a list, with the bracketed spelling (``seeds=[0,1]``) as the suggestion."""
    expected = next((word for needle, word in _EXPECTED.items() if needle in detail), None)
    if expected is None:
        return f'{source}: bad value for {key}: {detail.splitlines()[0]}'
    hint = f" Did you mean {key}=[{value}]?" if expected == "a list" else ""
    return f'{source}: bad value for {key}: "{value}" is not {expected}.{hint}'


def _validate(cfg: DictConfig) -> None:
    if cfg.data.source not in DATA_SOURCES:
        raise ConfigError(f'data.source must be one of {", ".join(DATA_SOURCES)}, got "{cfg.data.source}".')
    known = known_variants(cfg)
    for variant in cfg.suite.variants:
        if variant not in known:
            hint = did_you_mean(variant, known)
            raise ConfigError(
                f'suite "{cfg.suite.name}": unknown variant "{variant}".{hint} Known: {", ".join(known)}.'
            )
    if not cfg.seeds:
        raise ConfigError("seeds is empty: give at least one seed, e.g. seeds=[0].")
    for key, values in (("seeds", list(cfg.seeds)), ("suite.variants", list(cfg.suite.variants))):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:  # the same job would run twice at once, into one work folder and one MLflow run
            raise ConfigError(f"{key}={values}: {', '.join(repeated)} given twice; each must appear once.")
    check_trainer_ranges(cfg.trainer, "trainer")
    check_trainer_ranges(cfg.pretrain.trainer, "pretrain.trainer", min_epochs=0)
    check_report(to_plain(cfg.suite.report), f'suite "{cfg.suite.name}": suite.report')
    _validate_stages(cfg)


def _validate_stages(cfg: DictConfig) -> None:
    """Stage names are unique and non-empty; each stage's trainer keys are TrainerConfig keys of the right type."""
    names = [stage.name for stage in cfg.pretrain.stages]
    if any(not name for name in names) or len(set(names)) != len(names):
        raise ConfigError(f"pretrain.stages: every stage needs a unique, non-empty name; got {names}.")
    for stage in cfg.pretrain.stages:
        check_trainer_ranges(stage_trainer(cfg, stage), f"pretrain.stages.{stage.name}.trainer", min_epochs=0)


#: TrainerConfig fields with their allowed range: (lowest, lowest included, highest or None)
TRAINER_RANGES = {"epochs": (1, True, None), "batch_size": (1, True, None), "eval_batch_size": (0, True, None),
                  "lr": (0.0, False, None), "weight_decay": (0.0, True, None), "warmup_epochs": (0, True, None),
                  "warmup_lr_init": (0.0, True, None), "min_lr": (0.0, True, None), "drop_path": (0.0, True, 1.0)}


def check_trainer_ranges(trainer: Any, where: str, min_epochs: int = 1) -> None:
    """Every range of :data:`TRAINER_RANGES` holds (and ``grad_clip`` is null or > 0), before any work; a
    ConfigError names the key, its value and the range. ``min_epochs`` 0 for pre-training: a stage of 0 epochs keeps
    the seeded init (an untrained model, as the generation-signal test compares)."""
    for key, (low, inclusive, high) in TRAINER_RANGES.items():
        low = min_epochs if key == "epochs" else low
        value = trainer.get(key) if hasattr(trainer, "get") else getattr(trainer, key, None)
        if value is None:
            continue
        below = value < low if inclusive else value <= low
        if below or (high is not None and value >= high):
            bound = f"{'>=' if inclusive else '>'} {low:g}" + (f" and < {high:g}" if high is not None else "")
            raise ConfigError(f"{where}.{key}={value:g}: it must be {bound}.")
    clip = trainer.get("grad_clip") if hasattr(trainer, "get") else getattr(trainer, "grad_clip", None)
    if clip is not None and clip <= 0:
        raise ConfigError(f"{where}.grad_clip={clip:g}: it must be null (no clipping) or > 0.")


def stage_trainer(cfg: DictConfig, stage: Any) -> DictConfig:
    """``pretrain.trainer`` with the stage's ``trainer`` keys merged over it, typed as TrainerConfig."""
    base = OmegaConf.merge(OmegaConf.structured(TrainerConfig), cfg.pretrain.trainer)
    return _merge(base, OmegaConf.to_container(stage.trainer, resolve=True), f"pretrain.stages.{stage.name}.trainer")


def known_variants(cfg: DictConfig) -> list[str]:
    """A suite variant is a variant of its data set (objbg, ...) or a key of ``suite.variant_options`` (1k, 8k)."""
    own = DATASETS.get(cfg.suite.dataset).variants
    dataset_variants = [v for v in own if v != "default"] or list(own)  # a set without named variants: "default"
    return dataset_variants + [v for v in cfg.suite.variant_options if v not in dataset_variants]


def dataset_variant(cfg: DictConfig, variant: str) -> str:
    """The data set's own variant behind a suite variant: the variant itself, or, for protocol-only variants (1k,
    a conditional task), the data set's first variant (its default: "default", or shapenet_occ's "all")."""
    own = DATASETS.get(cfg.suite.dataset).variants
    return variant if variant in own else own[0]


def variant_config(cfg: DictConfig, variant: str) -> DictConfig:
    """The config of one variant: ``suite.variant_options[variant]`` merged over ``suite`` (read-only)."""
    options = cfg.suite.variant_options.get(variant)
    if not options:
        return cfg
    merged = _merge(cfg, {"suite": OmegaConf.to_container(options)}, f"suite.variant_options.{variant}")
    OmegaConf.set_readonly(merged, True)
    return merged


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """Plain nested dict (for records, MLflow params and hashing)."""
    return OmegaConf.to_container(cfg, resolve=True)


def dump_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
