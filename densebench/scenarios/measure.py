"""One serving scenario of one optimization: batcher set up, LoadGen tests, accuracy, the benchmark's record.

1. executor: the backend's asynchronous one (``Backed.serve``, several batches in flight) when it has
   one and ``--densebench-inflight`` is not 1, else the runner itself, one batch at a time;
2. warm-up, untimed: every batch size the batcher can form (fixed-shape backends: the padded sizes),
   then the capacity: images/s over a burst of full batches, ``in_flight`` at a time;
3. the scenario's performance test(s), with telemetry and interference watched over the window:
   offline (one LoadGen Offline test), server (the search of search.py), singlestream;
4. LoadGen's accuracy mode in the same scenario, its responses scored by densebench's parity code
   against the baseline: a batcher or asynchronous path that gives a request another request's
   answer fails here;
5. the record: a :class:`~densebench.records.BenchmarkRecord` whose ``scenario`` holds LoadGen's
   figures, the batcher and the search; its rounds (pytest-benchmark's stats) are the reported
   test's per-query latencies (offline: per-batch service times).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import noise, timing
from .. import parity as parity_mod
from ..measure import compile_count
from ..optimizations import Runner
from ..profiling import safe_name
from ..records import BenchmarkRecord, Noise, ScenarioResult
from ..resources import device_name
from . import harness, progress_batch, scenario_key
from .batcher import DynamicBatcher, Executor, SyncExecutor
from .search import Search

DEFAULT_SERVER_BUDGET_MS = 100.0  # without --densebench-latency-budget-ms (the README's first budget)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class Served:
    """A runner made ready to serve: its executor, its images and what the warm-up measured."""

    runner: Runner
    executor: Executor
    images: Any  # CPU float32 (N, 3, H, W): the evaluation images, the query sample library
    service_s: dict[int, float]  # batch size -> one batch's service time alone (s)
    fixed: bool
    images_run: int = 0  # images run in performance tests and capacity bursts (per-image telemetry)

    def pad_sizes(self, max_batch: int) -> list[int] | None:
        """Fixed-shape backends: the warmed sizes up to max_batch (a batch is padded to the next one)."""
        return sorted({n for n in self.service_s if n < max_batch} | {max_batch}) if self.fixed else None

    def batcher(self, respond: Callable[..., None], max_batch: int, max_delay_s: float) -> DynamicBatcher:
        return DynamicBatcher(self.images, self.runner.prepare, self.runner.logits, self.executor, respond,
                              max_batch, max_delay_s, self.pad_sizes(max_batch))

    def capacity(self, max_batch: int) -> float:
        """Images/s with full batches, ``in_flight`` at a time (a burst of 2 x in_flight + 1 batches, s)."""
        x = self.runner.prepare(self.images[[i % len(self.images) for i in range(max_batch)]])
        batches = 2 * self.executor.in_flight + 1
        start = time.perf_counter()
        for _ in range(batches):
            self.executor.submit(x, lambda out: None)
        self.executor.drain()
        self.images_run += batches * max_batch
        return batches * max_batch / (time.perf_counter() - start)


def executor_for(runner: Runner, in_flight: int | None, sync: Callable[[], None]) -> Executor:
    """The backend's asynchronous executor (``in_flight`` None: its own choice), or the runner itself."""
    if runner.backed.serve is not None and in_flight != 1:
        return runner.backed.serve(in_flight)
    executor = SyncExecutor(runner, sync)
    if in_flight not in (None, 1):
        executor.info["note"] = (f"--densebench-inflight {in_flight} asked for, but {runner.name} runs one batch "
                                 "at a time in densebench (no asynchronous executor for this backend)")
    return executor


def warm_sizes(max_batch: int) -> list[int]:
    """The batch sizes warmed up (and padded to, for fixed-shape backends): powers of two below max_batch,
    and max_batch."""
    return [n for n in SIZES if n < max_batch] + [max_batch]


def serve(runner: Runner, images: Any, sizes: list[int], in_flight: int | None, device: Any, warmup: int) -> Served:
    """Executor, then each batch size of ``sizes`` run ``warmup`` times through it (untimed) and once more
    alone, timed: that batch size's service time."""
    executor = executor_for(runner, in_flight, timing.synchronizer(device))
    service: dict[int, float] = {}
    for n in sorted(set(sizes)):
        x = runner.prepare(images[[i % len(images) for i in range(n)]])
        for _ in range(warmup):
            executor.submit(x, lambda out: None)
        executor.drain()
        start = time.perf_counter()
        executor.submit(x, lambda out: None)
        executor.drain()
        service[n] = time.perf_counter() - start
    return Served(runner, executor, images, service, bool(runner.backed.fixed_shapes))


def server_settings(served: Served, budget_ms: float) -> list[int]:
    """Max batch sizes to search when none were asked for, largest first: the largest warmed size whose batch is
    served within half the budget (a request may wait for one batch ahead of it), and 1."""
    fits = [n for n, t in served.service_s.items() if t * 1e3 <= budget_ms / 2]
    return sorted({max(fits, default=1), 1}, reverse=True)


def score_accuracy(trial: harness.Trial, reference: Any, labels: Any, thresholds: Any,
                   label_note: str | None) -> dict[str, Any]:
    """Parity of the logits LoadGen's accuracy log holds, by sample index, against the baseline's."""
    import torch  # heavy, optional

    samples = len(reference)
    if trial.accuracy_log is None:
        logits, missing = None, list(range(samples))
    else:
        logits, missing = harness.accuracy_logits(trial.accuracy_log, samples)
    if logits is None or logits.shape[1] != reference.shape[1]:
        parity = {"passed": False, "failures": [f"LoadGen's accuracy log has no usable responses "
                                               f"({trial.accuracy_log})"], "samples": samples}
    else:
        parity = parity_mod.compare(reference, torch.from_numpy(logits), labels, thresholds, label_note)
        if missing:
            parity["passed"] = False
            parity["failures"] = [*parity.get("failures", []), f"no response for {len(missing)} of {samples} "
                                  f"samples (first: {missing[:5]})"]
    parity["loadgen_accuracy_log"] = str(trial.accuracy_log) if trial.accuracy_log else None
    return parity


def log_dir(output: Path, run_name: str, optimization: str, scenario: str, test: str) -> Path:
    return output / "loadgen" / run_name / f"{safe_name(optimization)}-{scenario}" / test


def record(runner: Runner, batch_size: int, image_size: int, device: str, device_name: str, rounds: list[float],
           parity: dict[str, Any], telemetry: dict[str, Any], interference: dict[str, Any],
           result: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """extra_info of a scenario benchmark: a BenchmarkRecord (throughput = the achieved rate) + ``scenario``."""
    rec = BenchmarkRecord.from_measurement(
        optimization=runner.name, batch_size=batch_size, image_size=image_size, device=device,
        device_name=device_name, precision=runner.precision, round_times_s=rounds, build_s_total=runner.build_s,
        first_use=False, warmup_s=extra["warmup_s"], warmup_iterations=extra["warmup_iterations"],
        recompiles_during_timing=extra["recompiles"], parity=parity,
        runner={"parts": list(runner.plan.parts), "input_dtype": str(runner.input_dtype).replace("torch.", ""),
                "memory_format": runner.plan.memory_format, **runner.info},
        weights=extra["weights"], dataset=extra["dataset"], telemetry=telemetry)
    rec.throughput_samples_per_s = result.get("achieved_qps")
    rec.noise = Noise.from_json({"cv": None, **interference})
    rec.scenario = ScenarioResult.from_json(result)
    return rec.to_json()


@dataclass
class Plan:
    """What one scenario benchmark runs: settings resolved against this runner."""

    scenario: str
    max_batches: list[int]  # offline/singlestream: one; server: the settings searched, largest first
    max_delay_s: float
    budget_ms: float | None
    duration_ms: int
    search_s: float
    seed: int
    logs: Callable[[str], Path]  # test name -> LoadGen's log directory
    progress: Callable[[str], None] = lambda line: None
    tests: Iterator[int] = field(default_factory=lambda: itertools.count(1))  # numbers LoadGen's log directories


def _test(served: Served, plan: Plan, max_batch: int) -> Callable[[harness.Knobs, str], harness.Trial]:
    def test(knobs: harness.Knobs, kind: str) -> harness.Trial:
        name = f"{next(plan.tests):02d}-{'accuracy' if knobs.accuracy else kind}"
        trial = harness.run_test(lambda respond: served.batcher(respond, max_batch, plan.max_delay_s),
                                 len(served.images), knobs, plan.logs(name))
        if not knobs.accuracy:
            served.images_run += images_served(trial)
        return trial

    return test


def _setting(served: Served, plan: Plan, max_batch: int) -> dict[str, Any]:
    """The batcher's settings; ``service_ms``: one image alone, measured at warm-up (the latency floor)."""
    alone_s = served.service_s[min(served.service_s)]
    return {"max_batch": max_batch, "max_delay_ms": plan.max_delay_s * 1e3, **served.executor.info,
            "pad_sizes": served.pad_sizes(max_batch), "service_ms": round(alone_s * 1e3, 3)}


def performance(servings: list[Served], plan: Plan) -> tuple[dict[str, Any], harness.Trial | None,
                                                          harness.Knobs | None, Served]:
    """The scenario's performance test(s): (result JSON, the reported trial, knobs for the accuracy run, the
    serving it was measured with). Server: every serving x max batch is a setting of the search, the one
    with the highest capacity first."""
    served = servings[0]
    if plan.scenario == "server":
        budget = plan.budget_ms or DEFAULT_SERVER_BUDGET_MS
        search = Search(budget, plan.search_s, seed=plan.seed, progress=plan.progress)
        candidates = [(_setting(one, plan, m), one.capacity(m), _test(one, plan, m), one) for one in servings
                      for m in (plan.max_batches or server_settings(one, budget))]
        candidates.sort(key=lambda c: -c[1])
        found = search.run([c[:3] for c in candidates])
        setting, _, _, served = next((c for c in candidates if c[0] is found.best_setting), candidates[0])
        trial = found.best_trial or found.last_trial
        rate = found.best_qps or (found.points[-1]["target_qps"] if found.points else 1.0)
        result = {"server_search": found.to_json(), "latency_budget_ms": budget, "target_qps": found.best_qps,
                  "batcher": setting, "budget_defaulted": plan.budget_ms is None}
        return result, trial, search.knobs(rate, 1), served
    max_batch = plan.max_batches[0]
    capacity = served.capacity(max_batch)
    # LoadGen generates its queries up front from the expected rate (latency): it must not run out before the
    # minimum duration, so it is told twice the measured capacity (half the measured latency).
    if plan.scenario == "offline":
        knobs = harness.Knobs("offline", target_qps=2 * capacity, min_duration_ms=plan.duration_ms, seed=plan.seed)
    else:
        knobs = harness.Knobs("singlestream", expected_latency_ns=int(served.service_s[1] * 0.5e9),
                              min_duration_ms=plan.duration_ms, min_query_count=64, seed=plan.seed)
    trial = _repeat_until_long_enough(_test(served, plan, max_batch), knobs, plan)
    plan.progress(f"{plan.scenario}: {trial.throughput or 0:.1f} samples/s, "
                  f"{'VALID' if trial.valid else 'INVALID: ' + '; '.join(trial.invalid_reasons())}")
    return {"target_qps": knobs.target_qps, "batcher": _setting(served, plan, max_batch),
            "capacity_qps": capacity}, trial, knobs, served


def _repeat_until_long_enough(test: Callable[[harness.Knobs, str], harness.Trial], knobs: harness.Knobs,
                              plan: Plan, tries: int = 3) -> harness.Trial:
    """One offline or singlestream test; again (at most ``tries`` in all) with LoadGen told a higher rate (a
    lower latency) while it reports the minimum duration unmet because the capacity measured beforehand was
    too low (LoadGen's own advice in its summary). A shared machine can make that estimate wrong by far."""
    for attempt in range(tries):
        trial = test(knobs, "performance")
        if trial.loadgen.get("result_min_duration_met") is not False or not trial.throughput:
            return trial
        if attempt + 1 < tries:
            plan.progress(f"{plan.scenario}: LoadGen ran out of queries before the minimum duration; again with "
                          f"a higher expected rate")
        if knobs.scenario == "offline":
            knobs.target_qps = max(2 * (knobs.target_qps or 1.0), 1.5 * trial.throughput)
        else:
            knobs.expected_latency_ns = int((knobs.expected_latency_ns or 10**7) / 2)
    return trial


def result_json(plan: Plan, served: Served, perf: dict[str, Any], trial: harness.Trial | None,
                accuracy: harness.Trial | None) -> dict[str, Any]:
    """extra_info.scenario (records.ScenarioResult)."""
    out: dict[str, Any] = {"name": plan.scenario, "valid": trial.valid if trial else False,
                           "invalid_reasons": trial.invalid_reasons() if trial else
                           list((perf.get("server_search") or {}).get("reasons") or ["no test ran"]),
                           "achieved_qps": trial.throughput if trial else None,
                           "latency_ms": ({f"p{p.split('.')[0] if p.endswith('.00') else p.replace('.', '')}":
                                           trial.latency_ms(p) for p in harness.PERCENTILES} if trial else None),
                           "service_ms": {str(n): round(t * 1e3, 3) for n, t in served.service_s.items()},
                           "loadgen": trial.loadgen if trial else None,
                           "log_dir": str(trial.log_dir) if trial else None,
                           "batches": trial.batches if trial else None,
                           "accuracy_log_dir": str(accuracy.log_dir) if accuracy else None, **perf}
    return out


def plan_for(ctx: Any, runner: Runner, scenario: str) -> Plan:
    s = ctx.settings
    requested = tuple(s.batcher_max_batch) if s.batcher_max_batch else None
    limit = progress_batch(s)
    batches = [1] if scenario == "singlestream" else [limit] if scenario == "offline" else list(requested or ())
    return Plan(scenario, batches, s.batcher_max_delay_ms / 1e3, s.latency_budget_ms, s.scenario_duration_ms,
                s.server_search_s, s.seed,
                lambda test: log_dir(s.output, ctx.run_name, runner.name, scenario, test),
                lambda line: ctx.stage(scenario_key(runner.name, scenario), limit, line))


def measure_scenario(ctx: Any, runner: Runner, scenario: str) -> dict[str, Any]:
    """Run ``scenario`` for ``runner`` and return the benchmark's extra_info (also its rounds, see below).

    ``ctx`` is a measure.Context. Raises Unavailable without LoadGen. The rounds to record with
    pytest-benchmark are in ``extra_info['scenario']['rounds_s']``, removed by the caller."""
    from .. import telemetry

    harness.loadgen()
    s, res = ctx.settings, ctx.resources
    images, labels = res.eval_set
    plan = plan_for(ctx, runner, scenario)
    sizes = warm_sizes(max(plan.max_batches or s.batch_sizes)) + list(plan.max_batches)
    start = time.perf_counter()
    with runner.activated():
        ctx.stage(scenario_key(runner.name, scenario), progress_batch(s), "warming up the batcher's sizes")
        servings = [serve(runner, images, sizes, s.inflight, res.device, min(s.warmup, 2))]
        if scenario == "server" and runner.backed.serve is not None and s.inflight is None:
            # The asynchronous executor's streams split the cores, which a light load pays for in latency: the
            # search also tries the runner one batch at a time (OpenVINO: its LATENCY-hint model).
            servings.append(serve(runner, images, sizes, 1, res.device, min(s.warmup, 2)))
        warmup_s = time.perf_counter() - start
        monitor, seen = telemetry.Monitor(res.device, s), noise.Interference(res.device)
        with monitor, seen:
            compiles = compile_count()
            perf, trial, knobs, served = performance(servings, plan)
            compiles = compile_count() - compiles
        accuracy = None
        if knobs is not None:
            ctx.stage(scenario_key(runner.name, scenario), progress_batch(s), "LoadGen accuracy mode")
            knobs.accuracy, knobs.min_query_count, knobs.min_duration_ms, knobs.max_duration_ms = True, 1, 0, 0
            batch = perf["batcher"]["max_batch"]
            accuracy = _test(served, plan, batch)(knobs, "accuracy")
    parity = score_accuracy(accuracy, res.baseline_logits, labels, res.thresholds, None) if accuracy else \
        {"passed": False, "failures": ["no accuracy run"], "samples": len(images)}
    result = result_json(plan, served, perf, trial, accuracy)
    rounds = (trial.latencies_s if scenario != "offline" else list(trial.service_s)) if trial else []
    images_run = sum(one.images_run for one in servings) or None  # everything the telemetry window saw
    info = record(runner, perf["batcher"]["max_batch"], s.image_size, str(res.device), device_name(res.device),
                  rounds, parity, monitor.result(1, images_run), seen.result(), result,
                  {"warmup_s": warmup_s, "warmup_iterations": min(s.warmup, 2), "recompiles": compiles,
                   "weights": res.weights.source, "dataset": res.data.info.source})
    info["scenario"]["rounds_s"] = rounds
    return info


def images_served(trial: harness.Trial | None) -> int:
    batches = (trial.batches if trial else None) or {}
    return round((batches.get("batches") or 0) * (batches.get("mean_batch_size") or 0))
