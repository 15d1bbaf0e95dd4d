"""The measurement core: session state (device, model, data, baseline) and one benchmark.

``DenseBench`` is created once per pytest session (lazily: nothing heavy happens until a
benchmark needs it). ``measure`` runs one optimization at one batch size:

1. input prepared on the device in the runner's dtype/format (untimed);
2. warm-up passes (untimed; pays recompiles and cuDNN autotuning);
3. parity against the baseline on the evaluation set (untimed);
4. ``benchmark(step)``: pytest-benchmark times synchronized forward passes only,
   with gc disabled and telemetry sampled in the background;
5. the cross-check and ``extra_info`` (the JSON contract).
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from . import journal as journal_mod
from . import parity as parity_mod
from . import profiling, summary, telemetry, timing
from .optimizations import BuildContext, Runner, Unavailable, build_runner, flags
from .progress import Progress
from .settings import Settings


class InputError(Exception):
    """The weights or the dataset cannot be used: nothing can be measured."""


class BuildFailed(Exception):
    """Building an optimization raised; kept so later batch sizes fail fast with the same error."""


class OutOfMemory(Exception):
    """This optimization and batch size do not fit in memory: recorded as 'oom', the run goes on."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


@dataclass
class Outcome:
    optimization: str
    batch_size: int | None
    status: str  # measured | skipped | failed | oom | parity_failed
    reason: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"optimization": self.optimization, "batch_size": self.batch_size, "status": self.status,
                "reason": self.reason, **self.summary}


@dataclass
class Measurement:
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


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError))


def device_name(device: Any) -> str:
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return telemetry.cpu_model_name()


class DenseBench:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.outcomes: list[Outcome] = []
        self._runner: tuple[str, Runner | BaseException] | None = None
        self.run_name = profiling.run_name()
        self.worker: dict[str, Any] | None = None  # this xdist worker's pinning
        self.parallel: dict[str, Any] | None = None  # on an xdist controller: workers and pinning
        self.workers: list[dict[str, Any]] = []  # on an xdist controller: each worker's run record
        self.children: dict[str, Any] = {}  # --densebench-isolate: optimization -> its ChildRun
        self.memory_trace: list[dict[str, Any]] = []  # memory after each optimization is released
        self.recovered: list[str] = []  # unfinished journals of earlier runs, recovered at start
        self.journal: journal_mod.Journal | None = None
        if settings.journal != "off":
            from .parallel import worker_id

            worker = worker_id()
            name = f"journal-{self.run_name}" + (f"-{worker}" if worker else "") + ".jsonl"
            path = Path(settings.journal) if settings.journal != "auto" else settings.output / "journals" / name
            self.journal = journal_mod.Journal(path, header=self.journal_header)
        self.scalars = profiling.Scalars(settings.output, self.run_name) if settings.tensorboard else None
        self.progress = Progress.off()  # progress.py: the plugin sets the run's once it has collected

    # ------------------------------------------------------------ session resources (lazy)

    @cached_property
    def device(self) -> Any:
        import torch

        dev = self.settings.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(dev)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", 0)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    @cached_property
    def model_and_weights(self) -> tuple[Any, Any]:
        from .model import build_model

        return build_model(self.settings.weights, self.settings.seed, self.settings.offline)

    @property
    def model(self) -> Any:
        return self.model_and_weights[0]

    @property
    def weights(self) -> Any:
        return self.model_and_weights[1]

    @cached_property
    def data(self) -> Any:
        from . import data

        s = self.settings
        n = max(s.eval_samples + s.calibration_samples, max(s.batch_sizes, default=1))
        return data.load(s.dataset, s.data_dir, n, s.image_size, s.seed, s.offline)

    @cached_property
    def eval_set(self) -> tuple[Any, Any]:
        return self.data.eval_set(self.settings.eval_samples)

    @cached_property
    def calibration(self) -> tuple[Any, bool]:
        """(calibration images for quantization, whether they overlap the parity images)."""
        return self.data.calibration_set(len(self.eval_set[0]), self.settings.calibration_samples)

    @cached_property
    def model_digest(self) -> str:
        """Short hash of the weights: compile/engine caches are keyed by it."""
        import hashlib

        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]

    @cached_property
    def baseline_logits(self) -> Any:
        """Strict-FP32 eager logits on the evaluation set: the parity reference."""
        images, _ = self.eval_set
        runner = build_runner("baseline", self.model, images[:1], self.context())
        try:
            with runner.activated():
                return parity_mod.predict(runner, images, min(len(images), 8))
        finally:
            runner.release()

    @cached_property
    def output_dir(self) -> Path:
        return self.settings.output

    def context(self) -> BuildContext:
        cache = (self.output_dir / "cache").resolve()
        return BuildContext(device=self.device, settings=self.settings, calibration=self.calibration[0],
                            cache_dir=cache, model_digest=self.model_digest)

    @property
    def thresholds(self) -> parity_mod.Thresholds:
        s = self.settings
        return parity_mod.Thresholds(s.parity_top1, s.parity_top5, s.parity_logit_error, s.parity_tie_band)

    def prepare(self) -> None:
        """Load weights, data and the baseline now; raise ``InputError`` on unusable input."""
        from .data import DataError
        from .model import WeightsError

        self.progress.waiting("loading the model, data and baseline")
        try:
            _ = self.device, self.model, self.data, self.baseline_logits
        except (DataError, WeightsError) as exc:
            raise InputError(str(exc)) from None

    # ------------------------------------------------------------ runners

    def release_runner(self) -> None:
        released = self._runner[0] if self._runner is not None else None
        if self._runner is not None and isinstance(self._runner[1], Runner):
            self._runner[1].release()
        self._runner = None
        self._free_device_memory()
        if released is not None:
            self.memory_trace.append({"after_releasing": released, **telemetry.memory_now(self.device)})

    def _free_device_memory(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def runner(self, name: str, batch_size: int) -> Runner:
        """The built runner for ``name`` (built on first use, kept while its benchmarks run).

        Raises ``Unavailable`` (skip) or ``BuildFailed`` (fail); either is remembered, so the
        other batch sizes of the same optimization report it without rebuilding.
        """
        if self._runner is None or self._runner[0] != name:
            self.release_runner()
            self.progress.stage(name, batch_size, "building")
            try:
                built: Runner | BaseException = build_runner(
                    name, self.model, self.data.batch(batch_size), self.context())
            except Unavailable as exc:
                built = exc
            except Exception as exc:  # contained: this optimization fails, the run goes on
                if is_oom(exc):
                    built = OutOfMemory(f"out of memory while building {name} at batch size {batch_size}: "
                                        f"{_first_line(exc)}")
                else:
                    built = BuildFailed(f"building {name} failed: {type(exc).__name__}: {_first_line(exc)}")
                built.__cause__ = exc
                self._free_device_memory()
            self._runner = (name, built)
        result = self._runner[1]
        if isinstance(result, BaseException):
            raise result
        return result

    def note(self, optimization: str, batch_size: int | None, status: str, reason: str | None = None,
             **summary: Any) -> None:
        outcome = Outcome(optimization, batch_size, status, reason, summary)
        self.progress.finished(optimization, batch_size, status, reason)
        self.outcomes.append(outcome)
        if self.journal is not None:
            self.journal.write({"type": "outcome", "outcome": outcome.as_dict()})

    def journal_header(self) -> dict[str, Any]:
        """The journal's first line: what recovery needs to rebuild a pytest-benchmark JSON."""
        import datetime

        return {"datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "machine_info": self.machine_info() if self.machine_info else {},
                "commit_info": self.commit_info() if self.commit_info else {},
                "densebench": self.run_info()}

    machine_info: Any = None  # set by the plugin: () -> pytest-benchmark machine_info
    commit_info: Any = None

    def journal_benchmark(self, benchmark: Any) -> None:
        stats = getattr(benchmark, "stats", None)
        if stats is not None:
            self.journal_benchmark_data(stats.as_dict(include_data=True))

    def journal_benchmark_data(self, data: dict[str, Any]) -> None:
        """One finished benchmark as pytest-benchmark saves it (raw timings included)."""
        if self.journal is not None:
            self.journal.write({"type": "benchmark", "benchmark": data})

    # ------------------------------------------------------------ one benchmark

    def measure(self, benchmark: Any, runner: Runner, batch_size: int) -> Measurement:
        """Warm up, check parity, time with ``benchmark`` and fill ``benchmark.extra_info``."""
        import torch

        s = self.settings
        device = self.device
        sync = timing.synchronizer(device)
        first_use = not getattr(runner, "_measured", False)
        runner._measured = True  # type: ignore[attr-defined]
        images, labels = self.eval_set
        reference = self.baseline_logits

        benchmark.group = f"batch_size={batch_size}"
        where = f"{runner.name} at batch size {batch_size}"
        with runner.activated():
            oom = None
            try:
                self.progress.stage(runner.name, batch_size, "warming up")
                x = runner.prepare(self.data.batch(batch_size))
                sync()
                start = time.perf_counter()
                for _ in range(s.warmup):
                    runner(x)
                sync()
                warmup_s = time.perf_counter() - start
                self.progress.stage(runner.name, batch_size, "parity")
                logits = parity_mod.predict(runner, images, batch_size)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                oom = f"out of memory: {where}: {_first_line(exc)}"
            if oom:  # raised outside the handler, so no traceback keeps the big tensors alive
                x = None
                self._free_device_memory()
                raise OutOfMemory(oom)
            label_note = None
            if labels is not None and self.weights.source != "imagenet":
                label_note = "weights are not ImageNet weights: accuracy is not meaningful"
            parity = parity_mod.compare(reference, logits, labels, self.thresholds, label_note)

            step = timing.make_step(runner, x, device)
            compiles_before = _compile_count()
            monitor = telemetry.Monitor(device, s)
            gc_was_enabled = gc.isenabled()
            gc.collect()
            gc.disable()
            self.progress.stage(runner.name, batch_size, "timing")
            try:
                with monitor:
                    benchmark(step)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                oom = f"out of memory: {where} while timing: {_first_line(exc)}"
            finally:
                if gc_was_enabled:
                    gc.enable()
            if oom:
                step.x = x = None
                self._free_device_memory()
                raise OutOfMemory(oom)
            recompiles = _compile_count() - compiles_before
            calls_in_window = step.calls
            crosscheck = None
            stats = getattr(benchmark, "stats", None)
            if s.crosscheck and stats is not None:
                self.progress.stage(runner.name, batch_size, "cross-checking")
                if device.type == "cuda":
                    crosscheck = timing.cuda_crosscheck(step)
                else:
                    crosscheck = timing.cpu_crosscheck(step, torch.get_num_threads(), stats.stats.median)
            profile = None
            if s.profile:  # extra rounds after timing, never inside the timed ones
                self.progress.stage(runner.name, batch_size, "profiling")
                profile = profiling.profile_rounds(step, device, s.output, self.run_name,
                                                   f"{runner.name}-bs{batch_size}", s.profile_rounds)
        info = self._extra_info(benchmark, runner, batch_size, warmup_s, first_use, parity, monitor,
                                crosscheck, recompiles, calls_in_window)
        if profile is not None:
            info["profile"] = profile
        if self.scalars is not None:
            info["tensorboard_run"] = str(self.scalars.write(info))
        benchmark.extra_info.update(info)
        self.journal_benchmark(benchmark)
        self.note(runner.name, batch_size, "measured" if parity["passed"] else "parity_failed",
                  None if parity["passed"] else "; ".join(parity["failures"]),
                  throughput_samples_per_s=info["throughput_samples_per_s"], latency_ms=info["latency_ms"],
                  peak_memory_mb=telemetry.peak_memory_mb(info), precision=runner.precision,
                  build_s=info["build_s"], warmup_s=info["warmup_s"])
        if recompiles:
            raise AssertionError(f"{runner.name}: {recompiles} compilation(s) happened inside the timed rounds; "
                                 "the warm-up did not cover this shape, so these numbers include compile time")
        return Measurement(benchmark.extra_info)

    def _extra_info(self, benchmark: Any, runner: Runner, batch_size: int, warmup_s: float, first_use: bool,
                    parity: dict[str, Any], monitor: Any, crosscheck: dict[str, Any] | None,
                    recompiles: int, calls: int) -> dict[str, Any]:
        s = self.settings
        stats = getattr(benchmark, "stats", None)
        rounds = list(stats.stats.data) if stats is not None else []
        median_s = statistics.median(rounds) if rounds else None
        latency = timing.latency_ms(rounds) if rounds else None
        build_s = runner.build_s if first_use else 0.0
        info: dict[str, Any] = {
            "optimization": runner.name,
            "batch_size": batch_size,
            "image_size": s.image_size,
            "device": str(self.device),
            "device_name": device_name(self.device),
            "precision": runner.precision,
            "throughput_samples_per_s": timing.throughput(batch_size, median_s) if median_s else None,
            "latency_ms": latency,
            "setup_s": build_s + warmup_s,
            "build_s": build_s,
            "build_s_total": runner.build_s,
            "warmup_s": warmup_s,
            "warmup_iterations": s.warmup,
            "recompiles_during_timing": recompiles,
            "parity": parity,
            "runner": {"parts": list(runner.plan.parts), "input_dtype": str(runner.input_dtype).replace("torch.", ""),
                       "memory_format": runner.plan.memory_format, **runner.info},
            "weights": self.weights.source,
            "dataset": self.data.info.source,
        }
        if self.worker is not None:
            info["worker"] = self.worker
        if crosscheck is not None and median_s:
            other = crosscheck.get("median_ms")
            crosscheck["ratio"] = (other / (median_s * 1e3)) if other else None
            # Noise on a shared machine only adds time, so the fastest rounds of the two timers
            # agree even when a burst of load moves one median: the lower tails are the steadier check.
            other_min = crosscheck.get("min_ms")
            crosscheck["ratio_min"] = (other_min / latency["min"]) if other_min and latency else None
        info["crosscheck"] = crosscheck
        info.update(monitor.result(batch_size, calls))
        return info

    def add_worker(self, run_info: dict[str, Any]) -> None:
        """On an xdist controller: take in a worker's outcomes and record."""
        self.workers.append(run_info)
        self.merge_outcomes(run_info.get("outcomes", []))

    def merge_outcomes(self, outcomes: list[dict[str, Any]]) -> None:
        """Outcomes measured in another process (xdist worker, isolated child), noted and journaled here."""
        for o in outcomes:
            o = dict(o)
            self.note(o.pop("optimization"), o.pop("batch_size"), o.pop("status"), o.pop("reason"), **o)

    def finish(self) -> None:
        """All benchmarks ran: release the last runner (its memory is measured like the others')."""
        if self._runner is not None:
            self.release_runner()

    def close(self) -> None:
        """End of the session: release the last runner, flush TensorBoard writers, close the journal."""
        self.finish()
        self.progress.close()
        if self.scalars is not None:
            self.scalars.close()
        if self.journal is not None:
            self.journal.close(complete=True)

    # ------------------------------------------------------------ run-level record

    def run_info(self) -> dict[str, Any]:
        from . import __version__

        info: dict[str, Any] = {"version": __version__, "run": self.run_name,
                                "settings": self.settings.as_dict(),
                                "outcomes": [o.as_dict() for o in self.outcomes]}
        if self.scalars is not None:
            info["tensorboard_logdir"] = str(self.scalars.dir)
        if "device" in self.__dict__:
            info["device"] = str(self.device)
            info["device_name"] = device_name(self.device)
        if "model_and_weights" in self.__dict__:
            info["weights"] = self.weights.as_dict()
        if "data" in self.__dict__:
            info["dataset"] = self.data.info.as_dict()
        if self.workers:
            info["workers"] = [{k: w.get(k) for k in ("worker", "device", "device_name", "weights", "dataset")}
                               for w in self.workers]
        # What this process did not load itself, from the first worker, else the first child.
        for other in self.workers[:1] + [c.run_info for c in list(self.children.values())[:1]]:
            for key in ("device", "device_name", "weights", "dataset", "calibration"):
                if key not in info and key in other:
                    info[key] = other[key]
        if self.children:
            info["isolated"] = {opt: {"returncode": c.returncode, "timed_out": c.timed_out,
                                      "elapsed_s": c.elapsed_s, "log": str(c.log)}
                                for opt, c in self.children.items()}
        if self.worker is not None:
            info["worker"] = self.worker
        if self.parallel is not None:
            info["parallel"] = self.parallel
        if self.journal is not None:
            info["journal"] = str(self.journal.path)
        if self.recovered:
            info["recovered_journals"] = self.recovered
        if self.memory_trace:
            info["memory_trace"] = self.memory_trace
        if "calibration" in self.__dict__:
            info["calibration"] = {"images": len(self.calibration[0]), "overlaps_parity_set": self.calibration[1]}
        measured = [o for o in self.outcomes if o.status in ("measured", "parity_failed")]
        build = sum(o.summary.get("build_s") or 0.0 for o in measured)
        warm = sum(o.summary.get("warmup_s") or 0.0 for o in measured)
        info["setup_s"] = {"total": build + warm, "build": build, "warmup": warm}
        info.update(summary.recommendations(info["outcomes"], self.settings.latency_budget_ms))
        return info


def _compile_count() -> int:
    """Graphs Dynamo has compiled so far in this process (0 when Dynamo was never used)."""
    import sys

    utils = sys.modules.get("torch._dynamo.utils")
    return int(utils.counters["stats"].get("unique_graphs", 0)) if utils is not None else 0


__all__ = ["BuildFailed", "DenseBench", "Measurement", "Outcome", "flags"]
