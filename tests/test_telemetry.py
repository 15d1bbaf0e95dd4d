"""Telemetry: real psutil/profiler/TensorBoard paths on CPU (NVML: tests/test_nvml_replay.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from densebench import telemetry
from densebench.telemetry import Monitor, Nvml


def busy_work(cpu_seconds: float) -> None:
    """Use ``cpu_seconds`` of this process's CPU time: a loaded machine gives less CPU per wall second."""
    a = torch.randn(256, 256)
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        a = (a @ a).tanh()


def wait_for_samples(monitor: Monitor, more: int) -> None:
    """Until the sampler has taken ``more`` further samples (or stopped), however late a loaded machine runs it."""
    target = len(monitor.samples) + more
    while len(monitor.samples) < target and monitor._thread is not None and monitor._thread.is_alive():
        time.sleep(monitor.interval_s)


def test_cpu_monitor_is_real_and_says_why_gpu_fields_are_null() -> None:
    monitor = Monitor(torch.device("cpu"), interval_s=0.005)
    with monitor:
        busy_work(0.2)
        blob = torch.ones(100 * 2**20, dtype=torch.uint8)  # +100 MiB resident inside the window
        del blob
    result = monitor.result(batch_size=4, calls=10)
    assert result["telemetry"]["images_in_window"] == 40
    mem = result["memory"]
    assert mem["rss_mb_peak"] - mem["rss_mb_before"] >= 90, "the peak RSS inside the window is seen"
    assert mem["device_peak_allocated_mb"] is None and "CPU device" in mem["reasons"]["device_peak_allocated_mb"]
    cpu = result["cpu"]
    # The CPU this process used, whatever share of the machine it got: at least what busy_work burnt.
    assert cpu["process_cpu_s"] >= 0.19
    usable = len(os.sched_getaffinity(0))
    assert cpu["process_utilization_pct"] == pytest.approx(
        100 * cpu["process_cpu_s"] / result["telemetry"]["window_s"] / usable)
    assert cpu["torch_threads"] == torch.get_num_threads()
    if cpu["energy_j"] is None:
        assert cpu["reasons"]["energy_j"]
    gpu = result["gpu"]
    assert gpu["utilization_mean_pct"] is None and gpu["energy_per_image_j"] is None
    if not torch.cuda.is_available():
        assert gpu["reason"]
        assert all(gpu["reasons"][k] == gpu["reason"] for k in ("power_mean_w", "energy_j"))
        if Nvml.module()[0] is None:
            assert "no NVIDIA driver" in gpu["reason"] or "not installed" in gpu["reason"]
            if telemetry.reset_peak_rss():
                # nothing to sample: no thread competes with the timed work
                assert result["telemetry"]["sampler_thread"] is False
                assert result["telemetry"]["rss_peak_source"] == "kernel_high_water_mark"


def test_sampler_thread_starts_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "reset_peak_rss", lambda: False)  # force RSS sampling
    monitor = Monitor(torch.device("cpu"), interval_s=0.005)
    with monitor:
        assert monitor._thread is not None and monitor._thread.is_alive()
        blob = torch.ones(64 * 2**20, dtype=torch.uint8)
        wait_for_samples(monitor, 2)  # so at least one whole sample saw the blob resident
        del blob
        wait_for_samples(monitor, 2)
    assert not monitor._thread.is_alive(), "the sampler thread stops with the timed region"
    result = monitor.result(batch_size=1, calls=1)
    tel = result["telemetry"]
    assert tel["samples"] == len(monitor.samples) >= 4
    # A sampler that waits an interval between samples takes at most one per interval (load only
    # makes it fewer); one that spins would take far more. Its reported cost is its busy share.
    assert tel["samples"] <= tel["window_s"] / monitor.interval_s + 2
    assert tel["sampler_overhead_pct"] == pytest.approx(100 * tel["sampler_busy_ms"] / 1e3 / tel["window_s"])
    assert tel["rss_peak_source"] == "sampled"
    assert result["memory"]["rss_mb_peak"] - result["memory"]["rss_mb_before"] >= 50


def test_machine_info_has_library_versions() -> None:
    info = telemetry.machine_info()
    assert info["libraries"]["torch"] == torch.__version__.split("+")[0] or info["libraries"]["torch"]
    assert info["libraries"]["pytest-benchmark"]
    assert info["logical_cpus"] >= 1 and info["cpu_model"]
    if not torch.cuda.is_available():
        assert info["gpus"] == [] and info["gpu_reason"]


@pytest.mark.slow
def test_profile_and_tensorboard_outputs(run_suite) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    profile_rounds = 10  # more than pytest-benchmark's calibration adds to the window at these settings
    run = run_suite("--densebench-optimizations=baseline,channels_last", "--densebench-batch-sizes=1,2",
                    "--densebench-profile", f"--densebench-profile-rounds={profile_rounds}", "--densebench-tensorboard",
                    "--densebench-output=out")
    run.result.assert_outcomes(passed=4)
    for param, bench in run.benchmarks.items():
        info = bench["extra_info"]
        prof = info["profile"]
        trace = json.loads(Path(prof["chrome_trace"]).read_text())
        names = {e.get("name") for e in trace["traceEvents"]}
        assert "aten::conv2d" in names, f"{param}: the Chrome trace has the model's ops"
        assert Path(prof["tensorboard_trace"]).name.endswith(".pt.trace.json")
        assert prof["top_ops"] and prof["top_ops"][0]["self_cpu_ms_per_round"] > 0
        # The profiled rounds are extra: not in the telemetry window of the timed rounds. The window holds
        # the timed rounds plus pytest-benchmark's calibration calls (how many depends on load), never
        # the profiled ones.
        timed = bench["stats"]["rounds"] * bench["stats"]["iterations"]
        images = info["telemetry"]["images_in_window"]
        assert info["batch_size"] * timed <= images < info["batch_size"] * (timed + profile_rounds)
        assert info["memory"]["rss_mb_peak"] > 0 and info["cpu"]["process_utilization_pct"] is not None
    logdir = Path(run.json["densebench"]["tensorboard_logdir"])
    for optimization in ("baseline", "channels_last"):
        acc = EventAccumulator(str(logdir / optimization))
        acc.Reload()
        points = {e.step: e.value for e in acc.Scalars("throughput_samples_per_s")}
        for bs in (1, 2):
            expected = run.benchmarks[f"{optimization}-bs{bs}"]["extra_info"]["throughput_samples_per_s"]
            assert points[bs] == pytest.approx(expected, rel=1e-5)
        assert "latency_ms/p99" in acc.Tags()["scalars"]
