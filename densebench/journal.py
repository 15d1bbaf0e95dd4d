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

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest_benchmark


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it 0600; the result should read like any other file
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class Journal:
    """Append-only JSON lines, each fsync'd before ``write`` returns."""

    def __init__(self, path: Path, header: Any = None):
        self.path = Path(path)
        self._header = header  # dict, or a callable giving it, written before the first record
        self._fd: int | None = None

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
        self._open()
        self._append(record)

    def close(self, complete: bool = True) -> None:
        if self._fd is not None:
            if complete:
                self._append({"type": "end"})
            os.close(self._fd)
            self._fd = None


def read(path: Path) -> dict[str, Any]:
    """Parse a journal; a last line cut off by a crash is ignored."""
    header: dict[str, Any] = {}
    benchmarks: list[dict[str, Any]] = []
    outcomes: list[dict[str, Any]] = []
    complete = False
    lines = Path(path).read_text().splitlines()
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
        elif kind == "end":
            complete = True
    return {"header": header, "benchmarks": benchmarks, "outcomes": outcomes, "complete": complete}


def to_pytest_benchmark(path: Path, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pytest-benchmark JSON document from a journal (``content``: what ``read`` gave, if read already)."""
    content = read(path) if content is None else content
    header = content["header"]
    dense = dict(header.get("densebench") or {})
    dense["outcomes"] = content["outcomes"]
    dense["recovered_from"] = str(path)
    dense["complete"] = content["complete"]
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
        recover(journal, target, content)
        written.append(target)
    return written
