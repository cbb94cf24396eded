"""How the report writes a method: one display name per method, the same in every output (Markdown, HTML, LaTeX,
figure legends).

Registered methods carry their own (``Method.display_name``, ``methods/<name>.py``: ``point_mae`` -> ``Point-MAE``,
``scratch`` -> ``Scratch``); an empty ``display_name`` means the registry name. Methods we only have published
numbers of (Point-BERT, LION, ...) take ``display`` from ``reports/published.yaml``; any other name (a test's toy
method, a record of a method since removed) is shown as it is. Identifiers stay ids where they are identifiers: job
ids, the ``suite / variant / method`` keys of provenance and fidelity lines, command lines.

The registry is read once per process (:func:`bench.registry.load_plugins` imports the method modules, and with them
torch), only when a name is first asked for.
"""

from __future__ import annotations

import functools

from reports.published import load_published


@functools.cache
def registered_names() -> dict[str, str]:
    """Registry name -> display name of every registered method (its ``display_name``, else its name)."""
    from bench.registry import METHODS, load_plugins

    load_plugins()
    return {name: str(getattr(METHODS.get(name), "display_name", "") or name) for name in METHODS.names()}


def display_name(method: str) -> str:
    """The method's display name: the registered method's ``display_name``, else published.yaml's ``display``, else
    ``method`` unchanged."""
    shown = registered_names().get(method)
    return shown if shown is not None else load_published().display.get(method, method)
