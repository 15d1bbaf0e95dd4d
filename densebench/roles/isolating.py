"""The isolating parent (``--densebench-isolate``): each optimization runs in a child process.

The first test of an optimization starts a child pytest (see isolate.py) that builds and
measures it at every batch size; this process adopts what the child journaled and turns a
child that died into outcomes (crashed, timeout, oom) for the batch sizes it did not finish.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .. import _pytest_benchmark as pb
from .. import isolate, storage
from ..measure import Measurement
from ..parallel import WorkerBenchmark
from ..records import Outcome, ScenarioOutcome, Status
from ..scenarios import progress_batch
from ..settings import Settings
from .base import Measurer


class IsolatingParent(Measurer):
    name = "isolating"

    def __init__(self, config: pytest.Config, settings: Settings, worker: str | None = None,
                 pinning: dict[str, Any] | None = None):
        super().__init__(config, settings, worker)
        self.pinning = pinning
        self.children: dict[str, isolate.ChildRun] = {}

    def optimized(self, optimization: str, batch_size: int) -> None:
        return None  # built in a child process, see measure

    def _child(self, request: pytest.FixtureRequest, optimization: str, batch_size: int) -> isolate.ChildRun:
        child = self.children.get(optimization)
        if child is None:
            where = self.settings.output / "isolated" / self.run_name
            self.progress.stage(optimization, batch_size, "starting child process")
            try:
                child = self.children[optimization] = isolate.run_child(
                    self.config, self.settings, request.node.path, optimization, where,
                    on_progress=self.progress.child_line, on_poll=self.progress.tick)
            except OSError as exc:  # no folder for the child's log and journal: it cannot start, nothing is lost
                message = storage.describe("isolated child's log and journal", where, exc,
                                           f"{optimization} was not started; choose another --densebench-output")
                self.note(Outcome(optimization=optimization, batch_size=batch_size, status=Status.FAILED,
                                  reason=message))
                pytest.fail(message, pytrace=False)
            self.merge_outcomes(list(child.outcomes.values()))
            self.merge_scenarios(list(child.scenarios.values()))
        return child

    def measure(self, request: pytest.FixtureRequest, benchmark: Any, optimized: Any, optimization: str,
                batch_size: int) -> Measurement:
        """What the child measured at ``batch_size``; its skip or failure; or how it died."""
        child = self._child(request, optimization, batch_size)
        return self._result(benchmark, child, child.benchmarks.get(batch_size), child.outcomes.get(batch_size),
                            {"optimization": optimization, "batch_size": batch_size},
                            lambda status, message: self.note(Outcome(optimization=optimization, batch_size=batch_size,
                                                                      status=status, reason=message)))

    def measure_scenario(self, request: pytest.FixtureRequest, benchmark: Any, optimization: str,
                         scenario: str) -> Measurement:
        """What the child measured in ``scenario``; its skip or failure; or how it died."""
        child = self._child(request, optimization, progress_batch(self.settings))
        return self._result(benchmark, child, child.scenario_benchmarks.get(scenario), child.scenarios.get(scenario),
                            {"optimization": optimization},
                            lambda status, message: self.note_scenario(ScenarioOutcome(
                                optimization=optimization, scenario=scenario, status=status, reason=message)))

    def _result(self, benchmark: Any, child: isolate.ChildRun, bench: dict[str, Any] | None,
                outcome: dict[str, Any] | None, what: dict[str, Any],
                note: Callable[[Status, str], None]) -> Measurement:
        """One test's result from its child: the benchmark it journaled (adopted); its skip or failure; or, when
        the child died before it, how it died (``note(status, message)`` records that)."""
        pb.mark_used(benchmark, "isolated: measured in a child process")
        if bench is not None:
            self.adopt([WorkerBenchmark(bench)])
            return Measurement(bench["extra_info"])
        if outcome is not None and outcome["status"] in (Status.SKIPPED, Status.OOM):
            pytest.skip(outcome["reason"])
        if outcome is not None and outcome["status"] in (Status.FAILED, Status.PARITY_FAILED):
            pytest.fail(outcome["reason"], pytrace=False)
        if outcome is not None and outcome["status"] == Status.MEASURED:
            # --benchmark-disable: the child ran the step once, untimed, and checked parity; nothing to save
            return Measurement({**what, "parity": {"passed": True, "failures": []}})
        status, message = child.failure()
        note(status, message)
        if status == Status.OOM:
            pytest.skip(message)
        pytest.fail(message, pytrace=False)

    def run_fields(self, info: dict[str, Any]) -> None:
        if self.children:
            first = next(iter(self.children.values())).run_info
            for key in ("device", "device_name", "weights", "dataset", "calibration"):
                if key in first:
                    info[key] = first[key]
            info["isolated"] = {opt: {"returncode": c.returncode, "timed_out": c.timed_out,
                                      "elapsed_s": c.elapsed_s, "log": str(c.log)}
                                for opt, c in self.children.items()}
        if self.pinning is not None:
            info["worker"] = self.pinning
