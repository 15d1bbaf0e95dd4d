"""CUDA paths on a real GPU (skipped without one): synchronized timing, no host copies, NVML, memory."""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from densebench import telemetry, timing
from densebench.model import build_model
from densebench.optimizations import BuildContext, build_runner

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")
pytestmark = [needs_cuda, pytest.mark.needs_cuda]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model("random", seed=0)[0]


def runner_for(model: torch.nn.Module, name: str, batch: torch.Tensor):
    ctx = BuildContext(device=torch.device("cuda", 0))
    return build_runner(name, model, batch, ctx)


def test_host_timing_agrees_with_cuda_events(model: torch.nn.Module) -> None:
    batch = torch.randn(32, 3, 224, 224)
    runner = runner_for(model, "channels_last+amp", batch)
    with runner.activated():
        x = runner.prepare(batch)
        step = timing.make_step(runner, x, runner.device)
        for _ in range(5):
            step()
        host = []
        for _ in range(30):
            t = time.perf_counter()
            step()
            host.append(time.perf_counter() - t)
    device = step.event_times_s()[-30:]
    ratio = statistics.median(device) / statistics.median(host)
    assert 0.9 <= ratio <= 1.1, (f"CUDA events {statistics.median(device) * 1e3:.3f} ms vs host "
                                 f"{statistics.median(host) * 1e3:.3f} ms")


def test_timed_round_has_no_host_device_copies(model: torch.nn.Module) -> None:
    batch = torch.randn(8, 3, 224, 224)
    runner = runner_for(model, "channels_last+fp16", batch)
    with runner.activated():
        x = runner.prepare(batch)
        assert x.is_cuda and x.dtype == torch.float16 and x.is_contiguous(memory_format=torch.channels_last)
        step = timing.make_step(runner, x, runner.device)
        step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            step()
    names = {e.key for e in prof.key_averages()}
    copies = sorted(n for n in names if "Memcpy HtoD" in n or "Memcpy DtoH" in n)
    assert not copies, f"host<->device copies inside a timed round: {copies}"


def test_nvml_telemetry_is_real(model: torch.nn.Module) -> None:
    batch = torch.randn(64, 3, 224, 224)
    runner = runner_for(model, "baseline", batch)
    with runner.activated():
        x = runner.prepare(batch)
        monitor = telemetry.Monitor(runner.device, interval_s=0.01)
        calls = 0
        with monitor:
            end = time.perf_counter() + 1.5
            while time.perf_counter() < end:
                runner(x)
                torch.cuda.synchronize()
                calls += 1
    result = monitor.result(batch_size=64, calls=calls)
    gpu, mem = result["gpu"], result["memory"]
    assert gpu["utilization_max_pct"] > 0 and gpu["power_mean_w"] > 10
    assert gpu["energy_j"] > 0 and gpu["energy_per_image_j"] > 0
    assert gpu["sm_clock_mean_mhz"] > 100 and gpu["temperature_max_c"] > 0
    assert mem["device_peak_allocated_mb"] > 100 and mem["device_used_mb_max"] > mem["device_peak_allocated_mb"] / 2
    # NVML's own buffers, read after the window; no thread sampled the GPU
    assert gpu["power_samples"] >= 1 and result["telemetry"]["sampler_thread"] is False
    assert gpu["window_shorter_than_power_averaging"] is False
    if mem["device_process_used_mb"] is not None:  # None where NVML hides this PID (a container's namespace)
        assert mem["device_process_used_mb"] > mem["device_peak_allocated_mb"], "the CUDA context is counted"
        assert mem["device_inclusive_peak_mb"] == mem["device_process_used_mb"]


def test_peak_memory_grows_with_batch_size(model: torch.nn.Module) -> None:
    peaks = {}
    for bs in (8, 64):
        batch = torch.randn(bs, 3, 224, 224)
        runner = runner_for(model, "baseline", batch)
        with runner.activated():
            x = runner.prepare(batch)
            runner(x)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            runner(x)
            torch.cuda.synchronize()
            peaks[bs] = torch.cuda.max_memory_allocated()
        runner.release()
        del x
        torch.cuda.empty_cache()
    assert peaks[64] > peaks[8] * 2


def test_cudagraph_replay_matches_eager(model: torch.nn.Module) -> None:
    batch = torch.randn(4, 3, 224, 224)
    eager = runner_for(model, "channels_last+fp16", batch)
    graphed = runner_for(model, "channels_last+fp16+cudagraphs", batch)
    with eager.activated():
        ref = eager.logits(eager(eager.prepare(batch)))
        out = graphed.logits(graphed(graphed.prepare(batch)))
    assert torch.allclose(ref, out, atol=1e-2, rtol=1e-2)
