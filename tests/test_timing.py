"""What is inside a timed round: the forward pass and the device sync, nothing else."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from densebench import timing
from densebench.model import build_model
from densebench.optimizations import BuildContext, build_runner

CONVERSIONS = {"aten::to", "aten::_to_copy", "aten::copy_", "aten::contiguous", "aten::clone",
               "aten::empty_like", "aten::to_dense"}


def test_percentiles() -> None:
    data = [float(i) for i in range(1, 101)]
    assert timing.percentile(data, 50) == pytest.approx(50.5)
    assert timing.percentile(data, 99) == pytest.approx(99.01)
    lat = timing.latency_ms([0.010, 0.020, 0.030])
    assert lat["p50"] == pytest.approx(20.0) and lat["min"] == pytest.approx(10.0)
    assert timing.throughput(8, 0.1) == pytest.approx(80.0)


def test_cpu_step_runs_forward_once_per_round() -> None:
    calls = []
    step = timing.make_step(lambda x: calls.append(x) or x, 7, torch.device("cpu"))
    assert step() == 7 and step() == 7
    assert calls == [7, 7] and step.calls == 2


class FakeEvent:
    log: ClassVar[list[str]] = []
    made = 0

    def __init__(self, enable_timing: bool = False):
        assert enable_timing
        self.name = ("start", "end")[FakeEvent.made % 2]
        FakeEvent.made += 1

    def record(self) -> None:
        FakeEvent.log.append(f"{self.name}.record")

    def synchronize(self) -> None:
        FakeEvent.log.append(f"{self.name}.synchronize")

    def elapsed_time(self, other: FakeEvent) -> float:
        return 12.5


def test_cuda_step_is_synchronized_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA each round is: start event, forward, end event, wait for the end event."""
    FakeEvent.log, FakeEvent.made = [], 0
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    step = timing.make_step(lambda x: FakeEvent.log.append("forward") or x, 1, torch.device("cuda", 0))
    for _ in range(3):
        step()
    assert FakeEvent.log == ["start.record", "forward", "end.record", "end.synchronize"] * 3
    check = timing.cuda_crosscheck(step)
    assert check["median_ms"] == pytest.approx(12.5) and check["runs"] == 3


def test_cuda_synchronizer_waits_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: seen.append(device))
    device = torch.device("cuda", 1)
    timing.synchronizer(device)()
    assert seen == [device]


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    return build_model("random", seed=0)[0]


@pytest.mark.parametrize("name", ["baseline", "channels_last", "fp16", "channels_last+fp16"])
def test_timed_region_has_no_conversions(small_model: torch.nn.Module, name: str) -> None:
    """Inside a timed round the profiler sees the model's ops and nothing before them.

    A dtype, memory-format or device conversion of the input would be a top-level op (it
    runs before the first convolution, outside any model op); the model's own internal
    casts (inside adaptive_avg_pool2d, linear) are nested under model ops.
    """
    ctx = BuildContext(device=torch.device("cpu"))
    batch = torch.randn(2, 3, 32, 32)
    runner = build_runner(name, small_model, batch, ctx)
    x = runner.prepare(batch)
    step = timing.make_step(runner, x, ctx.device)
    with runner.activated():
        step()  # warm
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
    events = prof.events()
    top_level = [e for e in events if e.cpu_parent is None]
    assert top_level[0].name == "aten::conv2d", f"first op of the round is {top_level[0].name}"
    stray = sorted({e.name for e in top_level} & CONVERSIONS)
    assert not stray, f"conversion ops at the top level of the timed round: {stray}"
    assert x.dtype == runner.input_dtype
    assert x.is_contiguous(memory_format=runner.memory_format)
