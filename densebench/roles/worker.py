"""The xdist worker link: pins this worker, keeps benchmarks on for densebench's tests, hands results over.

Registered beside the worker's measuring role (a plain or isolating run with the worker's
device). pytest-benchmark switches itself off under xdist because benchmarks that share
hardware disturb each other; a worker pinned to its own GPU or CPU slice removes that reason,
so densebench's own tests get their benchmarks back while every other test keeps
pytest-benchmark's rule.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .. import _pytest_benchmark as pb
from .. import parallel
from .base import Measurer

DENSEBENCH_FIXTURES = ("densebench_measure", "densebench_scenario", "optimized", "densebench_session")


def is_densebench_item(item: pytest.Item) -> bool:
    return any(name in getattr(item, "fixturenames", ()) for name in DENSEBENCH_FIXTURES)


class XdistWorker:
    name = "xdist-worker"

    def __init__(self, config: pytest.Config, assignment: parallel.Assignment, measurer: Measurer):
        self.config = config
        self.assignment = assignment
        self.measurer = measurer
        if assignment.pinned:
            parallel.pin(assignment)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.attach()

    def attach(self) -> None:
        if self.assignment.pinned:
            pb.stop_saving(self.config)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        if self.assignment.pinned and is_densebench_item(item):
            with pb.enabled_for_setup(self.config):
                yield
        else:
            yield

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Before the measurer closes: its benchmarks and record go to the controller."""
        output = getattr(self.config, "workeroutput", None)
        bs = pb.session(self.config)
        if output is None or bs is None or not self.assignment.pinned:
            return  # unpinned: pytest-benchmark measured nothing here, as it decided
        benchmarks = list(bs.benchmarks)
        self.measurer.finish()
        output["densebench"] = parallel.export(benchmarks, self.measurer.run_info())


__all__ = ["XdistWorker", "is_densebench_item"]
