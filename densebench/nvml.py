"""NVML (nvidia-ml-py) for one timed window: read before and after it, never sampled from a thread.

The window is bracketed by two sets of reads (:class:`GpuWindow`), and what happened inside it
comes from what NVML itself recorded:

- energy: the total-energy counter's delta (``nvmlDeviceGetTotalEnergyConsumption``, mJ; Volta and
  newer), which belongs to the window exactly; mean power is that energy over the window;
- power, GPU and memory-controller utilization, SM clock: NVML's own sample buffers
  (``nvmlDeviceGetSamples`` with the window's start as ``lastSeenTimeStamp``, CPU timestamps in µs),
  read once after the window, keeping the samples stamped inside it. NVML fills those buffers in the
  driver, so no Python thread competes with the timed one for the interpreter lock;
- power readings on Ampere and newer are averages over about one second (NVML's documentation of
  ``nvmlDeviceGetPowerUsage``): for a window shorter than :data:`POWER_AVERAGING_S` the sampled
  power includes time before the window, and the JSON says so (``window_shorter_than_power_averaging``);
- throttle (clock-event) reasons at the start and end of the window, one name per bit, ``GpuIdle``
  apart (an idle GPU lowering its clocks is not a throttle); the pre-R535 call
  ``nvmlDeviceGetCurrentClocksThrottleReasons`` is used where the new one does not exist;
- this process's device memory as NVML accounts it (``nvmlDeviceGetComputeRunningProcesses``):
  everything the process holds on the GPU (CUDA context, TensorRT engines, ONNX Runtime's arena,
  CUDA-graph pools), which torch's allocator statistics cannot see.

On a MIG slice, :meth:`Nvml.handle` returns the slice's own handle (``nvmlDeviceGetMigDeviceHandleByIndex``),
never the whole board's; NVML does not report power, utilization or clocks per slice, so those are
null with NVML's reason.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

NO_DRIVER = "no NVIDIA driver"

# Power readings on Ampere and newer average about this long (NVML, nvmlDeviceGetPowerUsage).
POWER_AVERAGING_S = 1.0

# Deprecated aliases that share a bit with a current name (pynvml keeps both).
_ALIASES = ("UserDefinedClocks",)

# NVML sample buffers read after the window: (output key, sampling-type constant, scale to the unit).
SAMPLE_TYPES = (("power_w", "NVML_TOTAL_POWER_SAMPLES", 1e-3), ("util_pct", "NVML_GPU_UTILIZATION_SAMPLES", 1.0),
                ("mem_util_pct", "NVML_MEMORY_UTILIZATION_SAMPLES", 1.0),
                ("sm_clock_mhz", "NVML_PROCESSOR_CLK_SAMPLES", 1.0))

# nvmlValueType_t -> the member of the c_nvmlValue_t union that holds the value.
_VALUE_MEMBER = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bare_uuid(uuid: str) -> str:
    return uuid.split("-", 1)[1] if uuid.startswith(("GPU-", "MIG-")) else uuid


class Nvml:
    """Init once; map torch devices to NVML handles (a MIG slice to its own handle)."""

    _lock = threading.Lock()
    _state: tuple[Any, str | None] | None = None

    @classmethod
    def module(cls) -> tuple[Any, str | None]:
        """(pynvml module or None, reason it is unavailable)."""
        with cls._lock:
            if cls._state is None:
                try:
                    import pynvml  # optional at run time: NVML may be absent

                    pynvml.nvmlInit()
                    cls._state = (pynvml, None)
                except ImportError:
                    cls._state = (None, "nvidia-ml-py (pynvml) is not installed")
                except Exception as exc:
                    cls._state = (None, f"{NO_DRIVER} (NVML: {exc})")
            return cls._state

    @classmethod
    def handle(cls, device: Any) -> tuple[Any, Any, str | None]:
        """(pynvml, handle or None, reason there is none) for a torch device."""
        nvml, reason = cls.module()
        if nvml is None:
            return None, None, reason
        if getattr(device, "type", "cpu") != "cuda":
            return nvml, None, "the benchmark ran on the CPU"
        import torch  # heavy, optional

        props = torch.cuda.get_device_properties(device)
        bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
        return (nvml, *board_handle(nvml, _bare_uuid(str(getattr(props, "uuid", "") or "")), bus,
                                    device.index or 0))


def board_handle(nvml: Any, uuid: str, bus: str, index: int) -> tuple[Any, str | None]:
    """(handle, reason): the GPU by UUID, PCI bus or index; its MIG slice with this UUID when MIG is on."""
    parent = None
    lookups = ([lambda: nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")] if uuid else []) + [
        lambda: nvml.nvmlDeviceGetHandleByPciBusId(bus), lambda: nvml.nvmlDeviceGetHandleByIndex(index)]
    error: Exception | None = None
    for lookup in lookups:
        try:
            parent = lookup()
            break
        except Exception as exc:
            error = exc
    if parent is None:
        return None, f"NVML has no handle for cuda:{index}: {error}"
    try:
        mig_on = nvml.nvmlDeviceGetMigMode(parent)[0] == nvml.NVML_DEVICE_MIG_ENABLE
    except Exception:  # no MIG on this GPU (NotSupported) or an old driver
        mig_on = False
    if not mig_on:
        return parent, None
    mig = mig_slice(nvml, parent, uuid)
    if mig is None:
        return None, (f"MIG is enabled on this GPU, but no MIG slice has the CUDA device's UUID {uuid or '?'}; "
                      "the whole board's readings would not be this benchmark's")
    return mig, None


def mig_slice(nvml: Any, parent: Any, uuid: str) -> Any:
    """The MIG device handle under ``parent`` whose UUID is ``uuid`` (without prefix), or None."""
    try:
        count = nvml.nvmlDeviceGetMaxMigDeviceCount(parent)
    except Exception:
        return None
    for i in range(count):
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, i)
            if _bare_uuid(_text(nvml.nvmlDeviceGetUUID(handle))) == uuid:
                return handle
        except Exception:  # an empty slot: NVML_ERROR_NOT_FOUND
            continue
    return None


def throttle_bits(nvml: Any) -> dict[int, str]:
    """Bit -> one name (pynvml's ``nvmlClocksEventReason*``, else ``nvmlClocksThrottleReason*``), aliases dropped."""
    names: dict[int, str] = {}
    for prefix in ("nvmlClocksEventReason", "nvmlClocksThrottleReason"):
        for attr in sorted(dir(nvml)):
            name = attr[len(prefix):]
            bit = getattr(nvml, attr)
            if (attr.startswith(prefix) and name not in ("None", "All", *_ALIASES) and isinstance(bit, int)
                    and bit and bit & (bit - 1) == 0):
                names.setdefault(bit, name)
    return names


def throttle_mask(nvml: Any, handle: Any) -> int:
    """Current clock-event reasons; the pre-R535 call where the driver lacks the new one."""
    new = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if new is not None:
        try:
            return int(new(handle))
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != nvml.NVML_ERROR_FUNCTION_NOT_FOUND:
                raise
    return int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))


def throttle_names(nvml: Any, mask: int) -> tuple[list[str], bool]:
    """(throttle reasons in ``mask``, one name per bit, GpuIdle excluded; whether GpuIdle was set)."""
    bits = throttle_bits(nvml)
    names = sorted(bits[b] for b in bits if mask & b and bits[b] != "GpuIdle")
    return names, any(mask & b for b, n in bits.items() if n == "GpuIdle")


def process_used_bytes(nvml: Any, handle: Any, pid: int) -> int | None:
    """Device memory NVML accounts to process ``pid`` on this GPU (None: not listed or not reported)."""
    for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if proc.pid == pid:
            return proc.usedGpuMemory
    return None


@dataclass
class Reads:
    """One side of the window."""

    t_us: int
    values: dict[str, Any] = field(default_factory=dict)


class GpuWindow:
    """NVML reads bracketing one timed window; :meth:`result` turns them into the ``gpu`` namespace."""

    def __init__(self, nvml: Any, handle: Any, pid: int | None = None):
        self.nvml, self.handle, self.pid = nvml, handle, pid if pid is not None else os.getpid()
        self.reasons: dict[str, str] = {}
        self.samples: dict[str, list[tuple[int, float]]] = {}

    def _read(self, key: str, fn: Any) -> Any:
        if key in self.reasons:
            return None
        try:
            return fn()
        except Exception as exc:
            self.reasons[key] = f"NVML cannot read it on this GPU: {exc}"
            return None

    def _point(self) -> Reads:
        nvml, h = self.nvml, self.handle
        reads = Reads(t_us=int(time.time() * 1e6))
        for key, fn in (("energy_mj", lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(h)),
                        ("throttle", lambda: throttle_mask(nvml, h)),
                        ("temp_c", lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
                        ("device_used", lambda: nvml.nvmlDeviceGetMemoryInfo(h).used),
                        ("process_used", lambda: process_used_bytes(nvml, h, self.pid))):
            reads.values[key] = self._read(key, fn)
        return reads

    def start(self) -> None:
        self.before = self._point()

    def stop(self) -> None:
        """After the window: the end reads, then the sample buffers since the start."""
        self.after = self._point()
        for key, const, scale in SAMPLE_TYPES:
            got = self._read(key, lambda c=const: self.nvml.nvmlDeviceGetSamples(self.handle, getattr(self.nvml, c),
                                                                                 self.before.t_us))
            if got is None:
                continue
            value_type, raw = got
            member = _VALUE_MEMBER[value_type]
            self.samples[key] = [(s.timeStamp, getattr(s.sampleValue, member) * scale) for s in raw
                                 if self.before.t_us < s.timeStamp <= self.after.t_us]

    def both(self, key: str) -> list[Any]:
        return [r.values[key] for r in (self.before, self.after) if r.values.get(key) is not None]

    def why(self, key: str) -> str:
        if key in self.reasons:
            return self.reasons[key]
        return "NVML recorded no sample inside the timed window (shorter than its sampling period)"

    def memory(self) -> dict[str, Any]:
        """``device_used_mb_max`` (whole GPU) and ``device_process_used_mb`` (this process), in MiB."""
        mb, out, reasons = 2**20, {}, {}
        for name, key in (("device_used_mb_max", "device_used"), ("device_process_used_mb", "process_used")):
            values = self.both(key)
            out[name] = max(values) / mb if values else None
            if not values:
                reasons[name] = self.reasons.get(key) or (
                    f"NVML does not list this process (PID {self.pid}) on the GPU: in a container NVML reports "
                    "host PIDs (run with --pid=host), or the driver hides per-process memory" if key == "process_used"
                    else "NVML reported no used memory")
        out["reasons"] = reasons
        return out


def inclusive_peak(torch_peak_reserved_mb: float, process_used_mb: float | None) -> tuple[float, str]:
    """(device memory to rank by in MiB, its source): NVML's per-process figure when it is the larger (it
    includes memory outside torch's allocator), else torch's peak reserved (a peak NVML's two reads missed)."""
    if process_used_mb is not None and process_used_mb >= torch_peak_reserved_mb:
        return process_used_mb, "nvml_process_used"
    return torch_peak_reserved_mb, "torch_peak_reserved"


GPU_KEYS = ("utilization_mean_pct", "utilization_max_pct", "memory_utilization_mean_pct", "power_mean_w",
            "energy_j", "energy_per_image_j", "energy_source", "temperature_max_c", "sm_clock_mean_mhz",
            "sm_clock_min_mhz", "throttle_reasons")


def gpu_result(win: GpuWindow, images: int | None, window_s: float) -> dict[str, Any]:
    """The ``gpu`` namespace of one window: NVML's samples inside it, the energy counter's delta, the reasons.

    ``images``: images processed in the window (None: unknown); ``window_s``: its length in seconds.
    """
    out: dict[str, Any] = dict.fromkeys(GPU_KEYS)
    reasons: dict[str, str] = {}
    for name, key, fn in (("utilization_mean_pct", "util_pct", "mean"), ("utilization_max_pct", "util_pct", "max"),
                          ("memory_utilization_mean_pct", "mem_util_pct", "mean"),
                          ("sm_clock_mean_mhz", "sm_clock_mhz", "mean"), ("sm_clock_min_mhz", "sm_clock_mhz", "min")):
        values = [v for _, v in win.samples.get(key, [])]
        if values:
            out[name] = {"mean": sum(values) / len(values), "max": max(values), "min": min(values)}[fn]
        else:
            reasons[name] = win.why(key)
    temps = win.both("temp_c")
    out["temperature_max_c"] = max(temps) if temps else None
    masks = win.both("throttle")
    if masks:
        combined = 0
        for m in masks:
            combined |= m
        out["throttle_reasons"], out["gpu_idle_seen"] = throttle_names(win.nvml, combined)
    else:
        reasons["throttle_reasons"] = win.why("throttle")
    power = [v for _, v in win.samples.get("power_w", [])]
    out["power_samples"] = len(power)
    out["power_averaging_period_s"] = POWER_AVERAGING_S
    energy = win.both("energy_mj")
    if len(energy) == 2 and window_s > 0:
        out["energy_j"] = (energy[1] - energy[0]) / 1000.0
        out["energy_source"] = "nvml_total_energy_counter"
        out["power_mean_w"], out["power_source"] = out["energy_j"] / window_s, "energy_counter_over_window"
    elif power:
        out["power_mean_w"], out["power_source"] = sum(power) / len(power), "nvml_power_samples"
        out["energy_j"], out["energy_source"] = out["power_mean_w"] * window_s, "integrated_power_samples"
    else:
        reasons["power_mean_w"] = reasons["energy_j"] = win.reasons.get("energy_mj") or win.why("power_w")
    # Conservative: sampled power mixes in time before a short window; the counter's update period is not
    # published either, so any power figure of a window this short is flagged.
    out["window_shorter_than_power_averaging"] = window_s < POWER_AVERAGING_S
    if out["energy_j"] is not None and images:
        out["energy_per_image_j"] = out["energy_j"] / images
    elif out["energy_j"] is not None:
        reasons["energy_per_image_j"] = "the number of images in the window is unknown"
    for key in ("energy_per_image_j", "energy_source"):
        if out[key] is None and key not in reasons:
            reasons[key] = reasons.get("energy_j", "energy unknown")
    out["reasons"] = reasons
    return out
