"""The plain run: densebench's tests build and measure each optimization in this process."""

from __future__ import annotations

from typing import Any

import pytest

from .. import _pytest_benchmark as pb
from .. import profiling
from ..errors import BuildFailed, InputError, OutOfMemory, Unavailable
from ..measure import Context, Measurement, recompile_error
from ..measure import measure as measure_one
from ..records import Outcome, ScenarioOutcome, Status
from ..resources import Resources, Runners, first_line, is_oom
from ..scenarios import progress_batch, scenario_key
from ..settings import Settings
from .base import Measurer


class LocalRun(Measurer):
    """Measures in this process. ``pinning`` is this xdist worker's assignment (as a dict), if any."""

    name = "local"

    def __init__(self, config: pytest.Config, settings: Settings, worker: str | None = None,
                 pinning: dict[str, Any] | None = None):
        super().__init__(config, settings, worker)
        self.resources = Resources(settings)
        self.runners = Runners(self.resources)
        self.pinning = pinning
        scalars = profiling.Scalars(settings.output, self.run_name) if settings.tensorboard else None
        self.context = Context(self.resources, self.run_name, scalars, pinning, stage=self._stage)

    def _stage(self, optimization: str, batch_size: int, what: str) -> None:
        self.progress.stage(optimization, batch_size, what)

    def session_fixture(self) -> LocalRun:
        """Loads weights, data and the baseline now. Unusable weights or data end the whole run at
        once (exit status 4, like a usage error): every benchmark would fail the same way."""
        self.progress.waiting("loading the model, data and baseline")
        try:
            self.resources.prepare()
        except InputError as exc:
            pytest.exit(f"densebench: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
        return self

    def optimized(self, optimization: str, batch_size: int) -> Any:
        """The built Runner; skipped with the reason when it cannot run here, failed when it cannot build."""
        if self.runners.current != optimization:
            self.progress.stage(optimization, batch_size, "building")
        try:
            return self.runners.get(optimization, batch_size)
        except Unavailable as exc:
            self.note(Outcome(optimization=optimization, batch_size=batch_size, status=Status.SKIPPED, reason=str(exc)))
            pytest.skip(f"{optimization}: {exc}")
        except OutOfMemory as exc:
            self.note(Outcome(optimization=optimization, batch_size=batch_size, status=Status.OOM, reason=str(exc)))
            pytest.skip(str(exc))
        except BuildFailed as exc:
            self.note(Outcome(optimization=optimization, batch_size=batch_size, status=Status.FAILED, reason=str(exc)))
            pytest.fail(str(exc), pytrace=False)

    def measure(self, request: pytest.FixtureRequest, benchmark: Any, optimized: Any, optimization: str,
                batch_size: int) -> Measurement:
        """Measure; out of memory becomes a skip, compilation inside the timed rounds a failure."""
        try:
            result = measure_one(self.context, benchmark, optimized, batch_size, self.runners.first_use())
        except OutOfMemory as exc:
            self.note(Outcome(optimization=optimization, batch_size=batch_size, status=Status.OOM, reason=str(exc)))
            pytest.skip(str(exc))
        stats = getattr(benchmark, "stats", None)
        if stats is not None:
            self.journal_benchmark_data(stats.as_dict(include_data=True))
        self.note(result.outcome())
        problem = recompile_error(result)
        if problem:
            raise AssertionError(problem)
        return result

    def measure_scenario(self, request: pytest.FixtureRequest, benchmark: Any, optimization: str,
                         scenario: str) -> Measurement:
        """Serve ``optimization`` in ``scenario``: skipped when it or LoadGen cannot run here, failed when it
        cannot build; the per-query latencies become the benchmark's rounds."""
        from ..scenarios import harness  # LoadGen and the batcher: only for scenario runs
        from ..scenarios.measure import measure_scenario

        batch_size = progress_batch(self.settings)
        try:
            harness.loadgen()  # before building anything
            if self.runners.current != optimization:
                self.progress.stage(scenario_key(optimization, scenario), batch_size, "building")
            runner = self.runners.get(optimization, batch_size)
            info = measure_scenario(self.context, runner, scenario)
        except (Unavailable, OutOfMemory) as exc:
            self._scenario_problem(optimization, scenario, Status.SKIPPED if isinstance(exc, Unavailable)
                                   else Status.OOM, str(exc))
            pytest.skip(f"{optimization} [{scenario}]: {exc}")
        except BuildFailed as exc:
            self._scenario_problem(optimization, scenario, Status.FAILED, str(exc))
            pytest.fail(str(exc), pytrace=False)
        except Exception as exc:  # noted, so the run record and the isolated parent say what happened
            if is_oom(exc):
                self.resources.free_device_memory()
                message = f"out of memory: {optimization} in the {scenario} scenario: {first_line(exc)}"
                self._scenario_problem(optimization, scenario, Status.OOM, message)
                pytest.skip(message)
            self._scenario_problem(optimization, scenario, Status.FAILED, f"{type(exc).__name__}: {first_line(exc)}")
            raise
        benchmark.group = f"scenario={scenario}"  # before the rounds: pytest-benchmark copies it then
        pb.record_rounds(benchmark, info["scenario"].pop("rounds_s"), f"densebench scenario {scenario}")
        benchmark.extra_info.update(info)
        stats = getattr(benchmark, "stats", None)
        if stats is not None:
            self.journal_benchmark_data(stats.as_dict(include_data=True))
        result = Measurement(benchmark.extra_info)
        self.note_scenario(result.scenario_outcome())
        return result

    def _scenario_problem(self, optimization: str, scenario: str, status: Status, reason: str) -> None:
        self.note_scenario(ScenarioOutcome(optimization=optimization, scenario=scenario, status=status,
                                           reason=reason))

    def finish(self) -> None:
        """Release the last runner (its memory is measured like the others')."""
        self.runners.release()

    def close(self) -> None:
        super().close()
        if self.context.scalars is not None:
            self.context.scalars.close()

    def run_fields(self, info: dict[str, Any]) -> None:
        if self.context.scalars is not None:
            info["tensorboard_logdir"] = str(self.context.scalars.dir)
        info.update(self.resources.loaded())
        if self.pinning is not None:
            info["worker"] = self.pinning
        if self.runners.memory_trace:
            info["memory_trace"] = self.runners.memory_trace
