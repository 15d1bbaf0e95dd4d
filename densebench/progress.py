"""What the run is doing now: which configuration is building or timing, for how long, and the ETA.

A run measures ``total`` configurations (optimization x batch size); building one can take a
minute in silence (compilation, an isolated child starting). ``Progress`` says, at every stage
change::

    densebench: [1/4 done] channels_last bs1: building (in child process) | 15 s | run 1 min 02 s | ETA 2 min 06 s
    densebench: [2/4 done] channels_last bs1: result: measured in 41 s | run 1 min 28 s | ETA 1 min 28 s

``[done/total]`` counts configurations with a result; then the configuration and its stage, the
time spent on this configuration, the time since the run started, and the estimated time for the
rest: the average wall-clock time per finished configuration (run time at the last result / done,
so model loading and child start-up are included) times what remains, minus what the current
configuration has already spent. Before the first result it says ``ETA unknown``; once the current
configuration has taken longer than the average, ``ETA 1 min 20 s after this one`` (or ``ETA when
this one ends`` for the last), rather than counting down to a wrong 0. A result line
ends with the reason when there is one (skips, failures), last so it can be cut without losing the
numbers. At the end: ``densebench: 4/4 configurations in 2 min 10 s (3 measured, 1 skipped)``.

Two ways to show it, chosen once per run (``choose_mode``):

* ``live``: on a terminal (stdout a tty, not ``-q``, ``CI`` unset, ``TERM`` not ``dumb``, capture
  on) one status line below pytest's current line, redrawn in place (also every poll while an
  isolated child runs, so the elapsed time moves during a silent compile) and erased when the
  configuration finishes or pytest writes its next result; the cursor goes back to the end of
  pytest's line, so pytest's dots and ``[ 50%]`` come out exactly as without densebench.
* ``plain``: everywhere else (a pipe, a file, CI logs, ``-q``, ``-s``, an isolated child's log)
  one line per stage change and per result, each starting with ``densebench: ``, so they can be
  grepped; nothing animated. While an isolated child stays silent in one stage, the line is
  repeated every ``HEARTBEAT_S`` (30 s), so a log never looks stuck for more than that.
* ``off``: ``-qq``, xdist workers (their output is not shown), no terminal reporter, no benchmarks.

No library: rich and tqdm draw by owning the cursor from column 0, while pytest keeps a
half-written line of dots and tracks its width itself. Tried: rich ``Live`` (transient, manual
refresh) starts right after pytest's dots, erases that whole line on its first refresh and leaves
pytest's next dot alone on an empty line; tqdm's bar begins with ``\\r`` and overwrites the
dots from column 0. And while a test runs stdout is captured, so every write must suspend
pytest's capture (``CaptureManager.global_and_fixture_disabled``) from the main thread, never
from a library's refresh thread. What is left for a library is three ANSI sequences (a line below, erase, back to
pytest's column), so densebench writes them itself and adds no dependency.

Writes go through pytest's terminal reporter with capture suspended (pytest's own live logging
does the same), never ``print`` to captured stdout. ``Progress`` registers itself as a pytest
plugin while open, to erase its live line before pytest reports a test (and to put pytest's file
name back in front of the next dot after plain lines).

An isolated child (``isolate.run_child``) writes its own plain lines to its log; the parent reads
them while waiting and passes each to ``Progress.child_line``, which shows the child's stage as
``building (in child process)`` and counts its results as they come.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

PREFIX = "densebench: "
HEARTBEAT_S = 30.0  # plain output: repeat an unchanged stage line (from tick) after this long
DETAIL_CHARS = 200  # a result's reason is cut to this many characters
IN_CHILD = " (in child process)"

Key = tuple[str, int]

_LINE = re.compile(r"^densebench: \[\d+/\d+ done\] (?P<opt>\S+) bs(?P<bs>\d+): (?P<what>.*?) \| (?P<rest>.*)$")
_RESULT = re.compile(r"^result: (?P<status>\S+)")


def format_duration(seconds: float) -> str:
    """``4.2 s``, ``41 s``, ``1 min 05 s``, ``2 h 03 min`` (negative counts as 0)."""
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        m, sec = divmod(round(s), 60)
        return f"{m} min {sec:02d} s"
    h, rem = divmod(round(s), 3600)
    return f"{h} h {rem // 60:02d} min"


class Tracker:
    """The state and the text of the progress display, without any output.

    ``clock`` returns seconds (``time.monotonic``); tests pass a fake one.
    """

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.clock = clock
        self.started = clock()
        self.results: dict[Key, str] = {}  # finished configuration -> status
        self.last_result = self.started  # clock at the latest new result
        self.since: dict[Key, float] = {}  # configuration -> clock at its first stage
        self.current: Key | None = None  # the configuration being worked on (no result yet)
        self.what = ""  # its stage

    @property
    def done(self) -> int:
        return len(self.results)

    def stage(self, key: Key, what: str) -> bool:
        """Note that ``key`` is at stage ``what``; True when that is news (another key or stage)."""
        now = self.clock()
        self.since.setdefault(key, now)
        changed = (key, what) != (self.current, self.what)
        self.current, self.what = key, what
        return changed

    def finish(self, key: Key, status: str) -> tuple[bool, float | None]:
        """Record a result: (new: a first result or a changed status, seconds since its first stage or None)."""
        now = self.clock()
        new = self.results.get(key) != status
        if key not in self.results:
            self.last_result = now
        self.results[key] = status
        if self.current == key:
            self.current, self.what = None, ""
        start = self.since.get(key)
        return new, (now - start if start is not None else None)

    def eta(self) -> float | None:
        """Seconds the rest should take; None before the first result."""
        if not self.done:
            return None
        remaining = max(self.total - self.done, 0)
        if not remaining:
            return 0.0
        average = (self.last_result - self.started) / self.done
        spent = self.clock() - self.last_result  # already spent on the next configuration
        return average * (remaining - 1) + max(average - spent, 0.0)

    def overdue(self) -> bool:
        """The configuration in progress has taken longer than the average: its own rest is unknown."""
        if not self.done or self.done >= self.total:
            return False
        average = (self.last_result - self.started) / self.done
        return self.clock() - self.last_result > average

    def _tail(self) -> str:
        eta = self.eta()
        if eta is None:
            text = "unknown"
        elif self.overdue():
            text = f"{format_duration(eta)} after this one" if eta > 0 else "when this one ends"
        else:
            text = format_duration(eta)
        return f"run {format_duration(self.clock() - self.started)} | ETA {text}"

    def _head(self, key: Key) -> str:
        return f"{PREFIX}[{self.done}/{max(self.total, self.done)} done] {key[0]} bs{key[1]}: "

    def stage_line(self) -> str | None:
        """The line for the current stage (None when nothing is in progress)."""
        if self.current is None:
            return None
        elapsed = self.clock() - self.since[self.current]
        return f"{self._head(self.current)}{self.what} | {format_duration(elapsed)} | {self._tail()}"

    def waiting_line(self, what: str) -> str:
        """A line for time spent outside any configuration (an isolated child exiting)."""
        return f"{PREFIX}[{self.done}/{max(self.total, self.done)} done] {what} | {self._tail()}"

    def result_line(self, key: Key, status: str, took: float | None, detail: str | None = None) -> str:
        line = f"{self._head(key)}result: {status}"
        if took is not None:
            line += f" in {format_duration(took)}"
        line += f" | {self._tail()}"
        if detail:
            text = " ".join(str(detail).split())
            line += " | " + (text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS - 3] + "...")
        return line

    def summary_line(self) -> str:
        counts: dict[str, int] = {}
        for status in self.results.values():
            counts[status] = counts.get(status, 0) + 1
        what = ", ".join(f"{n} {status}" for status, n in counts.items())
        return (f"{PREFIX}{self.done}/{max(self.total, self.done)} configurations in "
                f"{format_duration(self.clock() - self.started)}" + (f" ({what})" if what else ""))


def parse_line(line: str) -> tuple[Key, str, str | None, str | None] | None:
    """A progress line -> (key, what, status, detail); status and detail are None for a stage line.
    None for any other line."""
    m = _LINE.match(line.rstrip("\r\n"))
    if not m:
        return None
    key = (m["opt"], int(m["bs"]))
    result = _RESULT.match(m["what"])
    if result is None:
        return key, m["what"], None, None
    fields = m["rest"].split(" | ", 2)  # run | ETA | detail
    return key, m["what"], result["status"], fields[2] if len(fields) > 2 else None


def choose_mode(config: Any, reporter: Any, env: Mapping[str, str] = os.environ) -> str:
    """``live``, ``plain`` or ``off`` for this run (see the module docstring)."""
    if reporter is None or hasattr(config, "workerinput"):
        return "off"
    verbosity = int(config.getoption("verbose", 0) or 0)
    if verbosity <= -2:
        return "off"
    if verbosity < 0:
        return "plain"
    if env.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return "plain"
    # The live line needs the reporter's writer (pytest's own ``_tw``, there since pytest 5).
    writer = hasattr(getattr(reporter, "_tw", None), "width_of_current_line")
    if env.get("TERM", "") == "dumb" or config.getoption("capture", "fd") == "no" or not writer:
        return "plain"
    return "live" if bool(getattr(reporter, "isatty", False)) else "plain"


class Progress:
    """Progress of a densebench run, shown through pytest's terminal reporter.

    ``Progress(config, total)``: ``config`` is the pytest config, ``total`` the number of
    configurations this process will measure. ``mode`` (``live``/``plain``/``off``) overrides
    ``choose_mode``; ``clock`` is for tests. Every method is cheap (a plain line is written only
    when something changed); with mode ``off`` they do nothing.
    """

    def __init__(self, config: Any, total: int, *, mode: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        plugins = config.pluginmanager if config is not None else None
        self._reporter = plugins.getplugin("terminalreporter") if plugins is not None else None
        self._capture = plugins.getplugin("capturemanager") if plugins is not None else None
        if mode is None:
            mode = choose_mode(config, self._reporter) if config is not None and total > 0 else "off"
        self.mode = mode if self._reporter is not None else "off"
        self.tracker = Tracker(total, clock)
        self._shown = False  # live: the status line is on screen
        self._column = 0  # live: where pytest's line ended when the status line was drawn
        self._last_write = self.tracker.started  # plain: clock at the last line
        self._wrote = False  # plain: lines since pytest last wrote a test result
        self._child: str | None = None  # an isolated child's optimization, after its latest result
        self._registered = False
        if self.mode != "off":
            plugins.register(self, f"densebench-progress-{id(self)}")
            self._registered = True

    @classmethod
    def off(cls) -> Progress:
        """A Progress that shows nothing (before the plugin knows what will run)."""
        return cls(None, 0, mode="off")

    # ------------------------------------------------------------ what the run reports

    def stage(self, optimization: str, batch_size: int, what: str) -> None:
        """``optimization`` at ``batch_size`` is now ``what`` (building, warming up, parity, timing, ...)."""
        if self.mode == "off":
            return
        self._child = None
        if self.tracker.stage((optimization, int(batch_size)), what) or self.mode == "live":
            self._show(self.tracker.stage_line())

    def finished(self, optimization: str, batch_size: int | None, status: str, detail: str | None = None) -> None:
        """A result for ``optimization`` at ``batch_size``: measured, skipped, failed, oom, ... (counted once)."""
        if self.mode == "off" or batch_size is None:
            return
        key = (optimization, int(batch_size))
        new, took = self.tracker.finish(key, status)
        if self.mode == "live":
            self._erase()
        elif new:
            self._line(self.tracker.result_line(key, status, took, detail))

    def waiting(self, what: str) -> None:
        """The run is busy outside any configuration (loading the model and data, ...): shown until the next stage."""
        if self.mode == "off":
            return
        self._show(self.tracker.waiting_line(what))

    def tick(self) -> None:
        """Called while waiting (every poll of an isolated child): redraw the live line with the
        time so far; in plain output, repeat the line after ``HEARTBEAT_S`` without news."""
        if self.mode == "off":
            return
        line = self.tracker.stage_line()
        if line is None and self._child is not None:  # between its last result and its exit
            line = self.tracker.waiting_line(f"{self._child}: finishing{IN_CHILD}")
        if line is not None and (self.mode == "live" or self.tracker.clock() - self._last_write >= HEARTBEAT_S):
            self._show(line)

    def child_line(self, line: str) -> None:
        """A progress line from an isolated child's log: its stage (marked as in the child) or its result."""
        parsed = parse_line(line)
        if parsed is None:
            return
        (optimization, batch_size), what, status, detail = parsed
        if status is None:
            self.stage(optimization, batch_size, what + ("" if what.endswith(IN_CHILD) else IN_CHILD))
        else:
            self.finished(optimization, batch_size, status, detail)
            self._child = optimization

    def close(self) -> None:
        """End of the run: erase the live line, say how many configurations took how long, unregister."""
        if self.mode == "off":
            return
        self._erase()
        if self.tracker.done or self.tracker.since:
            self._line(self.tracker.summary_line())
        if self._registered:
            self.config.pluginmanager.unregister(self)
            self._registered = False
        self.mode = "off"

    # ------------------------------------------------------------ pytest hooks (while registered)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self._child = None
        self._erase()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: Any) -> None:
        """Before pytest writes a test's result: take the live line away; after plain lines,
        start pytest's line again with the file name so the dot does not stand alone."""
        self._erase()
        tr = self._reporter
        if not self._wrote or tr is None or tr.currentfspath is not None:
            return
        if int(self.config.getoption("verbose", 0) or 0) != 0 or not getattr(tr, "showfspath", False):
            return
        status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        if status and status[1]:
            tr.write_fspath_result(report.nodeid, "")
            self._wrote = False

    # ------------------------------------------------------------ output

    @contextlib.contextmanager
    def _uncaptured(self) -> Iterator[None]:
        """Write to the real terminal/log even inside a test (pytest's capture suspended)."""
        cm = self._capture.global_and_fixture_disabled() if self._capture is not None else contextlib.nullcontext()
        with cm:
            yield

    def _line(self, text: str) -> None:
        """A plain line of its own, after whatever pytest has on its current line."""
        tr = self._reporter
        tw = getattr(tr, "_tw", None)  # pytest's writer; public write_line when a release lacks it
        with self._uncaptured():
            tr.ensure_newline()
            if tw is not None and getattr(tw, "width_of_current_line", 0) > 0:  # -q: dots without a file name
                tw.line()
            if tw is not None:
                tw.line(text)
            else:
                tr.write_line(text)
            tr.flush()
        self._last_write = self.tracker.clock()
        self._wrote = True

    def _show(self, text: str | None) -> None:
        if text is None:
            return
        if self.mode == "plain":
            self._line(text)
            return
        tw = self._reporter._tw
        with self._uncaptured():
            tw.flush()
            out = getattr(tw, "_file", None) or sys.stdout
            if not self._shown:
                self._column = max(tw.width_of_current_line, 0)
                out.write("\n")  # a line of its own below pytest's
                self._shown = True
            out.write("\r" + text[:max(tw.fullwidth - 1, 20)] + "\x1b[K")
            out.flush()
        self._last_write = self.tracker.clock()

    def _erase(self) -> None:
        """Live: remove the status line and put the cursor back at the end of pytest's line."""
        if not self._shown:
            return
        tw = self._reporter._tw
        out = getattr(tw, "_file", None) or sys.stdout
        with self._uncaptured():
            back = f"\x1b[{self._column + 1}G" if self._column else "\r"
            out.write("\r\x1b[2K\x1b[1A" + back)
            out.flush()
        self._shown = False


__all__ = ["HEARTBEAT_S", "PREFIX", "Progress", "Tracker", "choose_mode", "format_duration", "parse_line"]
