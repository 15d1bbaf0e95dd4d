"""Typed records of the saved JSON (the public contract), the outcome statuses, and its JSON Schema.

pytest-benchmark saves one JSON document per run. densebench fills each benchmark's
``extra_info`` (:class:`BenchmarkRecord`) and adds a top-level ``densebench`` object
(:class:`RunRecord`, whose ``outcomes`` are :class:`Outcome` records with a :class:`Status`);
:class:`ResultsFile` is the whole document. The JSON names are a public contract: extended,
never renamed. Where a name carries no unit, the field's ``unit`` (in its metadata and in the
schema's description) says it.

Every record is a dataclass with

* ``to_json() -> dict``: exactly the dict the JSON holds (plain dicts, lists, strings, numbers);
* ``from_json(d)``: reads the dict of any version. A field an older file lacks is ``None`` and
  stays absent in ``to_json()``; a key this version does not know is kept in ``extra`` and
  written back; a value of an unexpected shape is kept as it is. It never raises on a JSON
  object (checking the shape is the schema's job), so ``R.from_json(d).to_json() == d``.

Which keys ``to_json()`` writes for a record built in code: a field marked ``optional`` only
when it is not ``None`` (e.g. ``worker``, ``profile``); every other field always, as ``null``
when it is ``None`` ("a value that cannot be measured is null, with a reason"). A record read
with ``from_json`` writes back exactly the keys it was read with (plus fields set since).
``required`` fields are in every file densebench has written: the schema requires them.

:func:`json_schema` generates the JSON Schema (draft 2020-12) from these classes. It is
committed as ``docs/schema/densebench-results.schema.json``; regenerate it with
``python -m densebench.records -o docs/schema/densebench-results.schema.json`` (a test fails
when the two differ). This module imports only the standard library: reading results needs
no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import functools
import json
import statistics
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, Union, get_args, get_origin, get_type_hints

from . import timing

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_PATH = Path("docs") / "schema" / "densebench-results.schema.json"  # relative to the repository root

# ---------------------------------------------------------------- statuses


class Status(str, enum.Enum):
    """What happened to one optimization at one batch size (``densebench.outcomes[].status``).

    A ``str`` enum: a member equals, hashes and formats like its value, so ``"oom" in
    {Status.OOM}`` holds, ``f"{Status.OOM}"`` is ``oom`` and ``json.dumps`` writes ``"oom"``.
    """

    MEASURED = "measured"
    PARITY_FAILED = "parity_failed"
    SKIPPED = "skipped"
    FAILED = "failed"
    OOM = "oom"
    CRASHED = "crashed"
    TIMEOUT = "timeout"

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def meaning(self) -> str:
        return STATUS_MEANING[self]

    @property
    def timed(self) -> bool:
        """Rounds were timed: the outcome has throughput, latency and memory figures."""
        return self in TIMED_STATUSES

    @classmethod
    def parse(cls, value: Any) -> Status | Any:
        """The member for ``value``; a value this version does not know is returned as it is."""
        try:
            return cls(value)
        except ValueError:
            return value


STATUS_MEANING: dict[Status, str] = {
    Status.MEASURED: "timed, and parity with the baseline passed",
    Status.PARITY_FAILED: "timed, but its predictions do not match the baseline's (excluded from rankings)",
    Status.SKIPPED: "cannot run here: the reason names the missing device, package or hardware feature",
    Status.FAILED: "building or running it raised: the reason has the error",
    Status.OOM: "out of memory (the allocator's error, or the child process was killed with SIGKILL)",
    Status.CRASHED: "its isolated child process died (signal or non-zero exit) before finishing",
    Status.TIMEOUT: "its isolated child process ran past --densebench-timeout and was killed",
}

TIMED_STATUSES: frozenset[Status] = frozenset({Status.MEASURED, Status.PARITY_FAILED})
"""Rounds were timed: the outcome carries throughput, latency, memory and setup figures."""

UNTIMED_STATUSES: frozenset[Status] = frozenset(Status) - TIMED_STATUSES
"""Nothing was timed: skipped, failed, oom, crashed, timeout."""

PROBLEM_STATUSES: frozenset[Status] = frozenset(Status) - {Status.MEASURED}
"""Everything but a clean measurement: what a summary tells a person about, with the reason."""


# ---------------------------------------------------------------- the record machinery


def _field(doc: str, *, unit: str | None = None, required: bool = False, optional: bool = False,
           key: str | None = None) -> Any:
    """A record field. ``doc``/``unit`` document it (and the schema); ``required``: in every file
    densebench wrote, no default; ``optional``: ``to_json`` leaves it out while it is ``None``;
    ``key``: the JSON name when it cannot be the attribute's."""
    metadata = {"doc": doc, "unit": unit, "required": required, "optional": optional, "key": key}
    if required:
        return field(metadata=metadata)
    return field(default=None, metadata=metadata)


class _Spec(NamedTuple):
    name: str  # attribute
    key: str  # JSON key
    type: Any  # resolved type hint
    doc: str
    unit: str | None
    required: bool
    optional: bool


_OWN = ("extra", "_keys")  # Record's own fields, not JSON keys


@functools.cache
def _specs(cls: type) -> tuple[_Spec, ...]:
    hints = get_type_hints(cls)
    return tuple(_Spec(f.name, f.metadata.get("key") or f.name, hints[f.name], f.metadata.get("doc", ""),
                       f.metadata.get("unit"), bool(f.metadata.get("required")), bool(f.metadata.get("optional")))
                 for f in dataclasses.fields(cls) if f.name not in _OWN)


R = TypeVar("R", bound="Record")


@dataclass(kw_only=True)
class Record:
    """Base of every record: ``to_json``/``from_json`` driven by the dataclass fields and their type hints."""

    extra: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "keys this version does not declare, kept as they were and written back flat"})
    _keys: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON object: fresh plain dicts and lists, nothing shared with this record."""
        out: dict[str, Any] = {}
        for spec in _specs(type(self)):
            value = getattr(self, spec.name)
            if self._keys is not None:
                keep = spec.key in self._keys or value is not None
            else:
                keep = value is not None or not spec.optional or self._keep_none(spec.name)
            if keep:
                out[spec.key] = _dump(value)
        for key, value in self.extra.items():
            out.setdefault(key, _dump(value))
        if self._keys is None:
            return out
        ordered = {key: out.pop(key) for key in self._keys if key in out}  # the order it was read in
        ordered.update(out)
        return ordered

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        """Read a JSON object of any version (see the module docstring); ``TypeError`` if it is not one."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_json needs a JSON object, not {type(data).__name__}")
        specs = {spec.key: spec for spec in _specs(cls)}
        values: dict[str, Any] = {spec.name: None for spec in specs.values()}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            spec = specs.get(key)
            if spec is None:
                extra[key] = _copy(value)
            else:
                values[spec.name] = _load(spec.type, value)
        record = cls(**values, extra=extra)
        record._keys = tuple(data)
        return record

    def _keep_none(self, name: str) -> bool:
        """Whether an ``optional`` field that is ``None`` is still written (as null)."""
        return False


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _fits(tp: Any, value: Any) -> bool:
    """Whether a JSON value has the shape of ``tp`` (for picking a member of a union)."""
    if tp in (int, float):  # a JSON bool is not a number
        return isinstance(value, int if tp is int else (int, float)) and not isinstance(value, bool)
    origin = get_origin(tp)
    if origin is list:
        shape: Any = list
    elif origin is dict or (isinstance(tp, type) and issubclass(tp, Record)):
        shape = Mapping
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        shape = str
    else:
        shape = object if tp is Any else tp
    return isinstance(shape, type) and isinstance(value, shape)


def _load(tp: Any, value: Any) -> Any:
    """A JSON value as type ``tp``; a value of another shape is kept as it is (never raises)."""
    if value is None:
        return None
    if _is_union(tp):
        options = [a for a in get_args(tp) if a is not type(None)]
        tp = next((a for a in options if _fits(a, value)), Any)
    origin, args = get_origin(tp), get_args(tp)
    if origin is list and isinstance(value, list):
        return [_load(args[0], v) for v in value]
    if origin is dict and isinstance(value, Mapping):
        return {k: _load(args[1], v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Record) and isinstance(value, Mapping):
        return tp.from_json(value)
    if isinstance(tp, type) and issubclass(tp, Status):
        return Status.parse(value)
    return _copy(value)


def _as(cls: type[R], value: R | Mapping[str, Any] | None) -> R | None:
    """``value`` as a ``cls`` record: a dict is read with ``from_json`` (so its keys are kept exactly)."""
    if value is None or isinstance(value, cls):
        return value
    return cls.from_json(value)


# ---------------------------------------------------------------- one benchmark: extra_info


@dataclass(kw_only=True)
class Latency(Record):
    """Percentiles of the timed round times, as ``timing.latency_ms`` computes them (milliseconds per batch)."""

    p50: float = _field("median round time", unit="ms", required=True)
    p90: float = _field("90th percentile (linear interpolation)", unit="ms", required=True)
    p99: float = _field("99th percentile (linear interpolation)", unit="ms", required=True)
    mean: float = _field("mean round time", unit="ms", required=True)
    min: float = _field("fastest round", unit="ms", required=True)
    max: float = _field("slowest round", unit="ms", required=True)


@dataclass(kw_only=True)
class ParityThresholds(Record):
    """The thresholds parity was checked against (``--densebench-parity-*``)."""

    top1_agreement_tie_aware: float = _field("smallest tie-aware top-1 agreement that passes", unit="fraction 0..1",
                                             required=True)
    top5_agreement: float = _field("smallest top-5 agreement that passes", unit="fraction 0..1", required=True)
    logit_error: float = _field("largest relative logit error that passes", unit="ratio", required=True)
    tie_band: float = _field("a top-1 flip within this fraction of the image's logit range is a near-tie",
                             unit="fraction of the logit range", required=True)


@dataclass(kw_only=True)
class Accuracy(Record):
    """Top-1/top-5 accuracy against ImageNet labels, of the optimization and of the baseline."""

    top1: float = _field("top-1 accuracy", unit="fraction 0..1", required=True)
    top5: float = _field("top-5 accuracy", unit="fraction 0..1", required=True)
    baseline_top1: float = _field("the baseline's top-1 accuracy", unit="fraction 0..1", required=True)
    baseline_top5: float = _field("the baseline's top-5 accuracy", unit="fraction 0..1", required=True)


@dataclass(kw_only=True)
class Parity(Record):
    """Do the optimization's predictions match the strict-FP32 baseline's (``parity.compare``)?"""

    reference: str = _field("what the predictions are compared with ('baseline')", required=True)
    samples: int = _field("images in the evaluation set", unit="images", required=True)
    top1_agreement: float = _field("images whose top-1 class is the baseline's", unit="fraction 0..1", required=True)
    top1_agreement_tie_aware: float = _field("the same, not counting flips between near-tied classes",
                                             unit="fraction 0..1", required=True)
    top1_flips: int = _field("images whose top-1 class differs from the baseline's", unit="images", required=True)
    top1_flips_near_tie: int = _field("of those, flips between classes the baseline itself nearly tied",
                                      unit="images", required=True)
    top5_agreement: float = _field("images whose top-5 contains the baseline's top-1", unit="fraction 0..1",
                                   required=True)
    logit_error: float | None = _field("||logits - baseline|| / ||baseline - its mean over images||; null when "
                                       "not finite", unit="ratio", required=True)
    max_abs_diff: float | None = _field("largest absolute logit difference; null when logits are not finite",
                                        unit="logit", required=True)
    mean_abs_diff: float | None = _field("mean absolute logit difference; null when logits are not finite",
                                         unit="logit", required=True)
    all_finite: bool = _field("no NaN or Inf in the logits", required=True)
    thresholds: ParityThresholds = _field("the thresholds checked", required=True)
    passed: bool = _field("every threshold holds", required=True)
    failures: list[str] = _field("one sentence per threshold that does not hold", required=True)
    accuracy: Accuracy | None = _field("accuracy against ImageNet labels; null without them (see accuracy_reason)",
                                       required=True)
    accuracy_reason: str | None = _field("why accuracy is null", optional=True)


@dataclass(kw_only=True)
class RunnerInfo(Record):
    """How the optimization ran: its technique stack, input dtype and layout, and its backend's own details.

    ``extra`` holds the backend's free-form details (``runner.info``: backend, version, provider, mode...),
    written flat next to the fixed keys, exactly as ``{"parts": ..., **runner.info}`` is today.
    """

    parts: list[str] = _field("the techniques stacked, in order (e.g. ['channels_last', 'amp', 'compile'])",
                              required=True)
    input_dtype: str = _field("dtype of the input tensor (torch name without 'torch.')", required=True)
    memory_format: str = _field("memory layout of the input: 'contiguous' or 'channels_last'", required=True)
    extra: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "the backend's own details (runner.info), written flat next to the fixed keys"})


@dataclass(kw_only=True)
class WorkerAssignment(Record):
    """An xdist worker's pinning (``parallel.Assignment.as_dict``)."""

    pinned: bool = _field("whether the worker owns its device or CPU slice (benchmarks stay on)")
    worker: str | None = _field("xdist worker id, e.g. 'gw0'")
    device: str | None = _field("the device this worker benchmarks on")
    cpus: list[int] | None = _field("CPU affinity of the worker (CPU runs)")
    reason: str | None = _field("why the worker is not pinned")


@dataclass(kw_only=True)
class Crosscheck(Record):
    """The same rounds timed by an independent clock (``timing.cpu_crosscheck`` / ``cuda_crosscheck``)."""

    method: str = _field("'torch.utils.benchmark.Timer.blocked_autorange' (CPU) or 'cuda_events' (CUDA)",
                         required=True)
    median_ms: float | None = _field("median round time by this clock", unit="ms")
    min_ms: float | None = _field("fastest round by this clock", unit="ms", optional=True)
    runs: int | None = _field("rounds this clock timed", unit="rounds", optional=True)
    separate_rounds: bool | None = _field("whether it timed rounds of its own (true) or the benchmark's (false)",
                                          optional=True)
    reason: str | None = _field("why there is no figure", optional=True)
    ratio: float | None = _field("median_ms over the benchmark's median round time", unit="ratio", optional=True)
    ratio_min: float | None = _field("min_ms over the benchmark's fastest round (steadier under load)",
                                     unit="ratio", optional=True)


@dataclass(kw_only=True)
class MemoryTelemetry(Record):
    """Memory during the timed rounds (``Monitor.result()['memory']``); sizes in MiB (2**20 bytes)."""

    rss_mb_before: float = _field("process resident memory when timing started", unit="MiB", required=True)
    rss_mb_peak: float = _field("process peak resident memory during timing (kernel high-water mark or sampled)",
                                unit="MiB", required=True)
    rss_mb_after: float = _field("process resident memory when timing ended", unit="MiB", required=True)
    reasons: dict[str, str | None] = _field("field name -> why that field is null", required=True)
    device_peak_allocated_mb: float | None = _field("peak memory torch's CUDA allocator handed out; null on CPU",
                                                    unit="MiB", required=True)
    device_peak_reserved_mb: float | None = _field("peak memory torch's CUDA allocator reserved; null on CPU",
                                                   unit="MiB", required=True)
    device_used_mb_max: float | None = _field("peak device memory in use as NVML sees it (includes memory outside "
                                              "torch's allocator); null on CPU or without NVML", unit="MiB",
                                              required=True)
    device_process_used_mb: float | None = _field(
        "device memory NVML accounts to this process at the window's start or end, the larger (CUDA context, "
        "TensorRT engines, ONNX Runtime's arena, CUDA-graph pools included); null on CPU or when NVML does not "
        "list the process", unit="MiB", optional=True)
    device_inclusive_peak_mb: float | None = _field(
        "the memory figure reports rank by: device_process_used_mb or device_peak_reserved_mb, the larger; "
        "null on CPU", unit="MiB", optional=True)
    device_inclusive_source: str | None = _field("'nvml_process_used' or 'torch_peak_reserved'", optional=True)


@dataclass(kw_only=True)
class GpuTelemetry(Record):
    """The GPU during the timed rounds, sampled through NVML (``Monitor.result()['gpu']``); null with a reason."""

    utilization_mean_pct: float | None = _field("mean GPU utilization", unit="%", required=True)
    utilization_max_pct: float | None = _field("highest sampled GPU utilization", unit="%", required=True)
    memory_utilization_mean_pct: float | None = _field("mean memory-controller utilization", unit="%",
                                                       required=True)
    power_mean_w: float | None = _field("mean board power", unit="W", required=True)
    energy_j: float | None = _field("energy used during the timed window", unit="J", required=True)
    energy_per_image_j: float | None = _field("energy_j over the images processed in the window", unit="J/image",
                                              required=True)
    energy_source: str | None = _field("'nvml_total_energy_counter' or 'integrated_power_samples'", required=True)
    temperature_max_c: float | None = _field("highest GPU temperature", unit="°C", required=True)
    sm_clock_mean_mhz: float | None = _field("mean SM clock", unit="MHz", required=True)
    sm_clock_min_mhz: float | None = _field("lowest SM clock", unit="MHz", required=True)
    throttle_reasons: list[str] | None = _field("NVML clock-event reasons at the window's start or end, one name "
                                                "per bit, GpuIdle excluded", required=True)
    gpu_idle_seen: bool | None = _field("NVML's GpuIdle clock-event bit was set (idle, not a throttle)",
                                        optional=True)
    power_source: str | None = _field("'energy_counter_over_window' (energy_j / window) or 'nvml_power_samples' "
                                      "(NVML's sample buffer, samples stamped inside the window)", optional=True)
    power_samples: int | None = _field("NVML power samples stamped inside the window", unit="samples",
                                       optional=True)
    power_averaging_period_s: float | None = _field("how long NVML averages one power reading on Ampere and newer",
                                                    unit="s", optional=True)
    window_shorter_than_power_averaging: bool | None = _field(
        "the timed window was shorter than power_averaging_period_s: its power figures include time outside it",
        optional=True)
    reasons: dict[str, str | None] = _field("field name -> why that field is null", required=True)
    reason: str | None = _field("why there is no GPU telemetry at all (CPU run, no driver)", optional=True)


@dataclass(kw_only=True)
class CpuTelemetry(Record):
    """The CPU during the timed rounds (``Monitor.result()['cpu']``)."""

    process_utilization_pct: float | None = _field("this process's CPU time over the window, per usable core",
                                                   unit="%", required=True)
    process_cpu_s: float = _field("CPU time (user + system) this process used in the window", unit="s",
                                  required=True)
    system_utilization_pct: float | None = _field("whole-system CPU utilization in the window", unit="%",
                                                  required=True)
    torch_threads: int = _field("torch intra-op threads", unit="threads", required=True)
    logical_cpus: int = _field("logical CPUs of the machine", unit="CPUs", required=True)
    affinity: list[int] | None = _field("CPUs this process may run on", required=True)
    energy_j: float | None = _field("CPU package energy in the window (Intel RAPL)", unit="J", required=True)
    energy_per_image_j: float | None = _field("energy_j over the images processed in the window", unit="J/image",
                                              required=True)
    reasons: dict[str, str | None] = _field("field name -> why that field is null", required=True)
    energy_source: str | None = _field("'intel_rapl_package' when energy_j was measured", optional=True)


@dataclass(kw_only=True)
class SamplerTelemetry(Record):
    """The telemetry sampler itself (``Monitor.result()['telemetry']``): its interval and its own cost."""

    interval_ms: float = _field("RSS sampling interval (used only without a kernel peak-RSS mark)", unit="ms",
                                required=True)
    samples: int = _field("samples taken in the window", unit="samples", required=True)
    sampler_thread: bool | None = _field("whether a sampling thread ran (only for RSS without a kernel peak-RSS mark; "
                                         "the GPU is never sampled from a thread)")
    rss_peak_source: str | None = _field("'kernel_high_water_mark' or 'sampled'")
    window_s: float = _field("length of the timed window", unit="s", required=True)
    sampler_busy_ms: float = _field("time spent inside sampling calls", unit="ms", required=True)
    sampler_overhead_pct: float | None = _field("sampler_busy_ms as a percentage of the window", unit="%",
                                                required=True)
    images_in_window: int | None = _field("images processed in the window (forward passes x batch size)",
                                          unit="images", required=True)


@dataclass(kw_only=True)
class ProfileEvent(Record):
    """One operator or kernel of a ``torch.profiler`` run, per profiled round."""

    name: str = _field("operator or kernel name", required=True)
    calls_per_round: float = _field("calls per round", unit="calls", required=True)
    self_cpu_ms_per_round: float | None = _field("self CPU time per round (operators only)", unit="ms",
                                                 optional=True)
    self_device_ms_per_round: float = _field("self device time per round", unit="ms", required=True)


@dataclass(kw_only=True)
class Profile(Record):
    """``--densebench-profile``: extra rounds after timing, under ``torch.profiler`` (``profiling.profile_rounds``)."""

    rounds: int = _field("profiled rounds", unit="rounds", required=True)
    chrome_trace: str = _field("path of the Chrome/Perfetto trace", required=True)
    tensorboard_trace: str = _field("path of the trace in TensorBoard's profiler layout", required=True)
    tensorboard_logdir: str = _field("logdir for 'tensorboard --logdir'", required=True)
    top_ops: list[ProfileEvent] | None = _field("operators with the most self CPU time")
    top_kernels: list[ProfileEvent] | None = _field("device kernels with the most self device time")


@dataclass(kw_only=True)
class PairedSpeedup(Record):
    """The speedup over the baseline with both alive and their rounds interleaved in one window
    (``densebench.paired``): the median of per-pair ratios baseline turn / this optimization's turn."""

    ratio: float = _field("median of the per-pair speedups", unit="x", required=True)
    ci_low: float = _field("lower end of the bootstrap confidence interval", unit="x", required=True)
    ci_high: float = _field("upper end of the bootstrap confidence interval", unit="x", required=True)
    pairs: int = _field("pairs of rounds (one baseline round and one of this optimization each)", unit="pairs",
                        required=True)
    method: str = _field("how it was computed (paired.METHOD)", required=True)
    confidence: float | None = _field("the interval's confidence level (0.95 = 95%)")
    ci_block: int | None = _field("consecutive pairs the bootstrap resampled together, estimated from the pairs' "
                                  "autocorrelation (paired.block_length; 1 = each pair on its own); absent in "
                                  "results written before it: the plain bootstrap", unit="pairs")
    baseline_turns_ms: list[float] | None = _field(
        "the baseline's turn times, pair by pair (each turn's fastest round): any other statistic can be "
        "recomputed from them (scripts/speedup_estimators.py --from)", unit="ms", optional=True)
    candidate_turns_ms: list[float] | None = _field("this optimization's turn times, aligned with "
                                                    "baseline_turns_ms", unit="ms", optional=True)


@dataclass(kw_only=True)
class Noise(Record):
    """How noisy the timed rounds were, and what else ran on the machine meanwhile (``densebench.noise``)."""

    cv: float | None = _field("coefficient of variation of the timed rounds (stddev / mean)", required=True)
    window_s: float | None = _field("length of the window observed", unit="s")
    other_processes_cpu_s: float | None = _field("CPU time used by other processes in the window (psutil)",
                                                 unit="s")
    other_processes_cpu_share: float | None = _field("other_processes_cpu_s / (window_s x logical CPUs)")
    steal_s: float | None = _field("CPU time the hypervisor gave to other guests (steal, /proc/stat)", unit="s")
    gpu_other_processes: list[int] | None = _field("PIDs of other processes on the GPU (NVML); null on CPU")
    cause: str | None = _field("the largest interference seen, in words")
    warning: str | None = _field("a warning line when cv exceeds 5% (the default gate threshold), naming the cause",
                                 optional=True)
    reasons: dict[str, str] | None = _field("why a value is null")


@dataclass(kw_only=True)
class ScenarioResult(Record):
    """A serving scenario run through MLPerf LoadGen behind densebench's dynamic batcher (``densebench.scenarios``).

    The benchmark's ``throughput_samples_per_s`` is ``achieved_qps``; its ``latency_ms`` and pytest-benchmark
    stats are the reported test's per-query latencies on densebench's clock (offline: per-batch service times);
    ``latency_ms`` here is LoadGen's own, from scheduled issue to completion."""

    name: str = _field("offline, server or singlestream", required=True)
    valid: bool = _field("LoadGen's verdict (result_validity VALID) of the reported test", required=True)
    invalid_reasons: list[str] = _field("why it is not VALID, in LoadGen's terms", required=True)
    achieved_qps: float | None = _field("completed samples per second of the reported test", unit="samples/s",
                                        required=True)
    latency_ms: dict[str, float | None] | None = _field("LoadGen's latency percentiles (p50 ... p99, p999)",
                                                        unit="ms", required=True)
    target_qps: float | None = _field("server: the confirmed Poisson arrival rate; offline: the expected rate "
                                      "given to LoadGen", unit="samples/s")
    capacity_qps: float | None = _field("images/s over a burst of full batches, measured before the test",
                                        unit="samples/s")
    latency_budget_ms: float | None = _field("server: the p99 bound searched under", unit="ms")
    budget_defaulted: bool | None = _field("server: no --densebench-latency-budget-ms was given (100 ms used)")
    batcher: dict[str, Any] | None = _field("max_batch, max_delay_ms, executor, in_flight, pad_sizes, ...")
    batches: dict[str, Any] | None = _field("batches formed in the reported test: count, mean size, histogram")
    service_ms: dict[str, float] | None = _field("batch size -> one batch's service time alone (warm-up)",
                                                 unit="ms")
    server_search: dict[str, Any] | None = _field("server: the search (every test as a curve point)",
                                                  optional=True)
    loadgen: dict[str, Any] | None = _field("every result_* value LoadGen logged for the reported test")
    log_dir: str | None = _field("LoadGen's logs of the reported test")
    accuracy_log_dir: str | None = _field("LoadGen's logs of the accuracy run (mlperf_log_accuracy.json)")


@dataclass(kw_only=True)
class BenchmarkRecord(Record):
    """One benchmark (an optimization at a batch size): pytest-benchmark's ``extra_info``."""

    optimization: str = _field("the optimization (a technique stack, e.g. 'channels_last+amp')", required=True)
    batch_size: int = _field("images per forward pass", unit="images", required=True)
    image_size: int = _field("input height and width", unit="pixels", required=True)
    device: str = _field("torch device, e.g. 'cuda:0' or 'cpu'", required=True)
    device_name: str = _field("GPU or CPU model name", required=True)
    precision: str = _field("what it actually ran at: fp32, tf32, amp_fp16, amp_bf16, fp16, bf16, int8",
                            required=True)
    throughput_samples_per_s: float | None = _field("batch size / median round time", unit="images/s",
                                                    required=True)
    latency_ms: Latency | None = _field("round time percentiles", required=True)
    setup_s: float = _field("build_s + warmup_s (untimed)", unit="s", required=True)
    build_s: float = _field("build/compile time charged to this benchmark (0 after the first batch size)", unit="s")
    build_s_total: float = _field("the optimization's whole build time", unit="s")
    warmup_s: float = _field("warm-up passes (untimed; pays recompiles and autotuning)", unit="s")
    warmup_iterations: int = _field("warm-up passes", unit="passes")
    recompiles_during_timing: int = _field("Dynamo compilations inside the timed rounds (must be 0)",
                                           unit="compilations")
    parity: Parity = _field("agreement with the baseline", required=True)
    runner: RunnerInfo = _field("how it ran: techniques, input dtype and layout, backend details")
    denormals_flushed: bool | None = _field("whether denormal floats were flushed to zero while timing (ftz)",
                                            optional=True)
    speedup: PairedSpeedup | None = _field("paired, interleaved speedup over the baseline with its CI "
                                           "(--densebench-paired-rounds)", optional=True)
    noise: Noise | None = _field("round-to-round variation and interference during the timed window",
                                 optional=True)
    weights: str = _field("source of the weights used: 'imagenet', 'random' or 'file'")
    dataset: str = _field("source of the images used: 'tiny-imagenet', 'synthetic' or 'folder'")
    worker: WorkerAssignment | None = _field("the xdist worker that measured it", optional=True)
    crosscheck: Crosscheck | None = _field("independent timing; null with --densebench-crosscheck=false")
    memory: MemoryTelemetry = _field("memory during the timed rounds", required=True)
    gpu: GpuTelemetry = _field("GPU telemetry during the timed rounds (null values with reasons on CPU)",
                               required=True)
    cpu: CpuTelemetry = _field("CPU telemetry during the timed rounds", required=True)
    telemetry: SamplerTelemetry = _field("the sampler: interval, samples, its own overhead")
    profile: Profile | None = _field("torch.profiler traces and top operators (--densebench-profile)",
                                     optional=True)
    tensorboard_run: str | None = _field("TensorBoard run directory of its scalars (--densebench-tensorboard)",
                                         optional=True)
    scenario: ScenarioResult | None = _field("a serving scenario's benchmark (--densebench-scenarios): LoadGen's "
                                             "result; absent for the batch scenario", optional=True)

    @classmethod
    def from_measurement(cls, *, optimization: str, batch_size: int, image_size: int, device: str,
                         device_name: str, precision: str, round_times_s: Sequence[float], build_s_total: float,
                         first_use: bool, warmup_s: float, warmup_iterations: int, recompiles_during_timing: int,
                         parity: Parity | Mapping[str, Any], runner: RunnerInfo | Mapping[str, Any], weights: str,
                         dataset: str, telemetry: Mapping[str, Any],
                         crosscheck: Crosscheck | Mapping[str, Any] | None = None,
                         worker: WorkerAssignment | Mapping[str, Any] | None = None) -> BenchmarkRecord:
        """The record ``DenseBench._extra_info`` builds, from the same measurements.

        ``round_times_s``: the timed rounds (pytest-benchmark's ``stats.data``, seconds);
        ``first_use``: this is the optimization's first batch size, so its build time is charged here;
        ``telemetry``: ``Monitor.result(batch_size, calls)`` (its namespaces become fields, unknown ones
        ``extra``); ``crosscheck``: what ``timing.*_crosscheck`` returned, without the ratios, which are
        computed here against the benchmark's median and fastest round. Nothing given is modified.
        """
        rounds = list(round_times_s)
        median_s = statistics.median(rounds) if rounds else None
        latency = timing.latency_ms(rounds) if rounds else None
        build_s = build_s_total if first_use else 0.0
        check = crosscheck.to_json() if isinstance(crosscheck, Crosscheck) else crosscheck
        if check is not None and median_s:
            check = dict(check)
            other = check.get("median_ms")
            check["ratio"] = (other / (median_s * 1e3)) if other else None
            other_min = check.get("min_ms")
            check["ratio_min"] = (other_min / latency["min"]) if other_min and latency else None
        specs = {spec.key: spec for spec in _specs(cls)}
        measured: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in telemetry.items():
            if key in specs:
                measured[specs[key].name] = _load(specs[key].type, value)
            else:
                extra[key] = _copy(value)
        values: dict[str, Any] = {
            "optimization": optimization, "batch_size": batch_size, "image_size": image_size, "device": device,
            "device_name": device_name, "precision": precision,
            "throughput_samples_per_s": timing.throughput(batch_size, median_s) if median_s else None,
            "latency_ms": _as(Latency, latency), "setup_s": build_s + warmup_s, "build_s": build_s,
            "build_s_total": build_s_total, "warmup_s": warmup_s, "warmup_iterations": warmup_iterations,
            "recompiles_during_timing": recompiles_during_timing, "parity": _as(Parity, parity),
            "runner": _as(RunnerInfo, runner), "weights": weights, "dataset": dataset,
            "worker": _as(WorkerAssignment, worker), "crosscheck": _as(Crosscheck, check),
            "memory": None, "gpu": None, "cpu": None,
        }
        values.update(measured)
        return cls(**values, extra=extra)


# ---------------------------------------------------------------- the run: the top-level densebench object


_TIMED_SUMMARY = ("throughput_samples_per_s", "latency_ms", "peak_memory_mb", "precision", "build_s", "warmup_s")


@dataclass(kw_only=True)
class Outcome(Record):
    """What happened to one optimization at one batch size (``densebench.outcomes[]``).

    A timed outcome (``measured``, ``parity_failed``) also carries its summary figures; built in code,
    those keys are written for a timed status even when null, as ``DenseBench.note`` writes them today.
    """

    optimization: str = _field("the optimization", required=True)
    batch_size: int | None = _field("the batch size; null when the outcome is about every batch size",
                                    unit="images", required=True)
    status: Status = _field("what happened", required=True)
    reason: str | None = _field("why (null for 'measured')", required=True)
    throughput_samples_per_s: float | None = _field("as in the benchmark's extra_info", unit="images/s",
                                                    optional=True)
    latency_ms: Latency | None = _field("as in the benchmark's extra_info", optional=True)
    peak_memory_mb: float | None = _field("inclusive device peak on GPU (memory.device_inclusive_peak_mb), process "
                                          "peak RSS on CPU", unit="MiB",
                                          optional=True)
    precision: str | None = _field("as in the benchmark's extra_info", optional=True)
    build_s: float | None = _field("build time charged to this benchmark", unit="s", optional=True)
    warmup_s: float | None = _field("warm-up time", unit="s", optional=True)
    speedup: PairedSpeedup | None = _field("as in the benchmark's extra_info", optional=True)
    noise_warning: str | None = _field("extra_info.noise.warning", optional=True)
    noise_cv: float | None = _field("extra_info.noise.cv", optional=True)
    noise_cause: str | None = _field("extra_info.noise.cause", optional=True)

    def __post_init__(self) -> None:
        self.status = Status.parse(self.status)

    def _keep_none(self, name: str) -> bool:
        return name in _TIMED_SUMMARY and self.status in TIMED_STATUSES


@dataclass(kw_only=True)
class WeightsUsed(Record):
    """The weights actually used (``model.WeightsInfo.as_dict``)."""

    requested: str = _field("--densebench-weights as given: 'auto', 'imagenet', 'random' or a path", required=True)
    source: str = _field("what was used: 'imagenet', 'random' or 'file'", required=True)
    path: str | None = _field("the weights file, for 'file'")
    seed: int | None = _field("seed of random weights")
    fallback_reason: str | None = _field("why 'auto' fell back")
    summary: str | None = _field("one line for people")


@dataclass(kw_only=True)
class DatasetUsed(Record):
    """The images actually used (``data.DatasetInfo.as_dict``). The JSON key ``extra`` is the attribute ``details``."""

    requested: str = _field("--densebench-dataset as given", required=True)
    source: str = _field("what was used: 'tiny-imagenet', 'synthetic' or 'folder'", required=True)
    path: str | None = _field("where the images are")
    split: str | None = _field("the split used")
    images_available: int | None = _field("images the source has", unit="images")
    images_used: int | None = _field("images loaded", unit="images")
    label_space: str | None = _field("'imagenet-1k' or 'none'")
    fallback_reason: str | None = _field("why 'auto' fell back")
    details: dict[str, Any] | None = _field("source-specific details (e.g. the synthetic seed)", key="extra")
    summary: str | None = _field("one line for people")


@dataclass(kw_only=True)
class WorkerSummary(Record):
    """One xdist worker, as the controller records it (``densebench.workers[]``)."""

    worker: WorkerAssignment | None = _field("its pinning")
    device: str | None = _field("its torch device")
    device_name: str | None = _field("its device's model name")
    weights: WeightsUsed | None = _field("the weights it used")
    dataset: DatasetUsed | None = _field("the images it used")


@dataclass(kw_only=True)
class Calibration(Record):
    """Images used to calibrate quantization."""

    images: int = _field("calibration images", unit="images", required=True)
    overlaps_parity_set: bool = _field("whether they are also parity images (only when the dataset is too small)",
                                       required=True)


@dataclass(kw_only=True)
class IsolatedChild(Record):
    """One optimization's child process under ``--densebench-isolate`` (``densebench.isolated[optimization]``)."""

    returncode: int | None = _field("its exit status (negative: killed by that signal)")
    timed_out: bool = _field("killed at --densebench-timeout", required=True)
    elapsed_s: float = _field("wall time of the child", unit="s", required=True)
    log: str = _field("path of its log", required=True)


@dataclass(kw_only=True)
class ParallelInfo(Record):
    """On an xdist controller: the workers and their pinning."""

    workers: int = _field("xdist workers", unit="workers", required=True)
    pinned: bool = _field("whether each worker owns its device (benchmarks stay on)", required=True)
    reason: str | None = _field("why they are not pinned")
    assignments: list[WorkerAssignment] | None = _field("each worker's pinning (empty when not pinned)")


@dataclass(kw_only=True)
class MemoryMark(Record):
    """Memory right after an optimization was released (``telemetry.memory_now``)."""

    after_releasing: str = _field("the optimization just released", required=True)
    rss_mb: float = _field("process resident memory", unit="MiB", required=True)
    cuda_allocated_mb: float | None = _field("torch CUDA allocator: allocated", unit="MiB", optional=True)
    cuda_reserved_mb: float | None = _field("torch CUDA allocator: reserved", unit="MiB", optional=True)


@dataclass(kw_only=True)
class SetupTotals(Record):
    """Build and warm-up time over the timed outcomes (the key ``setup_s``: seconds)."""

    total: float = _field("build + warm-up", unit="s", required=True)
    build: float = _field("building and compiling", unit="s", required=True)
    warmup: float = _field("warm-up passes", unit="s", required=True)


@dataclass(kw_only=True)
class BestRow(Record):
    """The fastest configuration that passed parity at one batch size (``summary.recommendations``)."""

    batch_size: int = _field("the batch size", unit="images", required=True)
    optimization: str = _field("the fastest optimization", required=True)
    throughput_samples_per_s: float = _field("its throughput", unit="images/s", required=True)
    p99_ms: float | None = _field("its p99 round time", unit="ms", required=True)
    speedup_vs_baseline: float | None = _field("its throughput over the baseline's; null without a baseline",
                                               unit="ratio", required=True)


@dataclass(kw_only=True)
class OfflinePick(Record):
    """Peak throughput that passed parity, over every batch size."""

    optimization: str = _field("the optimization", required=True)
    batch_size: int = _field("the batch size", unit="images", required=True)
    throughput_samples_per_s: float = _field("its throughput", unit="images/s", required=True)
    p99_ms: float | None = _field("its p99 round time", unit="ms", required=True)


@dataclass(kw_only=True)
class ServerPick(Record):
    """With ``--densebench-latency-budget-ms``: the fastest configuration whose p99 fits the budget."""

    latency_budget_ms: float = _field("the budget", unit="ms", required=True)
    fits: bool = _field("whether any configuration fits", required=True)
    optimization: str | None = _field("the pick", optional=True)
    batch_size: int | None = _field("its batch size", unit="images", optional=True)
    throughput_samples_per_s: float | None = _field("its throughput", unit="images/s", optional=True)
    p99_ms: float | None = _field("its p99 round time", unit="ms", optional=True)


@dataclass(kw_only=True)
class Configuration(Record):
    """One optimization at one batch size (a test of the suite)."""

    optimization: str = _field("the optimization", required=True)
    batch_size: int = _field("the batch size", unit="images", required=True)


@dataclass(kw_only=True)
class ScenarioOutcome(Record):
    """What happened to one optimization in one serving scenario (``densebench.scenarios[]``)."""

    optimization: str = _field("the optimization", required=True)
    scenario: str = _field("offline, server or singlestream", required=True)
    status: Status = _field("measured, parity_failed (LoadGen's accuracy mode), skipped or failed", required=True)
    reason: str | None = _field("why (null for 'measured')", required=True)
    valid: bool | None = _field("LoadGen's verdict of the reported test", optional=True)
    achieved_qps: float | None = _field("completed samples per second", unit="samples/s", optional=True)
    p99_ms: float | None = _field("LoadGen's 99th-percentile latency", unit="ms", optional=True)
    highest_valid_qps: float | None = _field("server: the highest rate confirmed VALID within the budget",
                                             unit="samples/s", optional=True)
    latency_budget_ms: float | None = _field("server: the budget", unit="ms", optional=True)
    max_batch: int | None = _field("the batcher's largest batch", unit="images", optional=True)
    in_flight: int | None = _field("batches in flight", optional=True)
    invalid_reasons: list[str] | None = _field("why LoadGen did not call the reported test VALID (server: why no "
                                               "rate was confirmed)", optional=True)

    def __post_init__(self) -> None:
        self.status = Status.parse(self.status)


@dataclass(kw_only=True)
class RunRecord(Record):
    """The run: the top-level ``densebench`` object (``DenseBench.run_info``)."""

    version: str = _field("densebench version", required=True)
    run: str | None = _field("run name (start time, YYYYMMDD-HHMMSS)")
    settings: dict[str, Any] = _field("every densebench setting as used (Settings.as_dict)", required=True)
    outcomes: list[Outcome] = _field("every optimization x batch size and what happened", required=True)
    scenarios: list[ScenarioOutcome] | None = _field("every optimization x serving scenario and what happened "
                                                     "(--densebench-scenarios)", optional=True)
    tensorboard_logdir: str | None = _field("TensorBoard scalars of this run", optional=True)
    device: str | None = _field("torch device", optional=True)
    device_name: str | None = _field("its model name", optional=True)
    weights: WeightsUsed | None = _field("the weights used", optional=True)
    dataset: DatasetUsed | None = _field("the images used", optional=True)
    workers: list[WorkerSummary] | None = _field("xdist controller: each worker", optional=True)
    calibration: Calibration | None = _field("quantization calibration images", optional=True)
    isolated: dict[str, IsolatedChild] | None = _field("--densebench-isolate: optimization -> its child process",
                                                       optional=True)
    worker: WorkerAssignment | None = _field("xdist worker: its pinning", optional=True)
    parallel: ParallelInfo | None = _field("xdist controller: workers and pinning", optional=True)
    journal: str | None = _field("path of this run's results journal", optional=True)
    recovered_journals: list[str] | None = _field("earlier runs' unfinished journals recovered at start",
                                                  optional=True)
    memory_trace: list[MemoryMark] | None = _field("memory after each optimization was released", optional=True)
    setup_s: SetupTotals | None = _field("build and warm-up totals", optional=True)
    best: list[BestRow] | None = _field("fastest passing configuration per batch size", optional=True)
    offline: OfflinePick | None = _field("peak throughput over every batch size; null when nothing passed")
    server: ServerPick | None = _field("best configuration under the latency budget; null without a budget")
    recovered_from: str | None = _field("densebench recover: the journal this file was rebuilt from", optional=True)
    complete: bool | None = _field("whether the run ended normally (a recovered journal had its end marker) and "
                                   "every planned configuration has an outcome (derived.py)", optional=True)
    planned: list[Configuration] | None = _field("the configurations the run collected", optional=True)
    never_ran: list[Configuration] | None = _field("planned configurations with no outcome: the run was cut "
                                                   "short before them (derived.py)", optional=True)
    skipped: list[Outcome] | None = _field("the outcomes 'skipped' and 'oom': configurations that could not run "
                                           "here, with the reason (derived.py)", optional=True)
    storage_problems: list[str] | None = _field("files that could not be written (journal, JSON, report, "
                                                "cache), each with what was kept (storage.py)", optional=True)


# ---------------------------------------------------------------- the whole pytest-benchmark file


@dataclass(kw_only=True)
class BenchmarkParams(Record):
    """The test's parameters: a densebench benchmark is parametrized by optimization and batch size."""

    optimization: str = _field("the optimization", required=True)
    batch_size: int = _field("the batch size", unit="images", required=True)


@dataclass(kw_only=True)
class ScenarioParams(Record):
    """A serving scenario benchmark's parameters (``test_scenario``): optimization and scenario."""

    optimization: str = _field("the optimization", required=True)
    scenario: str = _field("offline, server or singlestream", required=True)


@dataclass(kw_only=True)
class BenchmarkStats(Record):
    """pytest-benchmark's statistics of the round times (seconds per round)."""

    min: float = _field("fastest round", unit="s", required=True)
    max: float = _field("slowest round", unit="s", required=True)
    mean: float = _field("mean round time", unit="s", required=True)
    stddev: float = _field("standard deviation", unit="s", required=True)
    rounds: int = _field("timed rounds", unit="rounds", required=True)
    median: float = _field("median round time", unit="s", required=True)
    iqr: float = _field("interquartile range", unit="s", required=True)
    q1: float = _field("first quartile", unit="s", required=True)
    q3: float = _field("third quartile", unit="s", required=True)
    iqr_outliers: int = _field("rounds outside 1.5 IQR", unit="rounds", required=True)
    stddev_outliers: int = _field("rounds more than one stddev from the mean", unit="rounds", required=True)
    outliers: str = _field("'stddev_outliers;iqr_outliers'", required=True)
    ld15iqr: float = _field("lowest round within 1.5 IQR of q1", unit="s", required=True)
    hd15iqr: float = _field("highest round within 1.5 IQR of q3", unit="s", required=True)
    ops: float = _field("1 / mean", unit="rounds/s", required=True)
    total: float = _field("sum of the round times", unit="s", required=True)
    data: list[float] | None = _field("every round time (--benchmark-json, --benchmark-save-data)", unit="s",
                                      optional=True)
    iterations: int = _field("calls per round", unit="calls", required=True)


@dataclass(kw_only=True)
class SavedBenchmark(Record):
    """One benchmark as pytest-benchmark saves it."""

    group: str | None = _field("'batch_size=N' (scenario benchmarks: their own group)", required=True)
    name: str = _field("test name, e.g. 'test_inference[baseline-bs1]'", required=True)
    fullname: str = _field("test node id", required=True)
    params: BenchmarkParams | ScenarioParams = _field("the parameters", required=True)
    param: str | None = _field("the parameter id, e.g. 'baseline-bs1'")
    extra_info: BenchmarkRecord = _field("densebench's record of the benchmark", required=True)
    options: dict[str, Any] | None = _field("pytest-benchmark's timing options")
    stats: BenchmarkStats = _field("round-time statistics", required=True)


@dataclass(kw_only=True)
class GpuInfo(Record):
    """One visible CUDA GPU (``telemetry.gpu_inventory``)."""

    index: int = _field("CUDA device index", required=True)
    name: str = _field("model name", required=True)
    memory_total_mb: float = _field("total memory", unit="MiB", required=True)
    compute_capability: str = _field("e.g. '9.0'", required=True)
    multiprocessors: int = _field("SM count", unit="SMs", required=True)
    power_limit_w: float | None = _field("enforced power limit (NVML)", unit="W", optional=True)
    uuid: str | None = _field("NVML UUID", optional=True)


@dataclass(kw_only=True)
class MachineInfo(Record):
    """pytest-benchmark's ``machine_info`` and what densebench adds (``telemetry.machine_info``)."""

    node: str | None = _field("host name (pytest-benchmark)")
    processor: str | None = _field("platform.processor() (pytest-benchmark)")
    machine: str | None = _field("platform.machine() (pytest-benchmark)")
    python_compiler: str | None = _field("(pytest-benchmark)")
    python_implementation: str | None = _field("(pytest-benchmark)")
    python_implementation_version: str | None = _field("(pytest-benchmark)")
    python_version: str | None = _field("(pytest-benchmark)")
    python_build: list[str] | None = _field("(pytest-benchmark)")
    release: str | None = _field("OS release (pytest-benchmark)")
    system: str | None = _field("OS name (pytest-benchmark)")
    cpu: dict[str, Any] | None = _field("py-cpuinfo's record (pytest-benchmark)")
    cpu_model: str | None = _field("CPU model name")
    logical_cpus: int | None = _field("logical CPUs", unit="CPUs")
    physical_cpus: int | None = _field("physical cores", unit="cores")
    memory_total_mb: float | None = _field("system memory", unit="MiB")
    torch_threads: int | None = _field("torch intra-op threads", unit="threads")
    gpus: list[GpuInfo] | None = _field("visible CUDA GPUs")
    cuda_runtime: str | None = _field("CUDA runtime torch was built with; null on CPU builds")
    cudnn: int | None = _field("cuDNN version number")
    driver_version: str | None = _field("NVIDIA driver version; null without NVML", optional=True)
    cuda_driver: str | None = _field("CUDA version the driver supports", optional=True)
    gpu_reason: str | None = _field("why there is no GPU", optional=True)
    libraries: dict[str, str | None] | None = _field("package -> installed version (null: not installed)")


@dataclass(kw_only=True)
class ResultsFile(Record):
    """A whole pytest-benchmark JSON file written by a densebench run."""

    machine_info: MachineInfo = _field("the machine", required=True)
    commit_info: dict[str, Any] = _field("the commit (pytest-benchmark)", required=True)
    benchmarks: list[SavedBenchmark] = _field("every benchmark", required=True)
    datetime: str | None = _field("when the file was written (ISO 8601, UTC)", required=True)
    version: str = _field("pytest-benchmark version", required=True)
    densebench: RunRecord = _field("the run", required=True)


# ---------------------------------------------------------------- JSON Schema


ROOTS: dict[str, type[Record]] = {"results": ResultsFile, "benchmark": BenchmarkRecord, "run": RunRecord}

_TITLES = {"results": "densebench results (a pytest-benchmark JSON file)",
           "benchmark": "densebench benchmark record (pytest-benchmark extra_info)",
           "run": "densebench run record (the top-level densebench object)"}

_SCALARS: dict[Any, dict[str, Any]] = {Any: {}, str: {"type": "string"}, int: {"type": "integer"},
                                        float: {"type": "number"}, bool: {"type": "boolean"}}


def _doc(obj: Any) -> str:
    """The first paragraph of a docstring, on one line."""
    text = (obj.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(text.replace("``", "`").split())


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if _is_union(tp):
        args = get_args(tp)
        nullable = type(None) in args
        parts = [_type_schema(a, defs) for a in args if a is not type(None)]
        if len(parts) == 1 and list(parts[0]) == ["type"] and nullable:
            return {"type": [parts[0]["type"], "null"]}
        return {"anyOf": parts + ([{"type": "null"}] if nullable else [])}
    origin, args = get_origin(tp), get_args(tp)
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], defs)}
    if origin is dict:
        values = _type_schema(args[1], defs)
        return {"type": "object", "additionalProperties": values} if values else {"type": "object"}
    if isinstance(tp, type) and issubclass(tp, (Status, Record)):
        return {"$ref": _define(tp, defs)}
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    raise TypeError(f"no JSON Schema for the type {tp!r}")


def _define(tp: type, defs: dict[str, Any]) -> str:
    """Put the schema of a record or of ``Status`` into ``defs`` (once); return its reference."""
    if tp.__name__ not in defs:
        defs[tp.__name__] = {}  # claimed first, so a record that refers to itself terminates
        if issubclass(tp, Status):
            meanings = "; ".join(f"{s.value}: {s.meaning}" for s in tp)
            defs[tp.__name__] = {"description": f"{_doc(tp)} {meanings}.", "type": "string",
                                 "enum": [s.value for s in tp]}
        else:
            defs[tp.__name__] = _record_schema(tp, defs)
    return f"#/$defs/{tp.__name__}"


def _record_schema(cls: type[Record], defs: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for spec in _specs(cls):
        description = spec.doc + (f" (unit: {spec.unit})" if spec.unit else "")
        properties[spec.key] = {"description": description, **_type_schema(spec.type, defs)}
    out: dict[str, Any] = {"description": _doc(cls), "type": "object", "properties": properties}
    required = [spec.key for spec in _specs(cls) if spec.required]
    if required:
        out["required"] = required
    out["additionalProperties"] = True  # the contract is "extend, never rename"
    return out


def json_schema(root: str = "results") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a results file (``root='results'``), one benchmark's
    ``extra_info`` (``'benchmark'``) or the run's ``densebench`` object (``'run'``).

    Every record is also under ``$defs`` by class name, so a tool can refer to one part of the
    committed results schema, e.g. ``densebench-results.schema.json#/$defs/BenchmarkRecord``.
    Unknown keys are allowed everywhere (``additionalProperties: true``): newer files still validate.
    """
    if root not in ROOTS:
        raise ValueError(f"unknown schema root {root!r}; one of {', '.join(ROOTS)}")
    defs: dict[str, Any] = {}
    body = _record_schema(ROOTS[root], defs)
    return {"$schema": SCHEMA_DRAFT, "title": _TITLES[root], **body, "$defs": dict(sorted(defs.items()))}


def schema_text(root: str = "results") -> str:
    """``json_schema(root)`` as the committed file holds it."""
    return json.dumps(json_schema(root), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m densebench.records [-o FILE] [--root results|benchmark|run]``: print or write the schema."""
    parser = argparse.ArgumentParser(prog="python -m densebench.records", description=main.__doc__)
    parser.add_argument("--root", choices=list(ROOTS), default="results", help="which document (default: results)")
    parser.add_argument("-o", "--output", help=f"write it here (e.g. {SCHEMA_PATH}) instead of printing it")
    args = parser.parse_args(argv)
    text = schema_text(args.root)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


__all__ = [
    "PROBLEM_STATUSES", "ROOTS", "STATUS_MEANING", "TIMED_STATUSES", "UNTIMED_STATUSES", "Accuracy", "BenchmarkParams",
    "BenchmarkRecord", "BenchmarkStats", "BestRow", "Calibration", "Configuration", "CpuTelemetry", "Crosscheck",
    "DatasetUsed",
    "GpuInfo", "GpuTelemetry", "IsolatedChild", "Latency", "MachineInfo", "MemoryMark", "MemoryTelemetry",
    "OfflinePick", "Outcome", "ParallelInfo", "Parity", "ParityThresholds", "Profile", "ProfileEvent", "Record",
    "ResultsFile", "RunRecord", "RunnerInfo", "SamplerTelemetry", "SavedBenchmark", "ServerPick", "SetupTotals",
    "Status", "WeightsUsed", "WorkerAssignment", "WorkerSummary", "json_schema", "schema_text",
]

if __name__ == "__main__":
    sys.exit(main())
