"""Noise you can see: round-to-round variation and the interference that caused it.

:class:`Interference` watches a timed window and measures what else used the machine:

* other processes' CPU time: the machine's busy CPU time (``psutil.cpu_times()``: user, nice,
  system, irq, softirq; from ``/proc/stat`` on Linux) minus this process and its children's;
* steal: CPU time the hypervisor gave to other guests (the ``steal`` column of ``/proc/stat``);
* other processes on the GPU: NVML's compute and graphics process lists, without this process.

:func:`warning` turns a measured noise figure and the threshold being gated on into one line that
names the largest cause seen, or says none was seen (then the configuration itself varies, or, on a VM,
other guests slow the shared cores unseen: on the 2-vCPU development VM the same forward pass took
290-890 ms within a minute (DenseNet-121, 224 px, batch 8) with no other process and no steal
time); it goes into each benchmark's ``extra_info.noise``. :func:`run_warning` folds a run's noisy benchmarks into
one terminal line (how many, the worst and its cause) against the threshold the run is gated on.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from .nvml import Nvml

_BUSY = ("user", "nice", "system", "irq", "softirq")
# The threshold a benchmark's own noise is held against in a run: the default of densebench ab and compare.
GATE_THRESHOLD = 0.05
NO_CAUSE = ("no interference seen from inside this machine: the configuration itself varies (frequency "
            "scaling, its own threads, memory), or on a VM other guests share the physical cores and memory "
            "bandwidth, which steal time does not count")


@dataclass(frozen=True)
class Gate:
    """The threshold a run's noise is held against, and where it comes from (said in the warning line)."""

    threshold: float  # a fraction: 0.05 is 5%
    source: str


DEFAULT_GATE = Gate(GATE_THRESHOLD, "the default threshold of densebench compare and ab")


def _busy_s() -> tuple[float, float | None]:
    """(busy CPU seconds of the whole machine, steal seconds or None where the OS has no steal column)."""
    t = psutil.cpu_times()
    busy = sum(getattr(t, name, 0.0) for name in _BUSY)
    return busy, getattr(t, "steal", None)


def _own_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system + sum(
        _child_s(c) for c in _children(proc))


def _children(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return proc.children(recursive=True)
    return []


def _child_s(child: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        t = child.cpu_times()
        return t.user + t.system
    return 0.0


def gpu_processes(device: Any) -> tuple[list[int] | None, str | None]:
    """(PIDs of processes on ``device``'s GPU other than this one, or None, and the reason when None)."""
    nvml, handle, reason = Nvml.handle(device)
    if handle is None:
        return None, reason
    pids: set[int] = set()
    for query in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        with contextlib.suppress(Exception):
            pids.update(int(p.pid) for p in getattr(nvml, query)(handle))
    return sorted(pids - {os.getpid()}), None


class Interference:
    """Context manager around a timed window; ``result()`` gives what else ran meanwhile (seconds, PIDs).

    ``device`` is a torch device (or anything with ``.type``); the GPU is looked at only on CUDA."""

    def __init__(self, device: Any):
        self.device = device
        self._proc = psutil.Process()

    def __enter__(self) -> Interference:
        self._gpu_before, self._gpu_reason = gpu_processes(self.device)
        self._busy0, self._steal0 = _busy_s()
        self._own0 = _own_s(self._proc)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.window_s = time.perf_counter() - self._t0
        busy1, steal1 = _busy_s()
        own = _own_s(self._proc) - self._own0
        self.other_cpu_s = max(0.0, busy1 - self._busy0 - own)
        self.steal_s = None if steal1 is None or self._steal0 is None else max(0.0, steal1 - self._steal0)
        after, _ = gpu_processes(self.device)
        self.gpu_other = None if after is None else sorted(set(after) | set(self._gpu_before or []))

    def result(self) -> dict[str, Any]:
        """``other_processes_cpu_s``, ``other_processes_cpu_share`` (of all logical CPUs), ``steal_s``,
        ``gpu_other_processes``, ``window_s``, ``cause`` (None when nothing notable) and ``reasons``."""
        cpus = psutil.cpu_count() or 1
        share = self.other_cpu_s / (self.window_s * cpus) if self.window_s > 0 else None
        reasons: dict[str, str] = {}
        if self.steal_s is None:
            reasons["steal_s"] = "this OS reports no steal time"
        if self.gpu_other is None:
            reasons["gpu_other_processes"] = self._gpu_reason or "no GPU"
        out = {"window_s": self.window_s, "other_processes_cpu_s": self.other_cpu_s,
               "other_processes_cpu_share": share, "steal_s": self.steal_s, "gpu_other_processes": self.gpu_other,
               "reasons": reasons}
        out["cause"] = cause(out, cpus)
        return out


def cause(seen: dict[str, Any], cpus: int) -> str | None:
    """The largest interference in ``seen`` (an :meth:`Interference.result`), in words; None below notice
    (other processes under 5% of the CPUs, steal under 1% of the window, no other GPU process)."""
    window = seen.get("window_s") or 0.0
    found: list[tuple[float, str]] = []
    share = seen.get("other_processes_cpu_share")
    if share is not None and share >= 0.05:
        found.append((share, f"other processes used {share:.0%} of the {cpus} CPUs "
                             f"({seen['other_processes_cpu_s']:.1f} CPU-s in {window:.1f} s)"))
    steal = seen.get("steal_s")
    if steal is not None and window > 0 and steal / (window * cpus) >= 0.01:
        found.append((steal / (window * cpus), f"the hypervisor stole {steal:.2f} CPU-s (steal time)"))
    gpu = seen.get("gpu_other_processes")
    if gpu:
        found.append((1.0, f"{len(gpu)} other process(es) on the GPU (PIDs {', '.join(map(str, gpu[:5]))})"))
    return max(found)[1] if found else None


def warning(what: str, noise: float, threshold: float, seen: dict[str, Any] | None) -> str | None:
    """A warning line when ``noise`` (a CV or a CI half-width, as a fraction) exceeds ``threshold``, naming
    the cause seen in ``seen`` (an :meth:`Interference.result`); None when the noise is within it."""
    if noise <= threshold:
        return None
    why = (seen or {}).get("cause") or NO_CAUSE
    return (f"densebench: warning: {what}: measured noise {noise:.1%} is larger than the {threshold:.0%} "
            f"threshold; cause seen: {why}")


def run_warning(outcomes: Iterable[dict[str, Any]], gate: Gate = DEFAULT_GATE) -> str | None:
    """One line for a run: how many benchmarks' rounds' CV exceeds ``gate``, the worst with the cause seen,
    and during how many of them interference was seen; None when none does.

    ``outcomes`` are outcome dicts (records.Outcome) with ``noise_cv`` and ``noise_cause``; those
    without a CV (not timed) are not counted."""
    timed = [o for o in outcomes if o.get("noise_cv") is not None]
    noisy = [o for o in timed if o["noise_cv"] > gate.threshold]
    if not noisy:
        return None
    worst = max(noisy, key=lambda o: o["noise_cv"])
    line = (f"densebench: warning: noise: {len(noisy)} of {len(timed)} benchmarks had a rounds' CV above "
            f"{gate.threshold:.0%} ({gate.source}); worst: {worst['optimization']} at batch {worst['batch_size']}, "
            f"CV {worst['noise_cv']:.1%}, cause seen: {worst.get('noise_cause') or NO_CAUSE}")
    if len(noisy) > 1:
        line += f"; interference seen during {sum(1 for o in noisy if o.get('noise_cause'))} of the {len(noisy)}"
    return line + "; per-benchmark figures are in extra_info.noise"
