"""Reading and writing pre-training checkpoints in the authors' layout (protocols.md section 4).

Files are ``{'base_model': state_dict, 'epoch': int, ...}``; the authors' fine-tuned files may use ``'model'``;
a raw state dict is accepted too. Leading ``module.`` (DataParallel/DDP) and ``base_model.`` are stripped from
every key. Files are read with ``torch.load(weights_only=True, map_location='cpu')``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.errors import CheckpointError
from bench.io import atomic_torch_save

_WRAPPERS = ("module.", "base_model.")


@dataclass
class LoadReport:
    """What an encoder import did. ``loaded``/``missing`` are backbone key names; ``unexpected`` are checkpoint
    key names (after ``module.``/``base_model.`` stripping) that were not loaded."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def strip_wrappers(key: str) -> str:
    """Remove leading ``module.`` / ``base_model.`` prefixes (any number, any order)."""
    while key.startswith(_WRAPPERS):
        key = key.split(".", 1)[1]
    return key


def unwrap_state_dict(obj: Any, source: str) -> dict[str, Tensor]:
    """{'base_model': sd} | {'model': sd} | sd -> flat state dict with wrapper prefixes stripped."""
    state = obj
    if isinstance(obj, Mapping):
        for key in ("base_model", "model"):
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{source} holds no state dict: expected {{'base_model': state_dict}}, {{'model': state_dict}} or a "
            "mapping of parameter names to tensors."
        )
    return {strip_wrappers(str(k)): v for k, v in state.items()}


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Load a checkpoint file and return its unwrapped state dict; CheckpointError naming the path on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"cannot read checkpoint {path}: it is not a checkpoint this harness can load safely "
                              f"({_load_reason(exc)}). pointbench reads only PyTorch files of tensors and plain "
                              "containers (torch.load with weights_only=True), never arbitrary pickled objects: give "
                              "a state-dict checkpoint such as the authors' .pth files.") from None
    return unwrap_state_dict(obj, str(path))


#: torch's weights_only refusal opens with advice to load the file unsafely, which is wrong here: it is dropped
_TORCH_ADVICE = ("Weights only load failed", "Check the documentation of torch.load", "Please file an issue")


def _load_reason(exc: Exception) -> str:
    """The specific reason in a torch.load error (``unsupported GLOBAL posix.system``), without torch's advice to
    re-run with ``weights_only=False``; the exception type when nothing else is said."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith(_TORCH_ADVICE)]
    if not specific:  # an error of another shape: its first line, unless it is torch's advice
        specific = [line for line in lines[:1] if "weights_only" not in line]
    reason = "; ".join(specific)[:300]
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _names(keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _top_level(keys: Sequence[str]) -> list[str]:
    return sorted({k.split(".", 1)[0] for k in keys})


def _allowed(key: str, allowed: Sequence[str]) -> bool:
    return any(key == name or key.startswith(name + ".") for name in allowed)


def _check_fit(
    own: Mapping[str, Tensor], selected: Mapping[str, Tensor], source: str, prefix: str, allowed: Sequence[str]
) -> list[str]:
    """Raise CheckpointError when ``selected`` does not fit ``own``; return the missing (allowed) keys."""
    wrong = [
        f"{prefix}.{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in selected.items()
        if k in own and v.shape != own[k].shape
    ]
    if wrong:
        raise CheckpointError(f"checkpoint {source} does not fit the model, shape mismatch at {_names(wrong, 5)}.")
    missing = [k for k in own if k not in selected]
    bad_missing = [k for k in missing if not _allowed(k, allowed)]
    if bad_missing:
        raise CheckpointError(
            f"checkpoint {source} lacks {len(bad_missing)} encoder key(s) under '{prefix}.' that the model needs: "
            f"{_names(bad_missing)}. Is it from a smaller model or another method?"
        )
    extra = [k for k in selected if k not in own and not _allowed(k, allowed)]
    if extra:
        raise CheckpointError(
            f"checkpoint {source} has {len(extra)} encoder key(s) under '{prefix}.' that the model lacks: "
            f"{_names(extra)}. Is it from a larger model (depth, cls token) than the config builds?"
        )
    return missing


def load_encoder_checkpoint(
    backbone: nn.Module,
    path: str | Path,
    prefix: str,
    allowed_missing: Sequence[str] = ("cls_token", "cls_pos"),
) -> LoadReport:
    """Load the encoder stored under ``{prefix}.`` of a pre-training checkpoint into ``backbone``.

    Keys outside the prefix (decoder, mask_token, increase_dim, ...) are reported as unexpected. Backbone keys
    absent from the checkpoint must be in ``allowed_missing`` (a name or a dotted module prefix). Encoder keys
    under the prefix that the backbone lacks are an error unless allowed (cls tokens may sit on either side).
    Shape mismatches and files without any key under the prefix are errors.
    """
    state = read_state_dict(path)
    head = prefix + "."
    selected = {k[len(head) :]: v for k, v in state.items() if k.startswith(head)}
    outside = sorted(k for k in state if not k.startswith(head))
    if not selected:
        raise CheckpointError(
            f"checkpoint {path} has no key under '{head}': it looks like another architecture. Its top-level key "
            f"prefixes are {_names(_top_level(list(state)), 8)}. Check the method (its checkpoint_prefix is "
            f"'{prefix}') or pass a checkpoint of this method."
        )
    own = backbone.state_dict()
    missing = _check_fit(own, selected, str(path), prefix, allowed_missing)
    loadable = {k: v for k, v in selected.items() if k in own}
    backbone.load_state_dict(loadable, strict=False)
    ignored = sorted(head + k for k in selected if k not in own)
    return LoadReport(loaded=sorted(loadable), missing=missing, unexpected=outside + ignored)


def save_pretrain_checkpoint(
    method: nn.Module, path: str | Path, epoch: int, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``{'base_model': method.state_dict(), 'epoch': epoch, **extra}`` atomically (:mod:`bench.io`).

    The whole method is saved (encoder, decoder, tokenizer, generator ...), so a later stage or a generation
    protocol can start from it. ``extra`` must hold only tensors and plain containers, so that the file loads
    with ``weights_only=True``.
    """
    payload: dict[str, Any] = {"base_model": method.state_dict(), "epoch": int(epoch)}
    for key, value in (extra or {}).items():
        if key in payload:
            raise ValueError(f"extra may not override '{key}' in a checkpoint")
        payload[key] = value
    return atomic_torch_save(payload, path)


def load_method_checkpoint(method: nn.Module, path: str | Path) -> None:
    """Load a whole-method checkpoint (ours or the authors') into ``method``, strictly: every key must match, so a
    generation protocol never samples from a half-loaded model. CheckpointError naming the file otherwise."""
    state = read_state_dict(path)
    own = method.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"checkpoint {path} does not hold this whole {type(method).__name__}: missing "
                              f"{_names(missing, 6) or 'none'}; unexpected {_names(unexpected, 6) or 'none'}; "
                              f"shape mismatches {_names(wrong, 4) or 'none'}.")
    method.load_state_dict(state, strict=True)
