"""One MLPerf LoadGen test of a dynamic batcher: settings in, LoadGen's verdict and latencies out.

LoadGen (``mlcommons-loadgen``, module ``mlperf_loadgen``) is MLCommons' load generator for
MLPerf Inference: it issues queries as a scenario prescribes (Offline: every sample at once;
Server: Poisson arrivals at a target rate; SingleStream: the next query when the last one
finished), times every query from its scheduled issue to its completion, and judges the run
(``result_validity``: minimum duration and query count, the latency bound at the scenario's
percentile, and early stopping, its confidence rule for percentiles from few queries). See
MLCommons, "LoadGen" (github.com/mlcommons/inference/tree/master/loadgen) and the MLPerf
Inference rules, section "Scenarios".

:func:`run_test` runs one test with the evaluation images as the query sample library (all of
them in memory, preprocessed before the test) and returns a :class:`Trial`: LoadGen's figures
read back from its ``mlperf_log_detail.txt`` (``:::MLLOG`` JSON lines), plus each query's
latency as densebench saw it (issue callback to response; seconds). In accuracy mode,
:func:`accuracy_logits` reads the logits every response carried back from
``mlperf_log_accuracy.json`` by sample index, for parity against the baseline.

LoadGen allows one test at a time per process; densebench runs them one after another.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Unavailable
from .batcher import DynamicBatcher, Request

LOADGEN = ("mlperf_loadgen", "pip install 'densebench[serving]' (MLCommons LoadGen, mlcommons-loadgen)")
SCENARIO_NAMES = {"offline": "Offline", "server": "Server", "singlestream": "SingleStream"}
PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


def loadgen() -> Any:
    """The ``mlperf_loadgen`` module; raises Unavailable saying how to install it."""
    try:
        import mlperf_loadgen  # optional: the serving extra
    except ImportError:
        raise Unavailable(f"serving scenarios need MLPerf LoadGen, which is not installed: {LOADGEN[1]}") from None
    return mlperf_loadgen


@dataclass
class Knobs:
    """What one test asks LoadGen for. Durations in ms, latency bound in ns, rates in samples/s."""

    scenario: str  # offline | server | singlestream
    accuracy: bool = False
    target_qps: float | None = None  # server: Poisson arrival rate; offline: expected throughput
    latency_bound_ns: int | None = None  # server: the bound at the 99th percentile
    expected_latency_ns: int | None = None  # singlestream
    min_duration_ms: int = 1000
    max_duration_ms: int = 0  # 0: no limit
    min_query_count: int = 1
    seed: int = 0

    def settings(self, lg: Any) -> Any:
        s = lg.TestSettings()
        s.scenario = getattr(lg.TestScenario, SCENARIO_NAMES[self.scenario])
        s.mode = lg.TestMode.AccuracyOnly if self.accuracy else lg.TestMode.PerformanceOnly
        s.min_duration_ms, s.max_duration_ms, s.min_query_count = self.min_duration_ms, self.max_duration_ms, \
            self.min_query_count
        s.qsl_rng_seed = s.sample_index_rng_seed = s.schedule_rng_seed = self.seed
        if self.scenario == "server":
            s.server_target_qps = float(self.target_qps or 1.0)
            s.server_target_latency_ns = int(self.latency_bound_ns or 10**9)
            s.server_target_latency_percentile = 0.99
        elif self.scenario == "offline":
            s.offline_expected_qps = float(self.target_qps or 1.0)
        else:
            s.single_stream_expected_latency_ns = int(self.expected_latency_ns or 10**7)
        return s


@dataclass
class Trial:
    """One LoadGen test's outcome. ``loadgen`` holds every ``result_*``/``early_stopping*`` value it logged."""

    knobs: Knobs
    log_dir: Path
    loadgen: dict[str, Any]
    latencies_s: list[float]  # per query, densebench's own clock (issue callback -> response)
    batches: dict[str, Any]
    wall_s: float
    accuracy_log: Path | None = None
    service_s: list[float] = field(default_factory=list)  # each batch's service time (submit to done)
    kind: str = "test"  # server search: 'probe' or 'confirm'
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """LoadGen's verdict, and no batch failed (a failed batch is answered with NaN to let LoadGen finish)."""
        return self.loadgen.get("result_validity") == "VALID" and not self.batches.get("errors")

    @property
    def perf_constraints_met(self) -> bool:
        return bool(self.loadgen.get("result_perf_constraints_met", False))

    def invalid_reasons(self) -> list[str]:
        """Why LoadGen called the result INVALID, in its own terms (empty when VALID)."""
        if self.valid:
            return []
        checks = {"result_perf_constraints_met": "the latency bound was not met at the 99th percentile"
                  if self.knobs.scenario == "server" else "performance constraints not met",
                  "result_min_duration_met": "the minimum duration was not reached",
                  "result_min_queries_met": "the minimum query count was not reached",
                  "early_stopping_met": "early stopping: too few queries to show the percentile is within the bound"}
        reasons = [text for key, text in checks.items() if self.loadgen.get(key) is False]
        reasons += [f"a batch failed: {error}" for error in self.batches.get("errors") or []]
        extra = self.loadgen.get("result_invalid_reason")
        return reasons + ([str(extra)] if extra else []) or ["LoadGen reported INVALID"]

    @property
    def throughput(self) -> float | None:
        """Completed samples per second (Offline: LoadGen's samples/s; SingleStream: queries/s including
        LoadGen's own overhead)."""
        for key in ("result_completed_samples_per_sec", "result_samples_per_second",
                    "result_qps_with_loadgen_overhead"):
            if self.loadgen.get(key) is not None:
                return float(self.loadgen[key])
        return None

    def latency_ms(self, percentile: str = "99.00") -> float | None:
        value = self.loadgen.get(f"result_{percentile}_percentile_latency_ns")
        return None if value is None else float(value) / 1e6

    def point(self) -> dict[str, Any]:
        """This test as one point of a latency-throughput curve (JSON)."""
        return {"kind": self.kind, "target_qps": self.knobs.target_qps, "achieved_qps": self.throughput,
                "p50_ms": self.latency_ms("50.00"), "p90_ms": self.latency_ms("90.00"),
                "p99_ms": self.latency_ms("99.00"), "queries": self.loadgen.get("result_query_count"),
                "valid": self.valid, "invalid_reasons": self.invalid_reasons(), "wall_s": round(self.wall_s, 2),
                "mean_batch_size": self.batches.get("mean_batch_size"), **self.extra}


def read_detail(path: Path) -> dict[str, Any]:
    """The ``result_*``, ``early_stopping*`` and ``effective_*`` values of ``mlperf_log_detail.txt``."""
    values: dict[str, Any] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        key = entry.get("key", "")
        if key.startswith(("result_", "early_stopping", "effective_")):
            values[key] = entry.get("value")
    return values


def _responder(lg: Any, latencies: list[float]) -> Callable[[list[tuple[Request, np.ndarray]]], None]:
    """``respond(pairs)``: each request's logits back to LoadGen (the buffers live until it returns, which
    copies what its accuracy log needs), and each request's latency on densebench's clock into ``latencies``."""
    lock = threading.Lock()

    def respond(pairs: list[tuple[Request, np.ndarray]]) -> None:
        now = time.perf_counter()
        keep = [np.ascontiguousarray(row, dtype=np.float32) for _, row in pairs]
        responses = [lg.QuerySampleResponse(r.id, buf.ctypes.data, buf.nbytes)
                     for (r, _), buf in zip(pairs, keep, strict=True)]
        with lock:
            latencies.extend(now - r.arrival_s for r, _ in pairs)
        lg.QuerySamplesComplete(responses)

    return respond


def run_test(batcher_for: Callable[[Callable[[list[tuple[Request, np.ndarray]]], None]], DynamicBatcher],
             samples: int, knobs: Knobs, log_dir: Path) -> Trial:
    """Run one LoadGen test against a batcher built by ``batcher_for(respond)``; ``samples`` images in the QSL.

    Raises Unavailable without LoadGen. Responses carry each sample's float32 logits (accuracy mode logs them).
    """
    lg = loadgen()
    log_dir.mkdir(parents=True, exist_ok=True)
    latencies: list[float] = []
    batcher = batcher_for(_responder(lg, latencies))

    def issue(query_samples: Any) -> None:
        now = time.perf_counter()
        batcher.enqueue([Request(q.id, q.index, now) for q in query_samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(samples, samples, lambda indices: None, lambda indices: None)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    failed: list[BaseException] = []

    def drive() -> None:  # LoadGen in a thread of its own; the batcher (and the model) in this one
        try:
            lg.StartTestWithLogSettings(sut, qsl, knobs.settings(lg), log)
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)
        finally:
            batcher.close()

    start = time.perf_counter()
    driver = threading.Thread(target=drive, name="densebench-loadgen", daemon=True)
    driver.start()
    try:
        batcher.serve_here()
    except BaseException:
        batcher.refuse_the_rest()  # LoadGen still waits for answers: NaN until it ends the test
        raise
    finally:
        driver.join()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if failed:
        raise failed[0]
    wall = time.perf_counter() - start
    detail = log_dir / "mlperf_log_detail.txt"
    values = read_detail(detail) if detail.is_file() else {}
    accuracy = log_dir / "mlperf_log_accuracy.json"
    return Trial(knobs, log_dir, values, latencies, batcher.log.to_json(), wall,
                 accuracy if knobs.accuracy and accuracy.is_file() else None, list(batcher.log.service_s))


def accuracy_logits(path: Path, samples: int) -> tuple[np.ndarray, list[int]]:
    """(logits (samples, classes) float32 by sample index, the indices no response came back for).

    Reads ``mlperf_log_accuracy.json``: one entry per response, ``qsl_idx`` and ``data`` (the bytes
    the response pointed at, as hex). A sample answered twice keeps its last answer; a response
    that is not a whole number of float32 values, or of another length than the others, is treated
    as missing."""
    entries = json.loads(path.read_text(encoding="utf-8") or "[]")
    rows: dict[int, np.ndarray] = {}
    for entry in entries:
        raw = bytes.fromhex(entry.get("data", ""))
        if len(raw) % 4 == 0 and raw:
            rows[int(entry["qsl_idx"])] = np.frombuffer(raw, dtype=np.float32)
    width = max((len(r) for r in rows.values()), default=0)
    logits = np.full((samples, width), np.nan, dtype=np.float32)
    missing = []
    for i in range(samples):
        row = rows.get(i)
        if row is None or len(row) != width:
            missing.append(i)
        else:
            logits[i] = row
    return logits, missing
