"""Progress lines: formatting and ETA on a fake clock, the output modes, the isolated child's relay,
and the lines of a real tiny run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from densebench import isolate
from densebench.progress import HEARTBEAT_S, Progress, Tracker, choose_mode, format_duration, parse_line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- text and ETA


@pytest.mark.parametrize(("seconds", "text"), [(0, "0.0 s"), (-3, "0.0 s"), (4.24, "4.2 s"), (41.4, "41 s"),
                                               (65, "1 min 05 s"), (3599.6, "60 min 00 s"), (7380, "2 h 03 min")])
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_lines_and_eta_on_a_fake_clock() -> None:
    clock = Clock()
    t = Tracker(4, clock)
    assert t.stage_line() is None and t.eta() is None
    clock.now += 1
    assert t.stage(("baseline", 1), "building")
    assert not t.stage(("baseline", 1), "building"), "the same stage again is no news"
    clock.now += 5
    assert t.stage_line() == "densebench: [0/4 done] baseline bs1: building | 5.0 s | run 6.0 s | ETA unknown"
    clock.now += 6
    new, took = t.finish(("baseline", 1), "measured")
    assert new and took == 11
    # 12 s per finished configuration, 3 to go
    assert t.result_line(("baseline", 1), "measured", took) == (
        "densebench: [1/4 done] baseline bs1: result: measured in 11 s | run 12 s | ETA 36 s")
    assert t.stage_line() is None
    clock.now += 4
    t.stage(("baseline", 2), "timing")
    assert t.eta() == 32, "counts down while the next one runs"
    assert t.stage_line().endswith("timing | 0.0 s | run 16 s | ETA 32 s")
    clock.now += 20  # 24 s on this one, the average is 12
    assert t.overdue()
    assert t.stage_line().endswith("| run 36 s | ETA 24 s after this one")
    assert t.finish(("baseline", 2), "measured") == (True, 20)
    assert t.finish(("baseline", 2), "measured") == (False, 20), "a result is counted once"
    assert t.done == 2 and t.eta() == 36  # 72 s / 2 done, 2 to go


def test_the_last_configuration_past_the_average_and_the_end() -> None:
    clock = Clock()
    t = Tracker(2, clock)
    t.stage(("a", 1), "timing")
    clock.now += 10
    t.finish(("a", 1), "measured")
    t.stage(("a", 2), "timing")
    clock.now += 15
    assert t.stage_line().endswith("ETA when this one ends")
    t.finish(("a", 2), "skipped")
    assert t.eta() == 0
    assert t.summary_line() == "densebench: 2/2 configurations in 25 s (1 measured, 1 skipped)"


def test_a_result_line_keeps_the_numbers_before_a_long_reason() -> None:
    t = Tracker(3, Clock())
    line = t.result_line(("int8", 8), "skipped", None, "torchao\nis not installed " + "x" * 400)
    head, reason = line.rsplit(" | ", 1)
    assert head == "densebench: [0/3 done] int8 bs8: result: skipped | run 0.0 s | ETA unknown"
    assert reason.startswith("torchao is not installed x") and len(reason) == 200 and reason.endswith("...")


def test_parse_line_reads_back_what_the_tracker_writes() -> None:
    clock = Clock()
    t = Tracker(2, clock)
    t.stage(("channels_last+amp", 16), "warming up")
    assert parse_line(t.stage_line() + "\n") == (("channels_last+amp", 16), "warming up", None, None)
    line = t.result_line(("channels_last+amp", 16), "oom", 3.0, "out of memory | at batch 16")
    assert parse_line(line) == (("channels_last+amp", 16), "result: oom in 3.0 s", "oom",
                                "out of memory | at batch 16")
    assert parse_line("densebench: 2/2 configurations in 25 s") is None
    assert parse_line("tests/x.py ..") is None


# ---------------------------------------------------------------- where it goes


def _config(verbose: int = 0, capture: str = "fd", **extra: object) -> SimpleNamespace:
    options = {"verbose": verbose, "capture": capture}
    return SimpleNamespace(getoption=lambda name, default=None: options.get(name, default), **extra)


@pytest.mark.parametrize(("config", "tty", "env", "mode"), [
    (_config(), True, {"TERM": "xterm-256color"}, "live"),
    (_config(verbose=1), True, {}, "live"),
    (_config(), False, {}, "plain"),  # a pipe or a file
    (_config(), True, {"CI": "true"}, "plain"),
    (_config(), True, {"CI": "false"}, "live"),
    (_config(), True, {"TERM": "dumb"}, "plain"),
    (_config(verbose=-1), True, {}, "plain"),  # -q
    (_config(capture="no"), True, {}, "plain"),  # -s: other output interleaves
    (_config(verbose=-2), True, {}, "off"),  # -qq
    (_config(workerinput={}), True, {}, "off"),  # an xdist worker
])
def test_choose_mode(config: SimpleNamespace, tty: bool, env: dict[str, str], mode: str) -> None:
    writer = SimpleNamespace(width_of_current_line=0)
    assert choose_mode(config, SimpleNamespace(isatty=tty, _tw=writer), env) == mode
    if mode == "live":  # a reporter without pytest's writer gets plain lines, never a broken live line
        assert choose_mode(config, SimpleNamespace(isatty=tty), env) == "plain"


class FakeWriter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.width_of_current_line = 0

    def line(self, text: str = "") -> None:
        self.lines.append(text)


class FakeReporter:
    """The parts of pytest's TerminalReporter that plain output uses."""

    currentfspath = None
    showfspath = True

    def __init__(self) -> None:
        self._tw = FakeWriter()

    def ensure_newline(self) -> None:
        pass

    def flush(self) -> None:
        pass


def _plain(total: int, clock: Clock) -> tuple[Progress, list[str]]:
    reporter = FakeReporter()
    plugins = SimpleNamespace(getplugin=lambda name: reporter if name == "terminalreporter" else None,
                              register=lambda *a: None, unregister=lambda *a: None)
    progress = Progress(_config(pluginmanager=plugins), total, mode="plain", clock=clock)
    return progress, reporter._tw.lines


def test_plain_output_relays_an_isolated_child_and_repeats_only_after_a_heartbeat() -> None:
    clock = Clock()
    progress, lines = _plain(4, clock)
    child = Tracker(2, clock)  # what the child writes into its log
    progress.stage("baseline", 1, "starting child process")
    clock.now += 3
    child.stage(("baseline", 1), "building")
    progress.child_line(child.stage_line())
    progress.child_line(child.stage_line())  # the same line read again: no news
    progress.tick()
    clock.now += HEARTBEAT_S - 1
    progress.tick()
    assert lines == [
        "densebench: [0/4 done] baseline bs1: starting child process | 0.0 s | run 0.0 s | ETA unknown",
        "densebench: [0/4 done] baseline bs1: building (in child process) | 3.0 s | run 3.0 s | ETA unknown"]
    clock.now += 1
    progress.tick()
    assert lines[-1] == ("densebench: [0/4 done] baseline bs1: building (in child process) | 33 s | run 33 s | "
                         "ETA unknown"), "a silent stage is repeated after HEARTBEAT_S"
    clock.now += 7
    progress.child_line(child.result_line(("baseline", 1), "measured", 40.0))
    assert lines[-1] == "densebench: [1/4 done] baseline bs1: result: measured in 40 s | run 40 s | ETA 2 min 00 s"
    clock.now += HEARTBEAT_S
    progress.tick()
    assert lines[-1] == ("densebench: [1/4 done] baseline: finishing (in child process) | run 1 min 10 s | "
                         "ETA 1 min 30 s")
    n = len(lines)
    progress.finished("baseline", 1, "measured")  # the parent notes the merged outcome: counted already
    progress.finished("baseline", 2, "crashed", "the child process died with SIGSEGV")
    assert len(lines) == n + 1 and lines[-1].startswith("densebench: [2/4 done] baseline bs2: result: crashed | ")
    assert lines[-1].endswith(" | the child process died with SIGSEGV")
    progress.close()
    assert lines[-1] == "densebench: 2/4 configurations in 1 min 10 s (1 measured, 1 crashed)"
    progress.stage("x", 1, "building")
    assert len(lines) == n + 2, "nothing after close"


def test_off_does_nothing() -> None:
    progress = Progress.off()
    progress.stage("a", 1, "building")
    progress.finished("a", 1, "measured")
    progress.tick()
    progress.close()
    assert progress.mode == "off"


# ---------------------------------------------------------------- inside pytest, with capture on

PROGRESS_CONFTEST = """
import pytest
from densebench.progress import Progress

KEY = pytest.StashKey()


def pytest_addoption(parser):
    parser.addini("progress_mode", "a forced Progress mode")


def pytest_collection_finish(session):  # where and how the plugin makes the run's Progress
    mode = session.config.getini("progress_mode") or None
    session.config.stash[KEY] = Progress(session.config, len(session.items), mode=mode)


def pytest_sessionfinish(session):
    session.config.stash[KEY].close()


@pytest.fixture
def progress(request):
    return request.config.stash[KEY]
"""

PROGRESS_TEST = """
import pytest


@pytest.mark.parametrize("bs", [1, 2])
def test_config(progress, bs):
    print("captured, not shown")
    progress.stage("baseline", bs, "building")
    progress.stage("baseline", bs, "timing")
    progress.finished("baseline", bs, "measured")
"""


@pytest.fixture
def progress_suite(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    """Two fake configurations reported through Progress in an in-process pytest run (no torch)."""
    pytester.makepyfile(test_progress_suite=PROGRESS_TEST)
    pytester.makeconftest(PROGRESS_CONFTEST)
    return lambda *args: pytester.runpytest_inprocess("-p", "no:densebench.plugin", *args)


def test_plain_lines_when_output_is_not_a_terminal(progress_suite: Callable[..., pytest.RunResult]) -> None:
    result = progress_suite()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "test_progress_suite.py ",
        "densebench: [[]0/2 done] baseline bs1: building | * | run * | ETA unknown",
        "densebench: [[]0/2 done] baseline bs1: timing | *",
        "densebench: [[]1/2 done] baseline bs1: result: measured in * | run * | ETA *",
        "",
        "test_progress_suite.py .",  # pytest's line starts again: the dot does not stand alone
        "densebench: [[]1/2 done] baseline bs2: building | *",
        "densebench: [[]1/2 done] baseline bs2: timing | *",
        "densebench: [[]2/2 done] baseline bs2: result: measured in * | ETA 0.0 s",
        "",
        "test_progress_suite.py .*[[]100%[]]",
        "densebench: 2/2 configurations in * (2 measured)",
    ], consecutive=True)
    assert "captured, not shown" not in result.stdout.str(), "the test's own output stays captured"
    assert "\x1b" not in result.stdout.str(), "no escape sequences in a log"


def test_quiet_gives_plain_lines_and_qq_none(progress_suite: Callable[..., pytest.RunResult]) -> None:
    progress_suite("-q").stdout.fnmatch_lines(["densebench: [[]0/2 done] baseline bs1: building | *",
                                               "densebench: 2/2 configurations in *"])
    assert "densebench" not in progress_suite("-qq").stdout.str()


def test_live_line_is_erased_and_pytest_line_left_as_it_was(progress_suite: Callable[..., pytest.RunResult]) -> None:
    result = progress_suite("-o", "progress_mode=live")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()  # pytester splits lines at "\r" too: here each "\r" reads as "\n"
    # drawn on a line of its own below pytest's, redrawn in place, erased, back to pytest's column
    assert "test_progress_suite.py \n\ndensebench: [0/2 done] baseline bs1: building | " in out
    assert "\x1b[K\ndensebench: [0/2 done] baseline bs1: timing | " in out
    assert out.count("\x1b[K\n\x1b[2K\x1b[1A\x1b[") == 2, "erased once per configuration"
    column = len("test_progress_suite.py ")
    assert f"\x1b[1A\x1b[{column + 1}G.\n" in out, "pytest's first dot continues its own line"
    assert f"\x1b[1A\x1b[{column + 2}G. " in out, "and the second, then pytest's [100%]"
    assert "test_progress_suite.py " in out and "densebench: 2/2 configurations in " in out


# ---------------------------------------------------------------- the isolated child's log, followed


def _child(tmp_path: Path, script: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "child.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-u", "-c", script], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # as run_child starts it: _kill kills the group
    return proc, log


def test_waiting_relays_progress_lines_as_the_child_writes_them(tmp_path: Path) -> None:
    script = ("import sys, time\n"
              "print('densebench: [0/1 done] a bs1: building | 0.0 s | run 0.0 s | ETA unknown')\n"
              "print('some other output')\n"
              "sys.stdout.write('densebench: [1/1 done] a bs1: result: measured in 1')\n"
              "sys.stdout.flush(); time.sleep(1.2)\n"
              "print('.0 s | run 1.0 s | ETA 0.0 s')\n")
    proc, log = _child(tmp_path, script)
    seen: list[tuple[int, str]] = []
    polls: list[int] = []
    follow = isolate._Follower(log, lambda line: seen.append((len(polls), line)), lambda: polls.append(1))
    isolate._wait(proc, 30, follow.poll)
    follow.poll()
    assert [line for _, line in seen] == [
        "densebench: [0/1 done] a bs1: building | 0.0 s | run 0.0 s | ETA unknown",
        "densebench: [1/1 done] a bs1: result: measured in 1.0 s | run 1.0 s | ETA 0.0 s"], \
        "only progress lines, and a line only once it is complete"
    assert seen[0][0] < seen[1][0], "the first line came while the child was still running"


def test_waiting_keeps_the_overall_timeout(tmp_path: Path) -> None:
    proc, log = _child(tmp_path, "import time; time.sleep(30)")
    polls: list[int] = []
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            isolate._wait(proc, 1.2, lambda: polls.append(1))
        assert proc.poll() is None and 1 <= len(polls) <= 3
    finally:
        isolate._kill(proc)


def test_a_failing_display_is_dropped_not_fatal(tmp_path: Path) -> None:
    proc, log = _child(tmp_path, "import time; print('densebench: x'); time.sleep(1.2)")

    def broken(line: str) -> None:
        raise ValueError("display bug")

    follow = isolate._Follower(log, broken, None)
    with pytest.warns(UserWarning, match="progress display of an isolated child stopped: ValueError"):
        isolate._wait(proc, 30, follow.poll)
    assert proc.returncode == 0 and follow.on_line is None


# ---------------------------------------------------------------- a real tiny run


def test_a_tiny_isolated_run_shows_each_stage_and_result(run_suite) -> None:
    run = run_suite("--densebench-optimizations=baseline", "--densebench-batch-sizes=1,2", "--densebench-isolate")
    run.result.assert_outcomes(passed=2)
    run.result.stdout.fnmatch_lines([
        "densebench: [[]0/2 done] baseline bs1: starting child process | * | run * | ETA unknown",
        "densebench: [[]0/2 done] baseline bs1: building (in child process) | *",
        "densebench: [[]0/2 done] baseline bs1: warming up (in child process) | *",
        "densebench: [[]0/2 done] baseline bs1: parity (in child process) | *",
        "densebench: [[]0/2 done] baseline bs1: timing (in child process) | *",
        "densebench: [[]1/2 done] baseline bs1: result: measured in * | run * | ETA *",
        "densebench: [[]1/2 done] baseline bs2: warming up (in child process) | *",
        "densebench: [[]2/2 done] baseline bs2: result: measured in * | run * | ETA 0.0 s",
        "densebench: 2/2 configurations in * (2 measured)",
    ])
    assert "ETA unknown" not in "".join(ln for ln in run.result.outlines if "[1/2 done]" in ln)
