"""Noise you can see (interference, its cause, the warning line); ftz and paired speedups in a real run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil

from densebench import noise
from densebench.report import build


def test_another_busy_process_is_seen_as_other_processes_cpu_time() -> None:
    # Not our child: Interference counts this process's children as its own work (compile workers),
    # so the spinner is started by an intermediate process that exits at once (the spinner is orphaned).
    spawn = ("import subprocess, sys; "
             "print(subprocess.Popen([sys.executable, '-c', 'while True: pass'], start_new_session=True, "
             "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    pid = int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True, check=True).stdout)
    try:
        assert pid not in {c.pid for c in psutil.Process().children(recursive=True)}
        time.sleep(0.3)  # let it start spinning
        with noise.Interference(SimpleNamespace(type="cpu")) as seen:
            time.sleep(0.5)  # this process idles: all busy time in the window is someone else's
    finally:
        os.kill(pid, signal.SIGKILL)
    out = seen.result()
    assert out["window_s"] >= 0.5
    assert out["other_processes_cpu_s"] > 0.1, out  # the spinning process alone used about 0.5 CPU-s
    assert out["gpu_other_processes"] is None and out["reasons"]["gpu_other_processes"]


def test_gpu_processes_from_recorded_nvml_lists(monkeypatch) -> None:
    fake = SimpleNamespace(
        nvmlDeviceGetComputeRunningProcesses=lambda h: [SimpleNamespace(pid=os.getpid()), SimpleNamespace(pid=4242)],
        nvmlDeviceGetGraphicsRunningProcesses=lambda h: [SimpleNamespace(pid=777)])
    monkeypatch.setattr(noise.Nvml, "handle", classmethod(lambda cls, device: (fake, "handle", None)))
    assert noise.gpu_processes(SimpleNamespace(type="cuda")) == ([777, 4242], None)


def test_cause_names_the_largest_interference_and_warning_only_beyond_threshold() -> None:
    seen = {"window_s": 2.0, "other_processes_cpu_s": 1.6, "other_processes_cpu_share": 0.4, "steal_s": 0.1,
            "gpu_other_processes": None}
    assert noise.cause(seen, 2).startswith("other processes used 40% of the 2 CPUs")
    assert noise.cause({**seen, "gpu_other_processes": [9]}, 2).startswith("1 other process(es) on the GPU")
    quiet = {"window_s": 2.0, "other_processes_cpu_s": 0.01, "other_processes_cpu_share": 0.0025, "steal_s": 0.0}
    assert noise.cause(quiet, 2) is None
    assert noise.warning("baseline bs1", 0.03, 0.05, seen) is None
    line = noise.warning("baseline bs1", 0.12, 0.05, {**seen, "cause": noise.cause(seen, 2)})
    assert "12.0% is larger than the 5% threshold" in line and "other processes used 40%" in line
    assert "no interference seen" in noise.warning("x", 0.2, 0.05, {"cause": None})


def test_a_run_records_paired_speedups_ftz_and_noise(run_suite, tmp_path) -> None:
    """A real tiny run: every non-baseline benchmark carries a paired speedup with its CI; ftz is recorded."""
    run = run_suite("--densebench-optimizations=baseline,channels_last,ftz+channels_last",
                    "--densebench-batch-sizes=1", "--densebench-paired-rounds=6")
    assert run.result.ret == 0, run.result.stdout.str()[-3000:]
    info = {name: b["extra_info"] for name, b in run.benchmarks.items()}
    assert "speedup" not in info["baseline-bs1"]
    for name in ("channels_last-bs1", "ftz+channels_last-bs1"):
        sp = info[name]["speedup"]
        assert sp["pairs"] == 6 and sp["ci_low"] <= sp["ratio"] <= sp["ci_high"] and sp["method"]
    assert info["ftz+channels_last-bs1"]["denormals_flushed"] is True
    assert info["channels_last-bs1"]["denormals_flushed"] is False
    assert info["ftz+channels_last-bs1"]["parity"]["passed"]
    assert all(i["noise"]["cv"] is not None and i["noise"]["window_s"] > 0 for i in info.values())
    for i in info.values():  # a warning exactly when the rounds varied more than the 5% gate threshold
        warning = i["noise"].get("warning")
        assert (warning is not None) == (i["noise"]["cv"] > 0.05)
        if warning:
            assert "cause seen:" in warning and warning in run.result.stdout.str()
    outcome = {o["optimization"]: o for o in run.outcomes()}
    assert outcome["channels_last"]["speedup"] == info["channels_last-bs1"]["speedup"]
    report = (build([run.path], tmp_path / "rep")["markdown"]).read_text()
    sp = info["channels_last-bs1"]["speedup"]
    assert f"{sp['ratio']:.2f}x [{sp['ci_low']:.2f}-{sp['ci_high']:.2f}]" in report
    assert "speedup [95% CI] | sequential" in report
