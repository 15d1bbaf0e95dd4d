"""Synchronized step timing, percentiles and an independent cross-check.

The function handed to pytest-benchmark is :func:`make_step`'s: one forward pass on an
input that is already resident and in the runner's dtype/format, ending with the device
synchronized. On CUDA the synchronization is a pair of CUDA events around the forward
pass; waiting on the end event is the round's sync, and the events give a device-side
time for the very same rounds (the cross-check). On CPU the call returns when done.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def synchronizer(device: Any) -> Callable[[], None]:
    """A function that blocks until all work queued on ``device`` is done."""
    if getattr(device, "type", device) == "cuda":
        import torch  # heavy, optional

        def sync() -> None:
            torch.cuda.synchronize(device)

        return sync
    return lambda: None


@dataclass
class Step:
    """One timed round: forward pass + device sync. Records CUDA event pairs when on CUDA."""

    forward: Callable[[Any], Any]
    x: Any
    device: Any
    events: list[tuple[Any, Any]] = field(default_factory=list)
    calls: int = 0
    _sync: Callable[[], None] = field(init=False)

    def __post_init__(self) -> None:
        self._sync = synchronizer(self.device)
        self._cuda = getattr(self.device, "type", self.device) == "cuda"

    def __call__(self) -> Any:
        self.calls += 1
        if self._cuda:
            import torch  # heavy, optional

            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.forward(self.x)
            end.record()
            end.synchronize()
            self.events.append((start, end))
            return out
        out = self.forward(self.x)
        self._sync()
        return out

    def event_times_s(self) -> list[float]:
        return [s.elapsed_time(e) / 1e3 for s, e in self.events]


def make_step(forward: Callable[[Any], Any], x: Any, device: Any) -> Step:
    return Step(forward, x, device)


def percentile(sorted_data: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of already sorted data."""
    if not sorted_data:
        raise ValueError("no data")
    pos = (len(sorted_data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_data[lo] + (sorted_data[hi] - sorted_data[lo]) * (pos - lo)


def latency_ms(round_times_s: Sequence[float]) -> dict[str, float]:
    data = sorted(round_times_s)
    return {
        "p50": percentile(data, 50) * 1e3,
        "p90": percentile(data, 90) * 1e3,
        "p99": percentile(data, 99) * 1e3,
        "mean": statistics.fmean(data) * 1e3,
        "min": data[0] * 1e3,
        "max": data[-1] * 1e3,
    }


def throughput(batch_size: int, median_s: float) -> float:
    return batch_size / median_s


def cpu_crosscheck(step: Callable[[], Any], threads: int, expected_s: float) -> dict[str, Any]:
    """Time ``step`` again with torch.utils.benchmark (its own loop, clock and statistics).

    Runs for about five times the benchmark's median round (0.5 s to 3 s), so slow
    configurations still get several runs.
    """
    import torch.utils.benchmark as tbench  # heavy, optional

    min_run_time = min(3.0, max(0.5, 5 * expected_s))
    timer = tbench.Timer(stmt="step()", globals={"step": step}, num_threads=threads,
                         label="densebench crosscheck")
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return {"method": "torch.utils.benchmark.Timer.blocked_autorange", "median_ms": measurement.median * 1e3,
            "min_ms": min(measurement.times) * 1e3, "runs": len(measurement.times), "separate_rounds": True}


def cuda_crosscheck(step: Step) -> dict[str, Any]:
    times = step.event_times_s()
    if not times:
        return {"method": "cuda_events", "median_ms": None, "reason": "no rounds recorded"}
    return {"method": "cuda_events", "median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3,
            "runs": len(times), "separate_rounds": False}
