"""What every densebench role shares: its settings, the run's outcomes and journal, the run record.

A role is a pytest plugin object, registered once densebench is in use (see roles/__init__.py).
Its hooks are the densebench part of the run: the header line, the journal and atomic JSON,
the ``densebench`` object in the saved JSON and the terminal summary. Subclasses add their own
hooks and say what they add to the run record in :meth:`Role.run_fields`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .. import __version__, derived, noise, profiling, storage, summary, telemetry, terminal
from .. import _pytest_benchmark as pb
from .. import journal as journal_mod
from ..progress import Progress
from ..records import Outcome, RunRecord, ScenarioOutcome
from ..scenarios import progress_batch, scenario_key
from ..settings import Settings


class Role:
    """Base of the role objects. ``worker`` names this process's xdist worker ('gw0'), if any."""

    name = "role"

    def __init__(self, config: pytest.Config, settings: Settings, worker: str | None = None):
        self.config = config
        self.settings = settings
        self.run_name = profiling.run_name()
        self.outcomes: list[Outcome] = []
        self.scenario_outcomes: list[ScenarioOutcome] = []  # --densebench-scenarios: optimization x scenario
        self.recovered: list[str] = []  # unfinished journals of earlier runs, recovered at start
        self.storage_problems: list[str] = []  # files that could not be written (storage.py), in order
        self.planned: list[dict[str, Any]] = []  # the collected configurations (optimization, batch_size)
        self._worker = worker
        self._header_shown = False
        self._collected = False  # densebench items were collected here (planned is then written, even empty)
        self._attached = False
        self.progress = Progress.off()  # the run's, once collection says how many configurations there are
        self.saved_doc: dict[str, Any] | None = None  # the JSON as saved, for --densebench-store
        self.journal: journal_mod.Journal | None = None
        if settings.journal != "off":
            name = f"journal-{self.run_name}" + (f"-{worker}" if worker else "") + ".jsonl"
            path = Path(settings.journal) if settings.journal != "auto" else settings.output / "journals" / name
            self.journal = journal_mod.Journal(path, header=self.journal_header,
                                               on_problem=self.storage_problems.append)
        # Inductor's caches under the output directory, set before anything asks Inductor where they are
        # (it fixes the location on first use): a second run with the same output reuses them.
        # Restored at close, so an in-process pytest run (pytester) leaves its caller's environment as it was.
        self._set_inductor_cache = "TORCHINDUCTOR_CACHE_DIR" not in os.environ
        if self._set_inductor_cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str((settings.output / "cache" / "inductor").resolve())

    # ------------------------------------------------------------ start

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.attach()

    def attach(self) -> None:
        """Once pytest-benchmark's session exists: atomic JSON, and recovery of crashed runs' journals."""
        if self._attached:
            return
        self._attached = True
        pb.write_json_atomically(self.config, self._write_results)
        pb.tolerate_storage_failure(self.config)
        if self._worker is None and self.settings.journal == "auto" and self.journal is not None:
            recovered = journal_mod.recover_unfinished(self.journal.path.parent, skip=self.journal.path)
            self.recovered = [str(p) for p in recovered]
        if self.settings.store and self._worker is None and not pb.saved_json(self.config)[0]:
            self.say("WARNING: --densebench-store stores the saved results, and this run saves none: add "
                     "--benchmark-json=PATH or --benchmark-autosave (densebench run does both)")

    def say(self, line: str) -> None:
        """A line on the terminal (stderr when there is no terminal reporter)."""
        terminal.write_line(self.config, f"densebench: {line}", stderr_fallback=True)

    def _write_results(self, path: Path, text: str) -> Path | None:
        """pytest-benchmark's JSON, atomically; a failed write is a warning that says where the results are."""
        kept = (f"every result is in the journal {self.journal.path}: 'densebench recover {self.journal.path} -o FILE' "
                "writes the JSON" if self.journal is not None and self.journal.problem is None
                else "the terminal summary is all that is left of this run")
        return storage.guarded("results JSON", path, kept, lambda: journal_mod.atomic_write_text(path, text),
                               self.storage_problems.append)

    def header_line(self) -> str:
        s = self.settings
        return (f"densebench: device={s.device} optimizations={','.join(s.optimizations)} "
                f"batch_sizes={','.join(map(str, s.batch_sizes))} image_size={s.image_size} weights={s.weights} "
                f"dataset={s.dataset}")

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        self._header_shown = True
        return [self.header_line()]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The header, if densebench was activated during collection; progress for what was collected."""
        if not self._header_shown:
            self._header_shown = terminal.write_line(session.config, self.header_line())
        ours = [item for item in session.items
                if {"optimized", "densebench_scenario"} & set(getattr(item, "fixturenames", ()))]
        self.planned = [{"optimization": p["optimization"], "batch_size": p["batch_size"]}
                        for p in (getattr(getattr(item, "callspec", None), "params", {}) for item in ours)
                        if "optimization" in p and "batch_size" in p]
        self._collected = bool(ours)
        self.progress.close()
        self.progress = Progress(session.config, len(ours))

    # ------------------------------------------------------------ outcomes and journal

    def note(self, outcome: Outcome) -> None:
        self.progress.finished(outcome.optimization, outcome.batch_size, outcome.status, outcome.reason)
        self.outcomes.append(outcome)
        if self.journal is not None:
            self.journal.write({"type": "outcome", "outcome": outcome.to_json()})

    def note_scenario(self, outcome: ScenarioOutcome) -> None:
        """A serving scenario's outcome (one optimization x one scenario), shown and journaled."""
        key = scenario_key(outcome.optimization, outcome.scenario)
        self.progress.finished(key, progress_batch(self.settings), outcome.status, outcome.reason)
        self.scenario_outcomes.append(outcome)
        if self.journal is not None:
            self.journal.write({"type": "scenario", "scenario": outcome.to_json()})

    def merge_scenarios(self, outcomes: list[dict[str, Any]]) -> None:
        """Scenario outcomes from another process (xdist worker, isolated child)."""
        for o in outcomes:
            self.note_scenario(ScenarioOutcome.from_json(o))

    def merge_outcomes(self, outcomes: list[dict[str, Any]]) -> None:
        """Outcomes from another process (xdist worker, isolated child), noted and journaled here."""
        for o in outcomes:
            self.note(Outcome.from_json(o))

    def journal_benchmark_data(self, data: dict[str, Any]) -> None:
        """One finished benchmark as pytest-benchmark saves it (raw timings included)."""
        if self.journal is not None:
            self.journal.write({"type": "benchmark", "benchmark": data})

    def adopt(self, benchmarks: list[Any]) -> None:
        """Benchmarks measured in another process (parallel.WorkerBenchmark): into pytest-benchmark's
        results and this run's journal."""
        pb.add_benchmarks(self.config, benchmarks)
        for bench in benchmarks:
            self.journal_benchmark_data(bench.data)

    def journal_header(self) -> dict[str, Any]:
        """The journal's first line: what recovery needs to rebuild a pytest-benchmark JSON."""
        machine = pb.machine_info(self.config)
        commit = self.config.hook.pytest_benchmark_generate_commit_info(config=self.config)
        return {"datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "machine_info": machine() if machine else {}, "commit_info": commit or {},
                "densebench": self.run_info()}

    # ------------------------------------------------------------ end

    def finish(self) -> None:
        """All benchmarks ran (called before the JSON is written)."""

    def close(self) -> None:
        """End of the session: close the journal as complete."""
        self.finish()
        self.progress.close()
        if self.journal is not None:
            self.journal.close(complete=True)
        if self.settings.store and self.saved_doc is not None:
            from ..store import session as store_session  # optional: only with --densebench-store

            path = pb.saved_json(self.config)[1] or Path(".benchmarks")  # autosave only
            self.say(store_session.write_run(self.settings.store, self.saved_doc, path))
            self.saved_doc = None
        if self._set_inductor_cache:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            self._set_inductor_cache = False

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.close()

    def pytest_benchmark_update_machine_info(self, config: pytest.Config, machine_info: dict[str, Any]) -> None:
        machine_info.update(telemetry.machine_info())

    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
        self.finish()
        output_json["densebench"] = self.run_info()
        if self.saved_doc is None:  # --benchmark-json first (with every round), then the autosave
            self.saved_doc = output_json

    # ------------------------------------------------------------ run record

    def run_fields(self, info: dict[str, Any]) -> None:
        """Add this role's fields to the run record (subclasses)."""

    def run_record(self) -> RunRecord:
        """The top-level ``densebench`` object of the saved JSON, typed."""
        outcomes = [o.to_json() for o in self.outcomes]
        info: dict[str, Any] = {"version": __version__, "run": self.run_name, "settings": self.settings.as_dict(),
                                "outcomes": outcomes}
        if self.scenario_outcomes:
            info["scenarios"] = [o.to_json() for o in self.scenario_outcomes]
        self.run_fields(info)
        if self.journal is not None:
            info["journal"] = str(self.journal.path)
        if self.recovered:
            info["recovered_journals"] = self.recovered
        if self.storage_problems:
            info["storage_problems"] = list(self.storage_problems)
        if self.planned or self._collected:
            info["planned"] = self.planned
        derived.fill(info)
        return RunRecord.from_json(info)

    def run_info(self) -> dict[str, Any]:
        """The run record as JSON (see :meth:`run_record`)."""
        return self.run_record().to_json()

    @pytest.hookimpl(wrapper=True)
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int,
                                config: pytest.Config) -> Generator[None, None, None]:
        """densebench's summary after every other plugin's, also when one of them raises: pytest-benchmark's
        failing ``--benchmark-compare-fail`` gate raises in this hook, and that is the run whose noise line
        and summary matter most."""
        try:
            return (yield)
        finally:
            self.write_summary(terminalreporter, config)

    def summary_preamble(self, terminalreporter: Any) -> None:
        """Lines a role writes before the summary (subclasses)."""

    def write_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        self.summary_preamble(terminalreporter)
        if not self.outcomes and not self.scenario_outcomes:
            return
        tr = terminalreporter
        tr.write_sep("-", "densebench summary")
        info = self.run_info()
        for key in ("weights", "dataset"):
            if key in info:
                tr.write_line(f"{key}: {info[key]['summary']}")
        if "device" in info:
            tr.write_line(f"device: {info['device']} ({info['device_name']})")
        for worker in info.get("workers", []):
            pin = worker.get("worker") or {}
            where = f"CPUs {pin['cpus']}" if pin.get("cpus") is not None else pin.get("device")
            tr.write_line(f"worker {pin.get('worker')}: {worker.get('device_name')} pinned to {where}")
        gated = pb.compare_fail_percentage(config)  # the run's own gate, else densebench compare's and ab's default
        gate = noise.Gate(gated[0], f"the --benchmark-compare-fail={gated[1]} gate") if gated else noise.DEFAULT_GATE
        for line in summary.terminal_lines(info["outcomes"], self.settings.latency_budget_ms, gate,
                                           self.settings.paired_target_ci if self.settings.paired_rounds >= 2 else 0.0):
            tr.write_line(line)
        for line in summary.scenario_lines(info.get("scenarios") or []):
            tr.write_line(line)
        for problem in info.get("storage_problems") or []:
            tr.write_line(problem)
        setup = info["setup_s"]
        tr.write_line(f"setup time (build + warm-up, untimed): {setup['total']:.1f} s "
                      f"(build {setup['build']:.1f} s, warm-up {setup['warmup']:.1f} s)")


class Measurer(Role):
    """A role whose process runs densebench's tests (plain run, isolating parent, either on a worker)."""

    def session_fixture(self) -> Measurer:
        """What the ``densebench_session`` fixture returns."""
        return self

    def optimized(self, optimization: str, batch_size: int) -> Any:
        """What the ``optimized`` fixture returns: a built Runner, or None when built elsewhere."""
        raise NotImplementedError

    def measure(self, request: pytest.FixtureRequest, benchmark: Any, optimized: Any, optimization: str,
                batch_size: int) -> Any:
        """Measure one configuration with ``benchmark``; returns a measure.Measurement."""
        raise NotImplementedError

    def measure_scenario(self, request: pytest.FixtureRequest, benchmark: Any, optimization: str,
                         scenario: str) -> Any:
        """Serve ``optimization`` in a LoadGen ``scenario`` with ``benchmark``; returns a measure.Measurement."""
        raise NotImplementedError
