"""This process's stop flag: how a Ctrl-C of a pooled sweep reaches the jobs running in its worker processes.

Convention: pool workers ignore SIGINT (a terminal's Ctrl-C reaches every process of its group, and a worker
interrupted at a random line could leave a half-written MLflow run). The parent alone takes the signal and sets a
``multiprocessing`` Event that every worker received from the pool's initializer (:func:`set_stop_event`). The
Trainer polls it at every step and before every epoch (:func:`raise_if_stopped`), so a running job stops at its
next step with the ``last.pt`` of its last finished epoch kept, and the runner closes its MLflow run KILLED (it does
that for a KeyboardInterrupt). In a process with no event (the parent, an in-process run, a test) nothing happens:
there a Ctrl-C raises KeyboardInterrupt by itself.
"""

from __future__ import annotations

from typing import Any

_stop_event: Any = None


def set_stop_event(event: Any) -> None:
    """In a pool worker (the pool's initializer): the Event whose ``is_set()`` means "stop now"; None clears it."""
    global _stop_event
    _stop_event = event


def stop_requested() -> bool:
    """Whether this process was asked to stop (always False without an event)."""
    return _stop_event is not None and _stop_event.is_set()


def raise_if_stopped() -> None:
    """Raise KeyboardInterrupt when this process was asked to stop, as a Ctrl-C in it would."""
    if stop_requested():
        raise KeyboardInterrupt("the sweep was interrupted (Ctrl-C): this job stopped at its next step")
