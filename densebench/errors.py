"""Every exception densebench raises, in one place.

Each message says what was wrong and what is allowed or expected. The pytest plugin turns
:class:`SettingsError` into ``pytest.UsageError`` and :class:`InputError` into an exit with
status 4 (like a usage error); the command line turns :class:`ReportError` into exit status 2.
No module here imports anything heavy: this module is imported at every pytest start-up.
"""

from __future__ import annotations


class DensebenchError(Exception):
    """Base of densebench's own errors (catch this to catch any of them)."""


class SettingsError(DensebenchError, ValueError):
    """Bad configuration: the message says what was wrong and what is allowed."""


class StackError(SettingsError):
    """A stack of techniques that cannot be combined (``fp16+bf16``, two backends...)."""


class Unavailable(DensebenchError):
    """The optimization cannot run here; the message names exactly what is missing (a skip, not a failure)."""


class WeightsError(DensebenchError, ValueError):
    """A weights file or source that cannot be used; the message says why and what is expected."""


class DataError(DensebenchError, ValueError):
    """A dataset that cannot be used; the message says what was wrong and what to do."""


class InputError(DensebenchError):
    """The weights or the dataset cannot be used: nothing can be measured (wraps WeightsError/DataError)."""


class BuildFailed(DensebenchError):
    """Building an optimization raised; kept so later batch sizes fail fast with the same error."""


class OutOfMemory(DensebenchError):
    """This optimization and batch size do not fit in memory: recorded as 'oom', the run goes on."""


class ReportError(DensebenchError, ValueError):
    """A results file that cannot be read, reported on or compared; the message says which and why."""


class ABError(DensebenchError):
    """``densebench ab`` cannot compare: bad side, a worker that failed, or sides that differ in more than
    what was varied; the message says which and why (exit status 2)."""


class StoreError(DensebenchError):
    """The results store cannot be opened, read or written (bad URL, unreachable server, a schema of
    another densebench version); the message names the store (password hidden) and what to do."""


class StorageWarning(UserWarning):
    """A file densebench writes (journal, JSON, report, cache) could not be written; the run went on and
    the message says what was kept. See storage.py."""


__all__ = ["ABError", "BuildFailed", "DataError", "DensebenchError", "InputError", "OutOfMemory", "ReportError",
           "SettingsError", "StackError", "StorageWarning", "StoreError", "Unavailable", "WeightsError"]
