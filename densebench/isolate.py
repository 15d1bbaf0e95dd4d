"""``--densebench-isolate``: each optimization is built and benchmarked in a child process.

A backend that segfaults, hangs past ``--densebench-timeout`` or is killed for memory
takes its own child down, not the run. The parent starts one child per optimization
(all batch sizes), in its own process group, running the same suite with the same
settings; the child journals every finished benchmark, so what it measured before dying
is kept. The parent then turns the child's journal into this run's results, and records
a crash (with the signal), a timeout or an out-of-memory kill for the batch sizes the
child did not finish. Ctrl-C in the parent kills and reaps the child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import journal
from .profiling import safe_name
from .progress import PREFIX
from .records import Status
from .settings import OPTIONS, Settings, absolute_path, value_text

POLL_S = 0.5  # while a child runs: how often its log is read for progress lines

# pytest-benchmark options a child must share with its parent: the timing rules, and whether benchmarks
# run, are timed or profiled at all (--benchmark-disable/-enable/-skip/-only, cProfile). Saving,
# comparing and display stay with the parent, which writes the run's JSON.
_BENCHMARK_OPTIONS = ("min_rounds", "max_time", "min_time", "timer", "calibration_precision", "disable_gc",
                      "warmup", "warmup_iterations", "precision", "confidence", "disable", "enable", "skip", "only",
                      "cprofile", "cprofile_loops", "cprofile_top")


@dataclass
class ChildRun:
    optimization: str
    returncode: int | None
    timed_out: bool
    elapsed_s: float
    log: Path
    benchmarks: dict[int, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[int, dict[str, Any]] = field(default_factory=dict)
    scenario_benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)  # scenario -> benchmark
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)  # scenario -> its outcome
    run_info: dict[str, Any] = field(default_factory=dict)

    def failure(self) -> tuple[Status, str]:
        """(status, message) for a batch size the child did not finish."""
        tail = ""
        if self.log.is_file():
            lines = [ln for ln in self.log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            tail = " | ".join(lines[-3:])[-400:]
        if self.timed_out:
            return Status.TIMEOUT, (f"{self.optimization}: no result within --densebench-timeout "
                                    f"({self.elapsed_s:.0f} s); the child was killed. Log: {self.log}")
        code = self.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            kind = Status.OOM if -code == signal.SIGKILL else Status.CRASHED
            why = " (SIGKILL: often the kernel's out-of-memory killer)" if -code == signal.SIGKILL else ""
            return kind, f"{self.optimization}: the child process died with {name}{why}. Log: {self.log}"
        if code == 0:  # it ended normally, yet its journal has nothing for this batch size
            return Status.CRASHED, (f"{self.optimization}: the child process finished but its journal has no result "
                                    f"for this batch size (a journal it could not write is named in its log): "
                                    f"{tail} (log: {self.log})")
        return Status.CRASHED, (f"{self.optimization}: the child process exited with status {code} before "
                                f"finishing this batch size: {tail} (log: {self.log})")


def child_env(settings: Settings, journal_path: Path) -> dict[str, str]:
    # The child is a plain run of its own: not an xdist worker (pytest-benchmark would switch itself
    # off there), whatever process started it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    for opt in OPTIONS:
        env[opt.env] = value_text(getattr(settings, opt.key))
    env["DENSEBENCH_ISOLATE"] = "false"
    env["DENSEBENCH_STORE"] = "off"  # the parent stores the whole run once
    env["DENSEBENCH_JOURNAL"] = str(absolute_path(journal_path))
    if env.get("PYTHONPATH"):  # the child starts in the rootdir: a relative entry would name another folder
        env["PYTHONPATH"] = os.pathsep.join(str(absolute_path(p)) for p in env["PYTHONPATH"].split(os.pathsep))
    env["PYTHONUNBUFFERED"] = "1"  # the log shows how far a killed child got
    env["PYTHONIOENCODING"] = "utf-8"  # the log is read back as UTF-8, whatever the locale
    return env


def benchmark_args(config: Any) -> list[str]:
    """The pytest-benchmark flags of this run that a child must share (``_BENCHMARK_OPTIONS``)."""
    args = []
    for name in _BENCHMARK_OPTIONS:
        value = config.getoption(f"benchmark_{name}", None)
        if value is None or value is False:
            continue
        flag = "--benchmark-" + name.replace("_", "-")
        args += [flag] if value is True else [f"{flag}={getattr(value, 'name', value)}"]
    return args


def run_child(config: Any, settings: Settings, test_path: Path, optimization: str, out_dir: Path,
              on_progress: Callable[[str], None] | None = None,
              on_poll: Callable[[], None] | None = None) -> ChildRun:
    """Benchmark one optimization at every batch size in a child pytest process.

    While waiting (at most ``settings.timeout`` seconds in all), every ``POLL_S`` the child's log is
    read: each new progress line it wrote (``densebench: [..] opt bsN: ...``, see progress.py) goes
    to ``on_progress``, then ``on_poll`` is called (to redraw elapsed times). An exception from
    either is reported once as a warning and stops the calls; the child runs on.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = safe_name(optimization)
    journal_path = out_dir / f"journal-{safe}.jsonl"
    journal_path.unlink(missing_ok=True)
    log = out_dir / f"{safe}.log"
    cmd = [sys.executable, "-m", "pytest", str(absolute_path(test_path)), "-p", "densebench.plugin",
           "-p", "no:cacheprovider", "-q", f"--rootdir={config.rootpath}", f"--densebench-optimizations={optimization}"]
    cmd += benchmark_args(config)
    env = child_env(settings, journal_path)
    start = time.perf_counter()
    timed_out = False
    with open(log, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(cmd, cwd=config.rootpath, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        follow = _Follower(log, on_progress, on_poll)
        try:
            _wait(proc, settings.timeout, follow.poll)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
        except BaseException:  # Ctrl-C or anything else: never leave the child behind
            _kill(proc)
            raise
    follow.poll()  # the lines written last (the final results)
    run = ChildRun(optimization, proc.returncode, timed_out, time.perf_counter() - start, log)
    if journal_path.is_file():
        content = journal.read(journal_path)
        for bench in content["benchmarks"]:
            scenario = (bench["extra_info"].get("scenario") or {}).get("name")
            if scenario:
                run.scenario_benchmarks[scenario] = bench
            else:
                run.benchmarks[int(bench["extra_info"]["batch_size"])] = bench
        for outcome in content.get("scenarios") or []:
            run.scenarios[outcome["scenario"]] = outcome
        for outcome in content["outcomes"]:
            if outcome.get("batch_size") is not None:
                run.outcomes[int(outcome["batch_size"])] = outcome
        run.run_info = content["header"].get("densebench") or {}
    return run


def _wait(proc: subprocess.Popen, timeout: float, poll: Callable[[], None]) -> None:
    """``proc.wait(timeout)`` that calls ``poll`` every ``POLL_S`` meanwhile; raises TimeoutExpired."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        try:
            proc.wait(timeout=min(POLL_S, left))
            return
        except subprocess.TimeoutExpired:
            poll()


class _Follower:
    """Reads the lines a child appends to its log and passes the progress lines on."""

    def __init__(self, log: Path, on_line: Callable[[str], None] | None, on_poll: Callable[[], None] | None):
        self.log, self.on_line, self.on_poll = log, on_line, on_poll
        self.offset = 0
        self.partial = b""

    def poll(self) -> None:
        if self.on_line is None and self.on_poll is None:
            return
        try:
            if self.on_line is not None:
                for line in self._new_lines():
                    if line.startswith(PREFIX):
                        self.on_line(line)
            if self.on_poll is not None:
                self.on_poll()
        except Exception as exc:  # the display must not cost the measurement
            self.on_line = self.on_poll = None
            warnings.warn(f"densebench: progress display of an isolated child stopped: "
                          f"{type(exc).__name__}: {exc}", stacklevel=2)

    def _new_lines(self) -> list[str]:
        try:
            with open(self.log, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
