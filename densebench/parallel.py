"""One pytest-xdist worker per GPU (or per disjoint set of CPU cores), with benchmarks kept on.

pytest-benchmark turns itself off under xdist, because benchmarks that share hardware
disturb each other. When every worker owns its own device that reason is gone, so:

* ``pytest benchmarks -n N --densebench-device cuda`` with N <= visible GPUs pins worker
  k to ``cuda:k``; ``-n auto`` means one worker per GPU. Its CPU affinity is the GPU's own NUMA
  node (the kernel's ``/sys/bus/pci/devices/<bus id>/local_cpulist``), split evenly between the
  workers whose GPUs share that node, so input preparation and kernel launches stay local;
* with ``--densebench-device cpu``, N <= usable cores, each worker gets a disjoint slice of
  the CPUs (``os.sched_setaffinity``) and as many torch threads;
* tests are scheduled by optimization (a load-scope scheduler whose scope is the
  optimization in the test id), so each optimization is built on one worker only;
* each worker hands its benchmarks to the controller (xdist's ``workeroutput``), which
  writes ONE pytest-benchmark JSON; every benchmark records its worker and pinning.

Any other parallel run (more workers than devices) is left as pytest-benchmark leaves it:
disabled, with its warning, and densebench says why.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Assignment:
    pinned: bool
    worker: str | None = None
    device: str | None = None  # the device this worker benchmarks on
    cpus: tuple[int, ...] | None = None  # CPU affinity of this worker
    reason: str | None = None  # why not pinned

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cpus"] = list(self.cpus) if self.cpus is not None else None
        return out


def worker_id() -> str | None:
    return os.environ.get("PYTEST_XDIST_WORKER")


def worker_count() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cuda_count() -> int:
    import torch  # heavy, optional

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_cpulist(text: str) -> tuple[int, ...]:
    """The kernel's CPU list format ('0-3,8-11,16') -> sorted CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    return tuple(sorted(cpus))


def gpu_local_cpulists(count: int, sysfs: str = "/sys/bus/pci/devices") -> list[tuple[int, ...] | None]:
    """Per visible GPU, the CPUs of its NUMA node that this process may use (None where unknown)."""
    import torch  # heavy, optional

    usable = set(usable_cpus())
    out: list[tuple[int, ...] | None] = []
    for i in range(count):
        p = torch.cuda.get_device_properties(i)
        path = os.path.join(sysfs, f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0", "local_cpulist")
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                local = tuple(c for c in parse_cpulist(fh.read()) if c in usable)
        except (OSError, ValueError):
            local = ()
        out.append(local or None)
    return out


def gpu_cpu_slices(local: list[tuple[int, ...] | None]) -> list[tuple[int, ...] | None]:
    """Worker k's CPUs: its GPU's local CPUs, split evenly (disjoint) among the workers sharing them."""
    out: list[tuple[int, ...] | None] = []
    for k, cpus in enumerate(local):
        if not cpus:
            out.append(None)
            continue
        sharing = [j for j, other in enumerate(local) if other == cpus]
        per = len(cpus) // len(sharing)
        rank = sharing.index(k)
        out.append(cpus[rank * per:(rank + 1) * per] or None)
    return out


def wants_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and cuda_count() > 0)


def assign(device: str, workers: int, index: int) -> Assignment:
    """Worker ``index`` of ``workers``: pinned to its own GPU or CPU slice, or why it cannot be."""
    name = f"gw{index}"
    if wants_cuda(device):
        gpus = cuda_count()
        if device.startswith("cuda:"):
            return Assignment(False, name, reason=f"--densebench-device {device} names one GPU; with -n {workers} "
                                                  "use --densebench-device cuda (one worker per GPU)")
        if workers > gpus:
            return Assignment(False, name, reason=f"-n {workers} workers but {gpus} GPU(s): workers would share "
                                                  "a GPU")
        cpus = gpu_cpu_slices(gpu_local_cpulists(workers))[index]
        return Assignment(True, name, device=f"cuda:{index}", cpus=cpus)
    cpus = usable_cpus()
    if workers > len(cpus):
        return Assignment(False, name, reason=f"-n {workers} workers but {len(cpus)} usable CPU core(s)")
    per = len(cpus) // workers
    return Assignment(True, name, device="cpu", cpus=tuple(cpus[index * per:(index + 1) * per]))


def pin(assignment: Assignment) -> None:
    """Apply a CPU assignment to this process (GPU assignments are applied through the settings)."""
    if assignment.cpus is not None and hasattr(os, "sched_setaffinity"):
        import torch  # heavy, optional

        os.sched_setaffinity(0, assignment.cpus)
        torch.set_num_threads(len(assignment.cpus))


# ---------------------------------------------------------------- worker -> controller


class WorkerBenchmark:
    """A benchmark measured on a worker, as pytest-benchmark's session expects to save and show it."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.fullname = data["fullname"]
        self.name = data["name"]
        self.group = data.get("group")
        self.has_error = False

    def __bool__(self) -> bool:
        return True

    def as_dict(self, include_data: bool = True, flat: bool = False, stats: bool = True,
                cprofile: Any = None) -> dict[str, Any]:
        result = {k: v for k, v in self.data.items() if k != "stats"}
        if stats:
            values = dict(self.data["stats"])
            if not include_data:
                values.pop("data", None)
            if flat:
                result.update(values)
            else:
                result["stats"] = values
        return result


def export(benchmarks: list[Any], run_info: dict[str, Any]) -> str:
    """Serialize a worker's benchmarks (with raw data) and densebench record for the controller."""
    out = []
    for bench in benchmarks:
        if bench.has_error or not bench:
            continue
        data = bench.as_dict(include_data=True)
        data["fullname"] = data["fullname"].split("@", 1)[0]  # drop xdist's '@group' suffix
        out.append(data)
    return json.dumps({"benchmarks": out, "densebench": run_info}, default=str)


def load(payload: str) -> tuple[list[WorkerBenchmark], dict[str, Any]]:
    doc = json.loads(payload)
    return [WorkerBenchmark(b) for b in doc["benchmarks"]], doc["densebench"]


_OPTIMIZATION = re.compile(r"\[(?P<optimization>[^\]]+)-(?:bs\d+|offline|server|singlestream)\]$")


def by_optimization_scheduler(config: Any, log: Any) -> Any:
    """xdist's load-scope scheduling with the optimization as the scope (other tests: their module)."""
    from xdist.scheduler import LoadScopeScheduling  # optional: the xdist extra

    class ByOptimization(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            match = _OPTIMIZATION.search(nodeid)
            return f"optimization:{match['optimization']}" if match else super()._split_scope(nodeid)

    return ByOptimization(config, log)
