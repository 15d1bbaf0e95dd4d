"""The results journal: every finished benchmark is on disk the moment it finishes.

pytest-benchmark writes its JSON once, at the end of the session, so a crash or a kill in
the 40th benchmark loses the 39 before it. densebench also appends each finished
benchmark (exactly what pytest-benchmark would save, raw timings included) and each
outcome (``records.Outcome``, whatever its ``records.Status``) as one JSON line to
``<output>/journals/journal-<run>.jsonl``, fsync'd. ``densebench recover JOURNAL -o
result.json`` turns a journal into a pytest-benchmark JSON that ``pytest-benchmark
compare`` and ``densebench report`` read; the next run recovers unfinished journals on its
own. Final files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest_benchmark

from . import derived, storage


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it 0600; the result should read like any other file
    try:
        with os.fdopen(fd, "w", encoding=storage.ENCODING) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class Journal:
    """Append-only JSON lines, each fsync'd before ``write`` returns.

    A write that fails (disk full, read-only file system: any ``OSError``) turns the journal off for
    the rest of the run with one StorageWarning (see storage.py), passed to ``on_problem`` too: the
    measurements go on and stay in memory for the final JSON; only crash protection is lost."""

    def __init__(self, path: Path, header: Any = None, on_problem: Callable[[str], None] | None = None):
        self.path = Path(path)
        self._header = header  # dict, or a callable giving it, written before the first record
        self._fd: int | None = None
        self._on_problem = on_problem
        self.problem: str | None = None  # why the journal stopped, once it did

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            header = self._header() if callable(self._header) else (self._header or {})
            self._append({"type": "header", **header})
        return self._fd

    def _append(self, record: dict[str, Any]) -> None:
        assert self._fd is not None
        os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())
        os.fsync(self._fd)

    def write(self, record: dict[str, Any]) -> None:
        if self.problem is None:
            storage.guarded("results journal", self.path, self._KEPT, lambda: self._write(record), self._stop)

    _KEPT = ("journaling is off for the rest of this run (a crash would now lose what it measured); "
             "the measurements go on and are kept in the run's JSON")

    def _write(self, record: dict[str, Any]) -> None:
        self._open()
        self._append(record)

    def _stop(self, message: str) -> None:
        self.problem = message
        self._release()
        if self._on_problem is not None:
            self._on_problem(message)

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self, complete: bool = True) -> None:
        if self._fd is not None and complete and self.problem is None:
            self.write({"type": "end"})
        self._release()


def read(path: Path) -> dict[str, Any]:
    """Parse a journal; a last line cut off by a crash is ignored."""
    header: dict[str, Any] = {}
    benchmarks: list[dict[str, Any]] = []
    outcomes: list[dict[str, Any]] = []
    scenarios: list[dict[str, Any]] = []
    complete = False
    lines = Path(path).read_text(encoding=storage.ENCODING, errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the write the crash interrupted
            raise ValueError(f"{path}:{number}: not a JSON line") from None
        kind = record.pop("type", None)
        if kind == "header":
            header = record
        elif kind == "benchmark":
            benchmarks.append(record["benchmark"])
        elif kind == "outcome":
            outcomes.append(record["outcome"])
        elif kind == "scenario":
            scenarios.append(record["scenario"])
        elif kind == "end":
            complete = True
    return {"header": header, "benchmarks": benchmarks, "outcomes": outcomes, "scenarios": scenarios,
            "complete": complete}


def to_pytest_benchmark(path: Path, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pytest-benchmark JSON document from a journal (``content``: what ``read`` gave, if read already)."""
    content = read(path) if content is None else content
    header = content["header"]
    dense = dict(header.get("densebench") or {})
    dense["outcomes"] = content["outcomes"]
    if content.get("scenarios"):
        dense["scenarios"] = content["scenarios"]
    dense["recovered_from"] = str(path)
    dense["complete"] = content["complete"]
    derived.fill(dense, content["benchmarks"])  # best, offline, setup_s... from what the journal holds
    return {"machine_info": header.get("machine_info") or {}, "commit_info": header.get("commit_info") or {},
            "benchmarks": content["benchmarks"], "datetime": header.get("datetime"),
            "version": pytest_benchmark.__version__, "densebench": dense}


def recover(path: Path, out: Path, content: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = to_pytest_benchmark(path, content)
    atomic_write_text(out, json.dumps(doc, indent=2, default=str))
    return doc


_END = (json.dumps({"type": "end"}) + "\n").encode()


def _ends_complete(path: Path) -> bool:
    """Whether the journal's last line is the end marker, read from its tail only.

    Every run looks at every journal in its output directory; finished ones (the usual case,
    raw timings and all) need not be parsed again.
    """
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size < len(_END):
                return False
            fh.seek(size - len(_END))
            return fh.read() == _END
    except OSError:
        return False


def recover_unfinished(directory: Path, skip: Path | None = None) -> list[Path]:
    """Recover every journal in ``directory`` that has no end marker (a crashed or killed run)."""
    written = []
    if not directory.is_dir():
        return written
    for journal in sorted(directory.glob("journal-*.jsonl")):
        if skip is not None and journal.resolve() == skip.resolve():
            continue
        target = journal.with_name(journal.name.replace("journal-", "recovered-").replace(".jsonl", ".json"))
        if target.exists() or _ends_complete(journal):
            continue
        try:
            content = read(journal)
        except (OSError, ValueError):
            continue
        if content["complete"] or not content["benchmarks"]:
            continue
        kept = f"the journal {journal} is kept; recover it later with 'densebench recover {journal} -o FILE'"
        if storage.guarded("recovered JSON", target, kept, functools.partial(recover, journal, target, content)):
            written.append(target)
    return written
