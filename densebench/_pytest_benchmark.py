"""The one adapter over pytest-benchmark's internals.

pytest-benchmark has public hooks for what goes into its JSON (``pytest_benchmark_update_json``,
``pytest_benchmark_update_machine_info``), and densebench uses those directly. For the rest it
has none, so everything densebench needs from its private session object lives here, and
nowhere else in the package:

- the session itself (``config._benchmarksession``, created by its trylast ``pytest_configure``);
- benchmarks measured in another process (an xdist worker, an isolated child) added to its list;
- its final JSON written atomically (``save_json`` replaced: a crash mid-write must not leave
  half a file where the previous good one was);
- its autosave (``storage.save``) made non-fatal: a storage it cannot write (``./.benchmarks`` in a
  directory the user cannot write) becomes a warning, after the JSON and journal are safe;
- an xdist worker kept from saving or comparing (the controller does both, once);
- benchmarks kept on for densebench's own pinned xdist tests only, while pytest-benchmark's
  rule ("off under xdist") stays in force for every other test;
- the percentage threshold of ``--benchmark-compare-fail`` (the run's gate), from its parsed checks;
- a fixture marked as used when the measurement happened in a child process (``_mode``),
  so pytest-benchmark does not warn that it was never used;
- rounds densebench timed itself (a serving scenario's per-query latencies) given to a fixture as
  its stats (``_make_stats``).

Checked against pytest-benchmark 4.0.0, 5.2.3 and 5.3.1 (:data:`CHECKED_VERSIONS`). ``tests/test_inert.py``
fails when an attribute listed in :data:`SESSION_ATTRIBUTES`, :data:`FIXTURE_ATTRIBUTES` or :data:`CHECK_ATTRIBUTES`
disappears from the installed release.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from pytest_benchmark.session import BenchmarkSession
from pytest_benchmark.stats import Stats
from pytest_benchmark.utils import PercentageRegressionCheck, safe_dumps

from . import terminal

CHECKED_VERSIONS = ("4.0.0", "5.2.3", "5.3.1")

# Attributes of pytest_benchmark.session.BenchmarkSession this module reads or writes.
SESSION_ATTRIBUTES = ("benchmarks", "json", "save", "autosave", "compare", "compare_fail", "compared_mapping",
                      "disabled", "skip", "logger", "save_json", "get_machine_info", "storage")
# Attributes of pytest_benchmark.fixture.BenchmarkFixture this module writes.
FIXTURE_ATTRIBUTES = ("_mode", "_make_stats", "disabled")
# Attributes of pytest_benchmark.utils.PercentageRegressionCheck (a --benchmark-compare-fail EXPR) this module reads.
CHECK_ATTRIBUTES = ("field", "threshold")


def session(config: pytest.Config) -> BenchmarkSession | None:
    """pytest-benchmark's session object, or None before its ``pytest_configure`` ran (or without it)."""
    return getattr(config, "_benchmarksession", None)


def machine_info(config: pytest.Config) -> Callable[[], dict[str, Any]] | None:
    """A callable giving pytest-benchmark's ``machine_info`` (with every plugin's updates), or None."""
    bs = session(config)
    return bs.get_machine_info if bs is not None else None


def add_benchmarks(config: pytest.Config, benchmarks: list[Any]) -> None:
    """Benchmarks measured elsewhere (objects with ``as_dict``, see parallel.WorkerBenchmark): saved,
    shown and compared like this process's own."""
    bs = session(config)
    if bs is not None:
        bs.benchmarks.extend(benchmarks)


def write_json_atomically(config: pytest.Config, write_text: Callable[[Path, str], Path | None]) -> None:
    """Make pytest-benchmark write its ``--benchmark-json`` file with ``write_text(path, text)``, which
    returns the path written, or None when it could not write (and said so)."""
    bs = session(config)
    if bs is None:
        return
    def save_json(output_json: dict[str, Any]) -> None:
        target = bs.json  # a Path from 5.3 on; before, a file argparse opened ('wb') when parsing options
        path = Path(target) if isinstance(target, (str, os.PathLike)) else Path(target.name)
        written = write_text(path, safe_dumps(output_json, ensure_ascii=True, indent=4))
        if hasattr(target, "close"):
            target.close()
        if written is not None:
            bs.logger.info(f"Wrote benchmark data in: {path}", purple=True)

    bs.save_json = save_json  # type: ignore[method-assign]


def tolerate_storage_failure(config: pytest.Config) -> None:
    """Make a failing ``--benchmark-autosave``/``--benchmark-save`` a warning instead of a traceback.

    pytest-benchmark saves to its storage (``./.benchmarks`` by default) at session finish, after the
    ``--benchmark-json`` file, but before any other plugin's ``pytest_sessionfinish``: an ``OSError``
    there (a working directory the user cannot write, a full disk) would end the run with exit status 1
    and leave densebench's journal unfinished although every result is already saved elsewhere.
    """
    bs = session(config)
    storage = getattr(bs, "storage", None)
    if storage is None or not hasattr(storage, "save"):
        return
    save = storage.save

    def save_or_warn(output_json: dict[str, Any], name: str) -> None:
        try:
            save(output_json, name)
        except OSError as exc:
            # Written to the terminal, not through warnings: -W error must not turn it back into a failure.
            terminal.write_line(config, f"WARNING densebench: pytest-benchmark could not autosave into its storage "
                                f"{storage} ({exc.strerror or exc}); the results are in the --benchmark-json file and "
                                "the densebench journal. Point --benchmark-storage=file://DIR at a writable directory "
                                "to keep a baseline for --benchmark-compare.", yellow=True)

    storage.save = save_or_warn


def compare_fail_percentage(config: pytest.Config) -> tuple[float, str] | None:
    """The strictest percentage check of ``--benchmark-compare-fail`` as (fraction, EXPR): ``median:10%``
    gives ``(0.1, 'median:10%')``; None without one (an absolute check in seconds has no percentage)."""
    checks = [c for c in getattr(session(config), "compare_fail", None) or []
              if isinstance(c, PercentageRegressionCheck)]
    if not checks:
        return None
    strictest = min(checks, key=lambda c: c.threshold)
    return strictest.threshold / 100, f"{strictest.field}:{strictest.threshold:g}%"


def saved_json(config: pytest.Config) -> tuple[bool, Path | None]:
    """(whether pytest-benchmark will save results at all, the ``--benchmark-json`` path or None)."""
    bs = session(config)
    if bs is None:
        return False, None
    target = bs.json
    path = None if target is None else Path(target) if isinstance(target, (str, os.PathLike)) else Path(target.name)
    return bool(path is not None or bs.save or bs.autosave), path


def benchmarks_wanted(config: pytest.Config) -> bool:
    """False when the user switched benchmarks off (--benchmark-skip, or --benchmark-disable without -enable)."""
    bs = session(config)
    if bs is None or bs.skip:
        return False
    return not (config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"))


def stop_saving(config: pytest.Config) -> None:
    """On an xdist worker: never write JSON, autosave or compare here (the controller does, once)."""
    bs = session(config)
    if bs is None:
        return
    bs.json = None
    bs.save = bs.autosave = False
    bs.compare = bs.compare_fail = None
    bs.compared_mapping = {}


def enable_on_controller(config: pytest.Config) -> None:
    """On a pinned xdist controller: let pytest-benchmark save and show what the workers measured.

    The controller runs no test, so this changes no other test's benchmark."""
    bs = session(config)
    if bs is not None and benchmarks_wanted(config):
        bs.disabled = False


@contextlib.contextmanager
def enabled_for_setup(config: pytest.Config) -> Iterator[None]:
    """Benchmarks on while one test's fixtures are set up (its ``benchmark`` fixture reads the flag
    then), and pytest-benchmark's own setting restored right after: used for densebench's tests on
    a pinned xdist worker, where pytest-benchmark switched itself off for every test."""
    bs = session(config)
    if bs is None or not benchmarks_wanted(config):
        yield
        return
    before = bs.disabled
    bs.disabled = False
    try:
        yield
    finally:
        bs.disabled = before


def record_rounds(benchmark: BenchmarkFixture, rounds_s: list[float], how: str) -> None:
    """Give the fixture rounds densebench timed itself (a serving scenario's per-query latencies, seconds), as
    if pytest-benchmark had timed them: its stats, table, JSON and ``compare`` treat them like any others.
    Nothing is recorded with --benchmark-disable or without rounds (the fixture is still marked used)."""
    benchmark._mode = how
    if benchmark.disabled or not rounds_s:
        return
    stats = benchmark._make_stats(1)
    for duration in rounds_s:
        stats.update(duration)


def mark_used(benchmark: BenchmarkFixture, how: str) -> None:
    """Tell pytest-benchmark the fixture was used (the timing happened in a child process)."""
    benchmark._mode = how


def missing_attributes() -> list[str]:
    """Attributes this adapter relies on that the installed pytest-benchmark lacks (empty when all is well).

    Checked on the real classes with a minimal config, without running a session."""
    def known(cls: type) -> set[str]:
        """Class attributes, and the attribute names its methods' code assigns or reads (self.X)."""
        names = set(dir(cls))
        for member in vars(cls).values():
            code = getattr(member, "__code__", None)
            if code is not None:
                names |= set(code.co_names)
        return names

    session_names, fixture_names = known(BenchmarkSession), known(BenchmarkFixture)
    check_names = known(PercentageRegressionCheck) | {n for base in PercentageRegressionCheck.__mro__[1:]
                                                      for n in known(base)}
    return ([f"BenchmarkSession.{n}" for n in SESSION_ATTRIBUTES if n not in session_names]
            + [f"BenchmarkFixture.{n}" for n in FIXTURE_ATTRIBUTES if n not in fixture_names]
            + [f"PercentageRegressionCheck.{n}" for n in CHECK_ATTRIBUTES if n not in check_names])


def stats_json(times: list[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` of these round times (seconds), as its JSON writes them (without ``data``)."""
    stats = Stats()
    for t in times:
        stats.update(t)
    return stats.as_dict()


def version() -> str:
    """The installed pytest-benchmark's version (the JSON's ``version`` field)."""
    return importlib.metadata.version("pytest-benchmark")
