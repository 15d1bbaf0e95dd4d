"""One benchmark: prepare, warm up, parity, time, telemetry -> the benchmark's record.

Role-free: :func:`measure` runs one optimization at one batch size in this process and
returns what was measured; the calling role journals it and notes the outcome.

1. input prepared on the device in the runner's dtype/format (untimed);
2. warm-up passes (untimed; pays recompiles and cuDNN autotuning);
3. parity against the baseline on the evaluation set (untimed);
4. ``benchmark(step)``: pytest-benchmark times synchronized forward passes only,
   with gc disabled and telemetry sampled in the background;
5. the cross-check and ``extra_info`` (the JSON contract).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import noise, paired, profiling, storage, telemetry, timing
from . import parity as parity_mod
from .errors import OutOfMemory
from .optimizations import Runner
from .records import BenchmarkRecord, Noise, Outcome, PairedSpeedup, Profile, ScenarioOutcome, Status
from .resources import Resources, device_name, first_line, is_oom
from .settings import Settings


@dataclass
class Measurement:
    """A benchmark's ``extra_info`` as the suite's test sees it (parity decides pass or fail)."""

    extra_info: dict[str, Any]

    @property
    def parity(self) -> dict[str, Any]:
        return self.extra_info["parity"]

    def parity_message(self) -> str:
        p = self.parity
        return (f"{self.extra_info['optimization']} at batch size {self.extra_info['batch_size']} does not match "
                f"the baseline: {'; '.join(p['failures'])} (top-1 {p['top1_agreement']:.3f} raw, "
                f"{p['top1_agreement_tie_aware']:.3f} tie-aware, top-5 "
                f"{p['top5_agreement']:.3f}, logit error {p['logit_error']}, over {p['samples']} images; "
                "thresholds: --densebench-parity-top1/-top5/-logit-error/-tie-band)")

    def scenario_message(self) -> str:
        """Why a serving scenario's answers failed parity (LoadGen's accuracy mode against the baseline)."""
        info, p = self.extra_info, self.parity
        scenario = (info.get("scenario") or {}).get("name", "?")
        return (f"{info['optimization']} in the {scenario} scenario: the answers LoadGen's accuracy mode collected "
                f"do not match the baseline's: {'; '.join(p.get('failures') or ['unknown'])} (logs: "
                f"{(info.get('scenario') or {}).get('accuracy_log_dir')})")

    def scenario_outcome(self) -> ScenarioOutcome:
        """A serving scenario's outcome: measured, or parity_failed when LoadGen's accuracy run did not match."""
        info, parity = self.extra_info, self.parity
        scenario = info.get("scenario") or {}
        batcher = scenario.get("batcher") or {}
        search = scenario.get("server_search") or {}
        return ScenarioOutcome.from_json({
            "optimization": info["optimization"], "scenario": scenario.get("name"),
            "status": Status.MEASURED if parity.get("passed") else Status.PARITY_FAILED,
            "reason": None if parity.get("passed") else "; ".join(parity.get("failures") or []),
            "valid": scenario.get("valid"), "achieved_qps": scenario.get("achieved_qps"),
            "p99_ms": (scenario.get("latency_ms") or {}).get("p99"),
            "highest_valid_qps": search.get("highest_valid_qps") if search else None,
            "latency_budget_ms": scenario.get("latency_budget_ms"), "max_batch": batcher.get("max_batch"),
            "in_flight": batcher.get("in_flight"),
            "invalid_reasons": None if scenario.get("valid") else scenario.get("invalid_reasons")})

    def outcome(self) -> Outcome:
        """The configuration's outcome: measured, or parity_failed with the failures as the reason."""
        info, parity = self.extra_info, self.parity
        seen = info.get("noise") or {}
        return Outcome.from_json({
            "optimization": info["optimization"], "batch_size": info["batch_size"],
            "status": Status.MEASURED if parity["passed"] else Status.PARITY_FAILED,
            "reason": None if parity["passed"] else "; ".join(parity["failures"]),
            "throughput_samples_per_s": info["throughput_samples_per_s"], "latency_ms": info["latency_ms"],
            "peak_memory_mb": telemetry.peak_memory_mb(info), "precision": info["precision"],
            "build_s": info["build_s"], "warmup_s": info["warmup_s"], "speedup": info.get("speedup"),
            "noise_warning": seen.get("warning"), "noise_cv": seen.get("cv"), "noise_cause": seen.get("cause")})


@dataclass
class Context:
    """Where a measurement happens: the run's resources and what the record says about the process."""

    resources: Resources
    run_name: str
    scalars: Any = None  # profiling.Scalars when --densebench-tensorboard
    worker: dict[str, Any] | None = None  # this xdist worker's pinning
    stage: Callable[[str, int, str], None] = lambda optimization, batch_size, what: None  # progress

    @property
    def settings(self) -> Settings:
        return self.resources.settings


@dataclass
class _Timed:
    warmup_s: float
    parity: dict[str, Any]
    monitor: Any
    recompiles: int
    calls: int
    crosscheck: dict[str, Any] | None
    profile: dict[str, Any] | None
    interference: dict[str, Any]
    speedup: dict[str, Any] | None = None


def measure(ctx: Context, benchmark: Any, runner: Runner, batch_size: int, first_use: bool) -> Measurement:
    """Warm up, check parity, time with ``benchmark`` and fill ``benchmark.extra_info``.

    Raises OutOfMemory when the configuration does not fit, and AssertionError when Dynamo
    compiled inside the timed rounds (after ``extra_info`` is filled, so nothing is lost)."""
    benchmark.group = f"batch_size={batch_size}"
    with runner.activated():
        timed = _warm_time_and_check(ctx, benchmark, runner, batch_size)
    timed.speedup = _paired_speedup(ctx, runner, batch_size)
    info = _extra_info(ctx, benchmark, runner, batch_size, first_use, timed)
    benchmark.extra_info.update(info)
    return Measurement(benchmark.extra_info)


def recompile_error(measurement: Measurement) -> str | None:
    """Why the numbers include compile time, or None."""
    info = measurement.extra_info
    if not info.get("recompiles_during_timing"):
        return None
    return (f"{info['optimization']}: {info['recompiles_during_timing']} compilation(s) happened inside the timed "
            "rounds; the warm-up did not cover this shape, so these numbers include compile time")


def _warm_time_and_check(ctx: Context, benchmark: Any, runner: Runner, batch_size: int) -> _Timed:
    s, res = ctx.settings, ctx.resources
    device = res.device
    where = f"{runner.name} at batch size {batch_size}"
    images, labels = res.eval_set
    reference = res.baseline_logits
    sync = timing.synchronizer(device)
    oom = None
    try:
        ctx.stage(runner.name, batch_size, "warming up")
        x = runner.prepare(res.data.batch(batch_size))
        sync()
        start = time.perf_counter()
        for _ in range(s.warmup):
            runner(x)
        sync()
        warmup_s = time.perf_counter() - start
        ctx.stage(runner.name, batch_size, "parity")
        logits = parity_mod.predict(runner, images, batch_size)
    except Exception as exc:
        if not is_oom(exc):
            raise
        oom = f"out of memory: {where}: {first_line(exc)}"
    if oom:  # raised outside the handler, so no traceback keeps the big tensors alive
        x = None
        res.free_device_memory()
        raise OutOfMemory(oom)
    label_note = res.data.info.extra.get("label_reason")  # why a folder dataset has no ImageNet labels
    if labels is not None and res.weights.source != "imagenet":
        label_note = "weights are not ImageNet weights: accuracy is not meaningful"
    parity = parity_mod.compare(reference, logits, labels, res.thresholds, label_note)
    step = timing.make_step(runner, x, device)
    ctx.stage(runner.name, batch_size, "timing")
    monitor, recompiles, interference = _time(ctx, benchmark, step, where)
    calls_in_window = step.calls  # before the cross-check and profile rounds, which run outside the window
    if s.crosscheck:
        ctx.stage(runner.name, batch_size, "cross-checking")
    crosscheck = _crosscheck(ctx, benchmark, step)
    profile = None
    if s.profile:  # extra rounds after timing, never inside the timed ones
        ctx.stage(runner.name, batch_size, "profiling")
        profile = storage.guarded("profiler traces", s.output / "profiles", "this benchmark has no profile; its "
                                  "timings are kept", lambda: profiling.profile_rounds(
                                      step, device, s.output, ctx.run_name, f"{runner.name}-bs{batch_size}",
                                      s.profile_rounds))
    return _Timed(warmup_s, parity, monitor, recompiles, calls_in_window, crosscheck, profile, interference)


def _time(ctx: Context, benchmark: Any, step: Any, where: str) -> tuple[Any, int, dict[str, Any]]:
    """pytest-benchmark's timed rounds, gc off, telemetry sampled: (monitor, recompiles inside the rounds,
    interference seen in the window)."""
    compiles_before = compile_count()
    monitor = telemetry.Monitor(ctx.resources.device, ctx.settings)
    seen = noise.Interference(ctx.resources.device)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    oom = None
    try:
        with monitor, seen:
            benchmark(step)
    except Exception as exc:
        if not is_oom(exc):
            raise
        oom = f"out of memory: {where} while timing: {first_line(exc)}"
    finally:
        if gc_was_enabled:
            gc.enable()
    if oom:
        step.x = None
        ctx.resources.free_device_memory()
        raise OutOfMemory(oom)
    return monitor, compile_count() - compiles_before, seen.result()


def _paired_speedup(ctx: Context, runner: Runner, batch_size: int) -> dict[str, Any] | None:
    """The paired speedup over a baseline kept alive beside ``runner`` (None for the baseline itself,
    with --densebench-paired-rounds=0, or when the two do not fit in memory together)."""
    s, res = ctx.settings, ctx.resources
    if runner.name == "baseline" or s.paired_rounds < 2:
        return None
    ctx.stage(runner.name, batch_size, "paired rounds with the baseline")

    def progress(pairs: int, half_width: float) -> None:  # after each step of sequential stopping
        ctx.stage(runner.name, batch_size, f"paired rounds: {pairs}/{s.paired_max_rounds} pairs, "
                  f"CI +-{half_width:.1%} (target +-{s.paired_target_ci * 100:g}%)")
    try:
        ratio, base, cand = paired.speedup_over_baseline(res.paired_baseline, runner, res.data.batch(batch_size),
                                                         res.device, s.paired_rounds, s.warmup, s.seed,
                                                         s.paired_max_rounds, s.paired_target_ci, progress)
    except Exception as exc:
        if not is_oom(exc):
            raise
        res.free_device_memory()
        return None
    return {**ratio.to_json(), "baseline_turns_ms": [round(t * 1e3, 4) for t in base],
            "candidate_turns_ms": [round(t * 1e3, 4) for t in cand]}


def _crosscheck(ctx: Context, benchmark: Any, step: Any) -> dict[str, Any] | None:
    stats = getattr(benchmark, "stats", None)
    if not ctx.settings.crosscheck or stats is None:
        return None
    if ctx.resources.device.type == "cuda":
        return timing.cuda_crosscheck(step)
    import torch  # heavy, optional

    return timing.cpu_crosscheck(step, torch.get_num_threads(), stats.stats.median)


def _extra_info(ctx: Context, benchmark: Any, runner: Runner, batch_size: int, first_use: bool,
                timed: _Timed) -> dict[str, Any]:
    s, res = ctx.settings, ctx.resources
    stats = getattr(benchmark, "stats", None)
    record = BenchmarkRecord.from_measurement(
        optimization=runner.name, batch_size=batch_size, image_size=s.image_size, device=str(res.device),
        device_name=device_name(res.device), precision=runner.precision,
        round_times_s=list(stats.stats.data) if stats is not None else [], build_s_total=runner.build_s,
        first_use=first_use, warmup_s=timed.warmup_s, warmup_iterations=s.warmup,
        recompiles_during_timing=timed.recompiles, parity=timed.parity,
        runner={"parts": list(runner.plan.parts), "input_dtype": str(runner.input_dtype).replace("torch.", ""),
                "memory_format": runner.plan.memory_format, **runner.info},
        weights=res.weights.source, dataset=res.data.info.source,
        telemetry=timed.monitor.result(batch_size, timed.calls), crosscheck=timed.crosscheck, worker=ctx.worker)
    if timed.profile is not None:
        record.profile = Profile.from_json(timed.profile)
    record.denormals_flushed = runner.denormals_flushed
    if timed.speedup is not None:
        record.speedup = PairedSpeedup.from_json(timed.speedup)
    rounds = list(stats.stats.data) if stats is not None else []
    seen = {"cv": paired.cv(rounds), **timed.interference}
    if seen["cv"] is not None:
        seen["warning"] = noise.warning(f"{runner.name} at batch size {batch_size}: the rounds' CV", seen["cv"],
                                        noise.GATE_THRESHOLD, seen)
    record.noise = Noise.from_json(seen)
    info = record.to_json()
    if ctx.scalars is not None:
        written = storage.guarded("TensorBoard scalars", ctx.scalars.dir, "the benchmark's figures are kept in the "
                                  "JSON", lambda: ctx.scalars.write(info))
        if written is not None:
            info["tensorboard_run"] = str(written)
    return info


def compile_count() -> int:
    """Graphs Dynamo has compiled so far in this process (0 when Dynamo was never used)."""
    utils = sys.modules.get("torch._dynamo.utils")
    return int(utils.counters["stats"].get("unique_graphs", 0)) if utils is not None else 0
