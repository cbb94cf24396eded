"""Table notes on how rows trained from random initialisation were initialised (issue 14 item 9).

A record whose job imported or pre-trained nothing (``pretrain.source == "none"``) and whose resolved method config
names an ``init`` (``record.config["method"]["init"]``, e.g. the scratch baseline's) gets one note under its suite's
table: ``<method>: trained from random initialisation, method.init=<value> (<what that value means>)``. Records
written before the option existed name no ``init`` and get no note (they ran ``trunc_normal``). No method or suite
name appears here: the note is read from the record alone.
"""

from __future__ import annotations

from typing import Any

#: what each ``method.init`` value means (the glossed values; another value is shown as it is)
INIT_MEANINGS = {
    "torch_default": "every layer keeps PyTorch's default init, cls tokens trunc_normal(.02), as the reference "
    "runner without --ckpts, which never calls load_model_from_ckpt (Point-MAE tools/runner_finetune.py L75-79)",
    "trunc_normal": "Linear/Conv1d trunc_normal(.02), zero bias, LayerNorm 1/0: the reference _init_weights, which "
    "its from-scratch path never runs",
}


def random_init_note(record: Any) -> str | None:
    """The note of one record, or None when it loaded weights or its method config names no ``init``."""
    if (getattr(record, "pretrain", None) or {}).get("source") != "none":
        return None
    method = (getattr(record, "config", None) or {}).get("method") or {}
    init = method.get("init") if isinstance(method, dict) else None
    if init is None:
        return None
    meaning = INIT_MEANINGS.get(str(init))
    return f"{record.method}: trained from random initialisation, method.init={init}" + (
        f" ({meaning})." if meaning else "."
    )


def random_init_notes(records: list[Any]) -> list[str]:
    """The distinct notes of ``records``, in record order."""
    return list(dict.fromkeys(note for note in map(random_init_note, records) if note))
