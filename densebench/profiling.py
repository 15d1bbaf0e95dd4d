"""torch.profiler traces and TensorBoard scalars.

``profile_rounds`` runs a few *extra* forward passes after a benchmark's timed rounds
(never inside them) under ``torch.profiler`` and writes, per benchmark:

* ``<output>/profiles/tensorboard/<run>/<name>.*.pt.trace.json``: the layout TensorBoard's
  profiler plugin reads (``tensorboard --logdir <output>/profiles/tensorboard``);
* ``<output>/profiles/traces/<run>/<name>.trace.json``: the same Chrome trace, for
  https://ui.perfetto.dev or chrome://tracing.

and returns the paths plus the top operators (and, on CUDA, the top kernels) by self time.

``Scalars`` writes per-benchmark scalars as TensorBoard event files, one TensorBoard run
per optimization with the batch size as the step, so the optimizations overlay in one
chart per metric: ``<output>/tensorboard/<run>/<optimization>/events.out.tfevents.*``.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from . import telemetry


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def run_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _self_device_us(event: Any) -> float:
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, attr, None)
        if value is not None:
            return float(value)
    return 0.0


def top_events(prof: Any, rounds: int, limit: int = 10) -> dict[str, list[dict[str, Any]]]:
    """Top operators by self CPU time and top device kernels by self device time, per round."""
    averages = prof.key_averages()
    ops = [e for e in averages if not e.key.startswith("ProfilerStep")]
    ops.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    top_ops = [{"name": e.key, "calls_per_round": e.count / rounds,
                "self_cpu_ms_per_round": e.self_cpu_time_total / 1e3 / rounds,
                "self_device_ms_per_round": _self_device_us(e) / 1e3 / rounds} for e in ops[:limit]]
    kernels = [e for e in averages if _self_device_us(e) > 0 and not e.key.startswith(("aten::", "cuda"))]
    kernels.sort(key=_self_device_us, reverse=True)
    top_kernels = [{"name": e.key, "calls_per_round": e.count / rounds,
                    "self_device_ms_per_round": _self_device_us(e) / 1e3 / rounds} for e in kernels[:limit]]
    return {"top_ops": top_ops, "top_kernels": top_kernels}


def profile_rounds(step: Any, device: Any, output: Path, run: str, name: str, rounds: int = 3) -> dict[str, Any]:
    """Profile ``rounds`` extra calls of ``step`` (after one profiler warm-up call)."""
    import torch  # heavy, optional
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler  # heavy, optional

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    tb_dir = output / "profiles" / "tensorboard" / run
    traces = output / "profiles" / "traces" / run
    tb_dir.mkdir(parents=True, exist_ok=True)
    traces.mkdir(parents=True, exist_ok=True)
    worker = safe_name(name)
    written: list[Path] = []
    summary: dict[str, Any] = {}

    def on_ready(prof: Any) -> None:  # the profiler drops its events after this callback
        before = set(tb_dir.glob(f"{worker}.*.pt.trace.json"))
        tensorboard_trace_handler(str(tb_dir), worker_name=worker)(prof)
        written.extend(sorted(set(tb_dir.glob(f"{worker}.*.pt.trace.json")) - before))
        summary.update(top_events(prof, rounds))

    with profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=rounds),
                 on_trace_ready=on_ready) as prof:
        for _ in range(1 + rounds):
            step()
            prof.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if not written:
        raise RuntimeError(f"torch.profiler wrote no trace for {name} into {tb_dir}")
    chrome = traces / f"{worker}.trace.json"
    shutil.copyfile(written[-1], chrome)
    return {"rounds": rounds, "chrome_trace": str(chrome), "tensorboard_trace": str(written[-1]),
            "tensorboard_logdir": str(tb_dir.parent), **summary}


class Scalars:
    """TensorBoard scalars: one event-file run per optimization, batch size as the step."""

    def __init__(self, root: Path, run: str):
        self.dir = root / "tensorboard" / run
        self.writers: dict[str, Any] = {}

    def write(self, info: dict[str, Any]) -> Path:
        from torch.utils.tensorboard import SummaryWriter  # heavy, optional

        opt = info["optimization"]
        if opt not in self.writers:
            self.writers[opt] = SummaryWriter(log_dir=str(self.dir / safe_name(opt)))
        writer = self.writers[opt]
        step = int(info["batch_size"])
        values = {"throughput_samples_per_s": info.get("throughput_samples_per_s"),
                  "setup_s": info.get("setup_s"),
                  "peak_memory_mb": telemetry.peak_memory_mb(info)}
        for key, value in (info.get("latency_ms") or {}).items():
            values[f"latency_ms/{key}"] = value
        gpu = info.get("gpu") or {}
        for key in ("utilization_mean_pct", "power_mean_w", "energy_per_image_j", "sm_clock_mean_mhz"):
            values[f"gpu/{key}"] = gpu.get(key)
        cpu = info.get("cpu") or {}
        values["cpu/process_utilization_pct"] = cpu.get("process_utilization_pct")
        values["parity/top1_agreement"] = (info.get("parity") or {}).get("top1_agreement")
        for tag, value in values.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(tag, float(value), global_step=step)
        writer.flush()
        return self.dir / safe_name(opt)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
