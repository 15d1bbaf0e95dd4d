"""Server search: the highest Poisson arrival rate a configuration sustains within a p99 budget.

For each batcher setting (max batch size) tried, a bisection over the target rate:

1. the bracket is [0, 1.1 x capacity], capacity = max batch / the service time of a full batch
   (measured before the search; no rate above it can be sustained);
2. *probes*: short LoadGen Server tests (``probe_queries`` queries). A probe passes when LoadGen's
   99th-percentile latency is within the budget and it met its performance constraints; the
   bracket halves until it is narrower than ``tolerance`` x its upper end. Probes are too short
   for LoadGen's early-stopping rule, so they only bracket the answer;
3. *confirmation*: a full-length test (``confirm_queries``, enough for early stopping to decide)
   at the highest passing rate; if LoadGen does not call it VALID, 10% lower, and again, while
   time is left.

The answer is the highest rate LoadGen confirmed VALID (None when none was, with the reasons).
Every test is a point of the latency-throughput curve (achieved rate, p50/p90/p99). The whole
search of one configuration is bounded by ``time_budget_s``: when it runs out, what was
confirmed so far stands and the result says the search was cut short.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .harness import Knobs, Trial

# Fewest queries LoadGen's early stopping needs to accept a 99th percentile when no query is over the
# bound is 459 (read from its own "Would need to run at least N more queries" message for 100 queries);
# 600 leaves room for a few late queries.
CONFIRM_QUERIES = 600
PROBE_QUERIES = 150
# The search gives up below this fraction of the capacity: a budget missed even there is missed by a batch's
# own service time (a request cannot be served faster than one batch), which lowering the rate cannot fix.
LOWEST = 1 / 16


@dataclass
class SearchResult:
    """The best confirmed rate over every batcher setting tried, and every test run."""

    latency_budget_ms: float
    best_qps: float | None = None  # highest target rate LoadGen confirmed VALID
    best_trial: Trial | None = None
    last_trial: Trial | None = None  # the last test run (reported when none was confirmed)
    best_setting: dict[str, Any] | None = None
    points: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    cut_short: bool = False
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        best = self.best_trial
        return {"latency_budget_ms": self.latency_budget_ms, "highest_valid_qps": self.best_qps,
                "achieved_qps": best.throughput if best else None,
                "p99_ms": best.latency_ms("99.00") if best else None, "batcher": self.best_setting,
                "cut_short": self.cut_short, "reasons": self.reasons, "wall_s": round(self.wall_s, 1),
                "points": self.points}


def _passes(trial: Trial, budget_ms: float) -> bool:
    p99 = trial.latency_ms("99.00")
    return trial.perf_constraints_met and p99 is not None and p99 <= budget_ms


@dataclass
class Search:
    """``test(knobs, kind) -> Trial`` runs one LoadGen Server test with the batcher setting being searched."""

    budget_ms: float
    time_budget_s: float
    tolerance: float = 0.05
    probe_queries: int = PROBE_QUERIES
    confirm_queries: int = CONFIRM_QUERIES
    seed: int = 0
    progress: Callable[[str], None] = lambda line: None
    _deadline: float = 0.0

    def knobs(self, rate: float, queries: int) -> Knobs:
        """A Server test at ``rate``; LoadGen stops issuing when the search's time is up (at least 1 s)."""
        left_ms = int(max(1.0, self._deadline - time.perf_counter()) * 1e3) if self._deadline else 0
        return Knobs("server", target_qps=rate, latency_bound_ns=int(self.budget_ms * 1e6),
                     min_duration_ms=1000, max_duration_ms=left_ms, min_query_count=queries, seed=self.seed)

    def run(self, settings: list[tuple[dict[str, Any], float, Callable[[Knobs, str], Trial]]]) -> SearchResult:
        """``settings``: (batcher setting, capacity in samples/s, test function) per setting to try."""
        start = time.perf_counter()
        self._deadline = start + self.time_budget_s
        result = SearchResult(self.budget_ms)
        for setting, capacity, test in settings:
            if self._out_of_time():
                result.cut_short = True
                result.reasons.append(f"no time left for batcher setting {setting}")
                continue
            self._search_one(result, setting, capacity, test)
        result.wall_s = time.perf_counter() - start
        if result.best_qps is None and not result.reasons:
            result.reasons.append("no rate was confirmed VALID")
        return result

    def _out_of_time(self) -> bool:
        return time.perf_counter() >= self._deadline

    def _trial(self, result: SearchResult, test: Callable[[Knobs, str], Trial], setting: dict[str, Any],
               rate: float, kind: str) -> Trial:
        # A probe lasts about 15 s at most (at least 30 queries): slow rates only need bracketing.
        queries = max(30, min(self.probe_queries, int(rate * 15))) if kind == "probe" else self.confirm_queries
        trial = test(self.knobs(rate, queries), kind)
        trial.kind = kind
        trial.extra["batcher"] = setting
        result.last_trial = trial
        result.points.append(trial.point())
        p99 = trial.latency_ms("99.00")
        self.progress(f"server {kind} {rate:.1f}/s, max batch {setting.get('max_batch')}: p99 "
                      f"{'n/a' if p99 is None else f'{p99:.0f} ms'} ({'VALID' if trial.valid else 'invalid'})")
        return trial

    def _search_one(self, result: SearchResult, setting: dict[str, Any], capacity: float,
                    test: Callable[[Knobs, str], Trial]) -> None:
        low, high = 0.0, capacity * 1.1
        floor = result.best_qps or 0.0
        if setting.get("service_ms") and setting["service_ms"] > self.budget_ms:
            result.reasons.append(f"max batch {setting.get('max_batch')}: one image alone takes "
                                  f"{setting['service_ms']:.0f} ms, more than the {self.budget_ms:g} ms budget")
            return
        first = True
        while high - low > self.tolerance * high and not self._out_of_time():
            rate = capacity * 0.7 if first else (low + high) / 2
            first = False
            if rate <= floor:  # another setting already confirmed more than this bracket can reach
                break
            if rate < capacity * LOWEST:  # far below what the runner serves: the budget, not the rate, is the problem
                break
            if _passes(self._trial(result, test, setting, rate, "probe"), self.budget_ms):
                low = rate
            else:
                high = rate
        if low <= floor:
            if low == 0.0 and not self._out_of_time():
                result.reasons.append(f"max batch {setting.get('max_batch')}: no probed rate kept p99 within "
                                      f"{self.budget_ms:g} ms (lowest probed {high:.2f}/s; capacity "
                                      f"{capacity:.2f}/s)")
            return
        rate = low
        while rate > floor and not self._out_of_time():
            trial = self._trial(result, test, setting, rate, "confirm")
            if trial.valid:
                result.best_qps, result.best_trial, result.best_setting = rate, trial, setting
                return
            result.reasons.append(f"{rate:.2f}/s with max batch {setting.get('max_batch')}: "
                                  + "; ".join(trial.invalid_reasons()))
            rate *= 0.9
        if self._out_of_time():
            result.cut_short = True
