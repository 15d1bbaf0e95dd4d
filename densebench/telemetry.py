"""Telemetry while a benchmark is timed: NVML reads around the window, torch/psutil memory, CPU, energy.

``Monitor`` wraps exactly the ``benchmark(step)`` call. The GPU is read through NVML before and
after the window, and NVML's own sample buffers give what happened inside it (see ``nvml.py``):
no thread samples the GPU, so nothing competes with the timed thread for the interpreter lock.
The process's peak resident memory comes from the kernel's high-water mark (``VmHWM``, reset
at the start of the window through ``/proc/self/clear_refs``); only where that reset is not
allowed does a thread sample RSS every ``--densebench-telemetry-interval-ms``.
Device memory: torch's allocator peaks beside NVML's per-process figure, which includes memory
outside torch's allocator (TensorRT engines, ONNX Runtime's arena, CUDA-graph pools, the context);
``device_inclusive_peak_mb`` is the larger, and reports rank memory by it.
Energy comes from NVML's total-energy counter where the GPU has one, else from
integrating sampled power; on CPU from Intel RAPL when the kernel exposes it readably.
A value this machine cannot give is ``None`` with the reason in the namespace's
``reasons`` map, never an invented number.

The RSS sampler reports its own cost: ``telemetry.sampler_overhead_pct`` is the time spent
inside sampling calls as a percentage of the timed window.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import platform
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

import psutil

from .nvml import GPU_KEYS, NO_DRIVER, GpuWindow, Nvml, gpu_result, inclusive_peak

__all__ = ["NO_DRIVER", "Monitor", "Nvml", "machine_info", "memory_now", "peak_memory_mb"]


@cache
def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------- RAPL (CPU package energy)


def _rapl_zones() -> list[Path]:
    base = Path("/sys/class/powercap")
    return sorted(p for p in base.glob("intel-rapl:*") if p.name.count(":") == 1) if base.is_dir() else []


def rapl_energy_uj() -> tuple[int | None, str | None]:
    zones = _rapl_zones()
    if not zones:
        return None, "no Intel RAPL power-capping interface in /sys/class/powercap"
    try:
        return sum(int((z / "energy_uj").read_text(encoding="ascii")) for z in zones), None
    except OSError as exc:
        return None, f"RAPL energy counter not readable ({exc.strerror or exc})"


# ---------------------------------------------------------------- peak RSS


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# ---------------------------------------------------------------- the monitor


class Monitor:
    """Context manager around the timed region; ``result()`` gives the telemetry namespaces."""

    def __init__(self, device: Any, settings: Any = None, interval_s: float | None = None):
        self.device = device
        ms = getattr(settings, "telemetry_interval_ms", None)
        self.interval_s = interval_s if interval_s is not None else (ms if ms is not None else 20) / 1000.0
        self.samples: list[dict[str, float | int]] = []
        self.rss_samples: list[int] = []
        self.busy_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.gpu: GpuWindow | None = None
        self.gpu_reason: str | None = None
        nvml, handle, reason = Nvml.handle(device)
        if handle is not None:
            self.gpu = GpuWindow(nvml, handle)
        else:
            self.gpu_reason = reason
        self._proc = psutil.Process()

    # -- lifecycle
    def __enter__(self) -> Monitor:
        if self.device.type == "cuda":
            import torch  # heavy, optional

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.rss_before = self._proc.memory_info().rss
        self._cpu_before = self._proc.cpu_times()
        psutil.cpu_percent(interval=None)  # start the system-wide window
        if self.gpu is not None:
            self.gpu.start()
        self._rapl_before, self._rapl_reason = rapl_energy_uj()
        self._hwm = reset_peak_rss()
        self._t0 = time.perf_counter()
        if not self._hwm:  # only RSS needs a thread, and only where the kernel's peak mark cannot be reset
            self._thread = threading.Thread(target=self._run, name="densebench-telemetry", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.gpu is not None:
            self.gpu.stop()
        self._rapl_after, _ = rapl_energy_uj()
        cpu_after = self._proc.cpu_times()
        self.cpu_s = (cpu_after.user - self._cpu_before.user) + (cpu_after.system - self._cpu_before.system)
        self.system_cpu_pct = psutil.cpu_percent(interval=None)
        self.rss_after = self._proc.memory_info().rss
        self.rss_hwm = peak_rss_bytes() if self._hwm else None
        if self.device.type == "cuda":
            import torch  # heavy, optional

            self.cuda_peak_alloc = torch.cuda.max_memory_allocated(self.device)
            self.cuda_peak_reserved = torch.cuda.max_memory_reserved(self.device)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            self.samples.append({"t": t - self._t0})
            self.rss_samples.append(self._proc.memory_info().rss)
            self.busy_s += time.perf_counter() - t
            self._stop.wait(self.interval_s)

    # -- results
    def result(self, batch_size: int, calls: int | None = None) -> dict[str, Any]:
        """Telemetry namespaces; ``calls`` = forward passes inside the window (for energy per image)."""
        images = calls * batch_size if calls else None
        return {"memory": self._memory(), "gpu": self._gpu(images), "cpu": self._cpu(images),
                "telemetry": {"interval_ms": self.interval_s * 1e3, "samples": len(self.samples),
                              "sampler_thread": self._thread is not None,
                              "rss_peak_source": "kernel_high_water_mark" if self._hwm else "sampled",
                              "window_s": self.elapsed_s, "sampler_busy_ms": self.busy_s * 1e3,
                              "sampler_overhead_pct": 100.0 * self.busy_s / self.elapsed_s
                              if self.elapsed_s else None,
                              "images_in_window": images}}

    def _memory(self) -> dict[str, Any]:
        mb = 1024 * 1024
        rss_peak = max([self.rss_before, self.rss_after, self.rss_hwm or 0, *self.rss_samples])
        out: dict[str, Any] = {"rss_mb_before": self.rss_before / mb, "rss_mb_peak": rss_peak / mb,
                               "rss_mb_after": self.rss_after / mb, "reasons": {}}
        device_keys = ("device_peak_allocated_mb", "device_peak_reserved_mb", "device_used_mb_max",
                       "device_process_used_mb", "device_inclusive_peak_mb")
        if self.device.type != "cuda":
            for key in device_keys:
                out[key] = None
                out["reasons"][key] = "CPU device: no device memory (see rss_mb_peak)"
            return out
        out["device_peak_allocated_mb"] = self.cuda_peak_alloc / mb
        out["device_peak_reserved_mb"] = self.cuda_peak_reserved / mb
        if self.gpu is not None:
            nvml_mem = self.gpu.memory()
            out["reasons"].update(nvml_mem.pop("reasons"))
            out.update(nvml_mem)
        else:
            for key in ("device_used_mb_max", "device_process_used_mb"):
                out[key] = None
                out["reasons"][key] = self.gpu_reason
        out["device_inclusive_peak_mb"], out["device_inclusive_source"] = inclusive_peak(
            out["device_peak_reserved_mb"], out["device_process_used_mb"])
        return out

    def _gpu(self, images: int | None) -> dict[str, Any]:
        if self.gpu is None:
            out: dict[str, Any] = dict.fromkeys(GPU_KEYS)
            out["reason"] = self.gpu_reason
            out["reasons"] = dict.fromkeys(GPU_KEYS, self.gpu_reason)
            return out
        return gpu_result(self.gpu, images, self.elapsed_s)

    def _cpu(self, images: int | None) -> dict[str, Any]:
        import torch  # heavy, optional

        logical = os.cpu_count() or 1
        affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        usable = len(affinity) if affinity else logical
        out: dict[str, Any] = {
            "process_utilization_pct": 100.0 * self.cpu_s / self.elapsed_s / usable if self.elapsed_s else None,
            "process_cpu_s": self.cpu_s,
            "system_utilization_pct": self.system_cpu_pct,
            "torch_threads": torch.get_num_threads(),
            "logical_cpus": logical,
            "affinity": affinity,
            "energy_j": None,
            "energy_per_image_j": None,
            "reasons": {},
        }
        if self._rapl_before is not None and self._rapl_after is not None:
            delta = self._rapl_after - self._rapl_before
            if delta < 0:  # counter wrapped
                out["reasons"]["energy_j"] = "RAPL counter wrapped during the window"
            else:
                out["energy_j"] = delta / 1e6
                out["energy_source"] = "intel_rapl_package"
                if images:
                    out["energy_per_image_j"] = out["energy_j"] / images
        else:
            out["reasons"]["energy_j"] = self._rapl_reason
        if out["energy_per_image_j"] is None:
            out["reasons"]["energy_per_image_j"] = out["reasons"].get("energy_j", "number of images unknown")
        return out


def memory_now(device: Any) -> dict[str, Any]:
    """Process RSS (after returning freed heap to the OS) and CUDA allocation right now."""
    try:  # glibc keeps freed memory mapped; give it back so RSS shows what is really held
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    out: dict[str, Any] = {"rss_mb": psutil.Process().memory_info().rss / 2**20}
    if getattr(device, "type", None) == "cuda":
        import torch  # heavy, optional

        out["cuda_allocated_mb"] = torch.cuda.memory_allocated(device) / 2**20
        out["cuda_reserved_mb"] = torch.cuda.memory_reserved(device) / 2**20
    return out


def peak_memory_mb(extra_info: dict[str, Any]) -> float | None:
    """The memory figure to compare optimizations by (MiB): on GPU the inclusive device peak (NVML's
    per-process used memory or torch's peak reserved, the larger; torch's peak allocated in results
    written before it existed), on CPU the process RSS peak."""
    mem = extra_info.get("memory") or {}
    return mem.get("device_inclusive_peak_mb") or mem.get("device_peak_allocated_mb") or mem.get("rss_mb_peak")


# ---------------------------------------------------------------- machine info


PACKAGES = ("torch", "torchvision", "torch-tensorrt", "tensorrt", "onnxruntime", "onnxruntime-gpu", "openvino",
            "nncf", "torchao", "timm", "numpy", "pytest", "pytest-benchmark", "pytest-xdist", "nvidia-ml-py",
            "psutil", "tensorboard", "densebench")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpu_inventory() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one record per visible CUDA GPU, driver-level info); empty with a reason on CPU-only machines."""
    import torch  # heavy, optional

    driver: dict[str, Any] = {"cuda_runtime": torch.version.cuda,
                              "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
                              else None}
    nvml, reason = Nvml.module()
    if nvml is not None:
        with contextlib.suppress(Exception):
            driver["driver_version"] = _text(nvml.nvmlSystemGetDriverVersion())
        with contextlib.suppress(Exception):
            v = nvml.nvmlSystemGetCudaDriverVersion()
            driver["cuda_driver"] = f"{v // 1000}.{(v % 1000) // 10}"
    else:
        driver["driver_version"] = None
        driver["gpu_reason"] = reason
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            record: dict[str, Any] = {"index": i, "name": p.name, "memory_total_mb": p.total_memory / 2**20,
                                      "compute_capability": f"{p.major}.{p.minor}",
                                      "multiprocessors": p.multi_processor_count}
            _, handle, _ = Nvml.handle(torch.device("cuda", i))
            if handle is not None:
                with contextlib.suppress(Exception):
                    record["power_limit_w"] = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
                with contextlib.suppress(Exception):
                    record["uuid"] = _text(nvml.nvmlDeviceGetUUID(handle))
            gpus.append(record)
    elif "gpu_reason" not in driver:
        driver["gpu_reason"] = "torch sees no CUDA device"
    return gpus, driver


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def machine_info() -> dict[str, Any]:
    import torch  # heavy, optional

    gpus, driver = gpu_inventory()
    return {
        "cpu_model": cpu_model_name(),
        "logical_cpus": os.cpu_count(),
        "physical_cpus": psutil.cpu_count(logical=False),
        "memory_total_mb": psutil.virtual_memory().total / 2**20,
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        **driver,
        "libraries": library_versions(),
    }
