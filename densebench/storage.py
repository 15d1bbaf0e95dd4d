"""What densebench does when a file it writes cannot be written (disk full, read-only, no permission).

Measuring is the expensive part; storing is not allowed to cost it. Every write densebench makes
beside the measurement — the results journal, the final JSON, the report, the compile caches —
goes through :func:`guarded`: an ``OSError`` becomes one :class:`~densebench.errors.StorageWarning`
(shown in pytest's warnings summary, or on stderr by the command line) that names the file, the
system's reason and what was kept, and the run goes on. The caller decides what "kept" means
(the results still in memory, the journal beside a JSON that failed...).

Text is always written as UTF-8, whatever the locale (:func:`write_text`): a run under ``LANG=C``
must write the same files as any other.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .errors import StorageWarning

T = TypeVar("T")

ENCODING = "utf-8"  # every text file densebench reads or writes


def describe(what: str, path: Path | str | None, exc: OSError, kept: str) -> str:
    """One sentence: what could not be written where, the system's reason, and what was kept."""
    where = f" {path}" if path is not None else ""
    why = exc.strerror or str(exc) or type(exc).__name__
    return f"densebench: could not write the {what}{where} ({why}); {kept}"


def warn(message: str) -> None:
    """Report a storage problem as a StorageWarning (pytest lists it in its warnings summary)."""
    warnings.warn(message, StorageWarning, stacklevel=3)


def guarded(what: str, path: Path | str | None, kept: str, write: Callable[[], T],
            on_problem: Callable[[str], None] | None = None) -> T | None:
    """``write()``; on ``OSError`` warn (and pass the message to ``on_problem``) and return None."""
    try:
        return write()
    except OSError as exc:
        message = describe(what, path, exc, kept)
        warn(message)
        if on_problem is not None:
            on_problem(message)
        return None


def write_text(path: Path, text: str) -> Path:
    """``path.write_text(text)`` as UTF-8 whatever the locale; parents created. Raises OSError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=ENCODING)
    return path
