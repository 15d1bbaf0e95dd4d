"""One side of ``densebench ab``: a long-lived process that builds once, then times rounds on request.

Started by :mod:`densebench.ab` as ``PYTHON /path/to/ab_worker.py`` in the side's interpreter, with
the side's checkout first on ``PYTHONPATH``, so ``densebench`` (and the model code it measures) is
imported from the side, not from the parent. It speaks JSON lines: one request on stdin, one reply
on the original stdout (anything the code under test prints goes to stderr instead).

Requests and replies (times in seconds):

* ``{"cmd": "setup", "settings": {...}, "optimization": NAME, "batch_size": N, "threads": T}`` ->
  ``{"ok": true, "info": {...}}``: sets torch's intra-op threads (T: "auto", "all" or a count, see
  :func:`threads_for`; ONNX Runtime and OpenVINO follow torch's count), builds the optimization,
  prepares the input, runs the warm-up;
  ``info`` holds the device, the resolved settings, threads, weights, dataset, python, packages and
  machine info;
* ``{"cmd": "rounds", "n": K}`` -> ``{"ok": true, "times": [t1, ...]}``: K timed rounds back to back
  (each one synchronized forward pass, ``time.perf_counter`` around it, garbage collector off);
* ``{"cmd": "quit"}`` ends the process. A failure replies ``{"ok": false, "error": TEXT}``.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import os
import sys
import time
from typing import Any

if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # run by path: this directory's modules must not shadow the standard library


class Side:
    """The built optimization of one side and its prepared input."""

    def __init__(self, request: dict[str, Any]):
        import torch

        from densebench.optimizations import build_runner  # the side's own densebench
        from densebench.resources import Resources, device_name
        from densebench.settings import Settings
        from densebench.telemetry import machine_info
        from densebench.timing import make_step

        settings = Settings.from_mapping(request.get("settings") or {})
        res = Resources(settings)
        res.prepare()
        threads = threads_for(str(request.get("threads") or "all"), res.device.type)
        if threads:
            torch.set_num_threads(threads)
        batch_size = int(request["batch_size"])
        batch = res.data.batch(batch_size)
        self.runner = build_runner(request["optimization"], res.model, batch, res.context())
        with self.runner.activated():
            self.step = make_step(self.runner, self.runner.prepare(batch), res.device)
            for _ in range(settings.warmup):
                self.step()
        self.info = {
            "device": str(res.device), "device_name": device_name(res.device), "settings": settings.as_dict(),
            "weights": res.weights.source, "dataset": res.data.info.source, "model_digest": res.model_digest,
            "optimization": self.runner.name, "batch_size": batch_size, "precision": self.runner.precision,
            "threads": torch.get_num_threads(),
            "python": sys.executable, "prefix": sys.prefix,
            "densebench": os.path.dirname(sys.modules["densebench"].__file__ or ""),
            "packages": _packages(),
            "machine_info": machine_info(), "build_s": self.runner.build_s,
        }
        gc.collect()
        gc.disable()

    def rounds(self, n: int) -> list[float]:
        times = []
        with self.runner.activated():
            for _ in range(n):
                start = time.perf_counter()
                self.step()
                times.append(time.perf_counter() - start)
        return times


def threads_for(threads: str, device_type: str) -> int | None:
    """torch intra-op threads for a side: ``"all"`` -> None (torch's default, one per core); ``"auto"`` ->
    usable cores - 1 (at least 1) on the CPU, None on a GPU; a count -> that count.

    Why leave a core on the CPU: with as many threads as cores, one busy process elsewhere makes
    every parallel region wait at its barrier for a descheduled thread. Measured on the 2-vCPU
    development machine (scripts/gate_power.py, on/off load on one core, 20 comparisons of each
    kind): 2 threads detected a +14% FLOPs workload 16 times in 20, 1 thread 20 times in 20."""
    if threads == "all":
        return None
    if threads == "auto":
        return max(1, len(os.sched_getaffinity(0)) - 1) if device_type == "cpu" else None
    return int(threads)


def _packages() -> dict[str, str]:
    """Installed distributions as imports resolve them: the first one on sys.path wins."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in found:
            found[name.lower()] = dist.version
    return found


def serve(requests: Any, reply: Any) -> None:
    """Answer JSON-line requests until 'quit' or end of input."""
    side: Side | None = None
    for line in requests:
        request = json.loads(line)
        try:
            if request["cmd"] == "quit":
                return
            if request["cmd"] == "setup":
                side = Side(request)
                answer: dict[str, Any] = {"ok": True, "info": side.info}
            elif side is None:
                answer = {"ok": False, "error": "no setup request came before rounds"}
            else:
                answer = {"ok": True, "times": side.rounds(int(request["n"]))}
        except Exception as exc:  # reported to the parent, which stops with this message
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply.write(json.dumps(answer, default=str) + "\n")
        reply.flush()


def main() -> None:
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints of the code under test go to stderr
    serve(sys.stdin, reply)


if __name__ == "__main__":
    main()
