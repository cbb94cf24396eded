"""User-facing errors.

Every error a user can cause (bad config, missing or malformed data, wrong checkpoint, unwritable folder) is a
:class:`BenchError` whose message is one plain paragraph naming the file or key and what is wrong. The CLI prints
it without a traceback (unless ``--debug``) and exits non-zero. Anything else is a bug and keeps its traceback.

Exit codes (the README's table): 0 ok; 1 a bug (traceback); 2 config; 3 data; 4 checkpoint; 5 output (including
a full disk); 6 training diverged; 7 a worker process died; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations


class BenchError(Exception):
    """An error caused by input the user can fix; the message says what and where."""

    exit_code = 2


class ConfigError(BenchError):
    """Unknown or ill-typed config key, bad override syntax, impossible combination of settings."""


class UnknownNameError(ConfigError):
    """An unknown method, suite, dataset, transform or metric name."""


class DataError(BenchError):
    """A data file is missing, unreadable, of the wrong layout, or holds invalid values."""

    exit_code = 3


class CheckpointError(BenchError):
    """A checkpoint does not fit the architecture it is loaded into."""

    exit_code = 4


class OutputError(BenchError):
    """The output folder cannot be created or written."""

    exit_code = 5


class TrainingError(BenchError):
    """Training cannot go on: a non-finite loss (the message names the job, epoch and step and suggests a lower lr)."""

    exit_code = 6


class WorkerError(BenchError):
    """A pool worker process died under a job (killed, out of memory): the message names the job; the job resumes
    from its ``last.pt`` when the same command runs again."""

    exit_code = 7


#: the exit code of an interrupted command (Ctrl-C / SIGINT), as shells report 128 + SIGINT
INTERRUPTED_EXIT = 130


class JobStopped(Exception):
    """A job stopped on purpose before its end (e.g. an Optuna trial pruned it): its MLflow run closes KILLED, not
    FAILED. Not a :class:`BenchError`: nothing is wrong with the input."""
