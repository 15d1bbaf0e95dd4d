"""The xdist controller (``pytest -n N``): runs no test; schedules by optimization, gathers the workers.

Each pinned worker hands its benchmarks and run record over xdist's ``workeroutput``; the
controller adds them to pytest-benchmark's results, so ONE JSON is written, and to its journal.
"""

from __future__ import annotations

from typing import Any

import pytest

from .. import _pytest_benchmark as pb
from .. import parallel
from ..settings import Settings
from .base import Role


class XdistController(Role):
    name = "xdist-controller"

    def __init__(self, config: pytest.Config, settings: Settings, workers: int):
        super().__init__(config, settings)
        self.assignments = [parallel.assign(settings.device, workers, i) for i in range(workers)]
        first = self.assignments[0]
        self.parallel = {"workers": workers, "pinned": first.pinned, "reason": first.reason,
                         "assignments": [a.as_dict() for a in self.assignments] if first.pinned else []}
        self.workers: list[dict[str, Any]] = []  # each worker's run record

    def attach(self) -> None:
        super().attach()
        if self.parallel["pinned"]:
            pb.enable_on_controller(self.config)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """Under plain ``--dist load`` send all of an optimization's tests to one worker, so each
        optimization is built once."""
        if getattr(config.option, "dist", None) != "load":
            return None
        return parallel.by_optimization_scheduler(config, log)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Take a worker's benchmarks into this session's results, and its outcomes and record."""
        payload = getattr(node, "workeroutput", {}).get("densebench")
        if payload:
            self.take(payload)

    def take(self, payload: str) -> None:
        benchmarks, run_info = parallel.load(payload)
        self.adopt(benchmarks)
        self.workers.append(run_info)
        self.merge_outcomes(run_info.get("outcomes", []))
        self.merge_scenarios(run_info.get("scenarios", []))

    def run_fields(self, info: dict[str, Any]) -> None:
        if self.workers:
            info["workers"] = [{k: w.get(k) for k in ("worker", "device", "device_name", "weights", "dataset")}
                               for w in self.workers]
            for key in ("device", "device_name", "weights", "dataset", "calibration"):
                if key in self.workers[0]:
                    info[key] = self.workers[0][key]
            # the controller collects nothing: what the run planned is what its workers collected
            planned = [c for w in self.workers for c in w.get("planned") or []]
            info["planned"] = list({(c["optimization"], c["batch_size"]): c for c in planned}.values())
        info["parallel"] = self.parallel

    def summary_preamble(self, terminalreporter: Any) -> None:
        if not self.parallel["pinned"]:
            terminalreporter.write_line(f"densebench: benchmarks are off in this parallel run: "
                                        f"{self.parallel['reason']}; run one worker per GPU "
                                        "(-n <GPUs> --densebench-device cuda) or per CPU core slice")
