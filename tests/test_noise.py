"""Noise you can see (interference, its cause, the warning line); ftz and paired speedups in a real run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import pytest

from densebench import noise, paired, summary, timing
from densebench.measure import Measurement
from densebench.report import build

# Interference as noise.Interference.result() reports it: another process on 40% of the 2 CPUs.
BUSY = {"window_s": 2.0, "other_processes_cpu_s": 1.6, "other_processes_cpu_share": 0.4, "steal_s": 0.0,
        "gpu_other_processes": None}
QUIET = {"window_s": 2.0, "other_processes_cpu_s": 0.01, "other_processes_cpu_share": 0.0025, "steal_s": 0.0,
         "gpu_other_processes": None}


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
    """A real tiny run: every non-baseline benchmark carries a paired speedup with its CI (more pairs while
    the CI is wider than the target); ftz is recorded."""
    run = run_suite("--densebench-optimizations=baseline,channels_last,ftz+channels_last",
                    "--densebench-batch-sizes=1", "--densebench-paired-rounds=6",
                    "--densebench-paired-target-ci=2%", "--densebench-paired-max-rounds=16")
    assert run.result.ret == 0, run.result.stdout.str()[-3000:]
    info = {name: b["extra_info"] for name, b in run.benchmarks.items()}
    assert "speedup" not in info["baseline-bs1"]
    for name in ("channels_last-bs1", "ftz+channels_last-bs1"):
        sp = info[name]["speedup"]
        assert sp["ci_low"] <= sp["ratio"] <= sp["ci_high"] and sp["method"] == paired.METHOD
        half_width = (sp["ci_high"] - sp["ci_low"]) / 2 / sp["ratio"]
        # 6 pairs, then 10 more only while the CI is wider than +-2%; never past 16
        assert sp["pairs"] in (6, 16) and (sp["pairs"] == 16 or half_width <= 0.02), sp
        base, cand = sp["baseline_turns_ms"], sp["candidate_turns_ms"]  # the turns behind it, for any statistic
        assert len(base) == len(cand) == sp["pairs"]
        assert paired.paired_ratio(base, cand).ratio == pytest.approx(sp["ratio"], rel=1e-4)
    assert info["ftz+channels_last-bs1"]["denormals_flushed"] is True
    assert info["channels_last-bs1"]["denormals_flushed"] is False
    assert info["ftz+channels_last-bs1"]["parity"]["passed"]
    assert all(i["noise"]["cv"] is not None and i["noise"]["window_s"] > 0 for i in info.values())
    stdout = run.result.stdout.str()
    checks = re.findall(r"channels_last bs1: paired rounds: (\d+)/16 pairs, CI \+-[\d.]+% \(target \+-2%\)", stdout)
    assert checks and checks[0] == "6", stdout[-3000:]  # each check of the stopping rule shows in the progress
    for i in info.values():  # a warning exactly when the rounds varied more than the 5% gate threshold
        warning = i["noise"].get("warning")
        assert (warning is not None) == (i["noise"]["cv"] > 0.05)
        if warning:  # kept in the JSON; the terminal gets one line for the run
            assert "cause seen:" in warning and warning not in stdout
    outcomes = run.outcomes()
    assert {o["optimization"]: o["noise_cv"] for o in outcomes} == {
        name.rsplit("-bs", 1)[0]: i["noise"]["cv"] for name, i in info.items()}
    noisy = [o for o in outcomes if o["noise_cv"] > noise.GATE_THRESHOLD]
    folded = [line for line in stdout.splitlines() if "densebench: warning: noise:" in line]
    assert len(folded) == (1 if noisy else 0), folded  # load decides whether the rounds varied; the line follows
    if noisy:
        worst = max(noisy, key=lambda o: o["noise_cv"])
        assert f"noise: {len(noisy)} of {len(outcomes)} benchmarks had a rounds' CV above 5%" in folded[0]
        assert f"worst: {worst['optimization']} at batch 1, CV {worst['noise_cv']:.1%}" in folded[0]
    short = [name for name, i in info.items()
             if "speedup" in i and paired.PairedRatio.from_json(i["speedup"]).half_width > 0.02]
    target_lines = [line for line in stdout.splitlines() if "densebench: paired speedups:" in line]
    assert len(target_lines) == (1 if short else 0), target_lines  # the line exactly when a CI missed +-2%
    if short:
        assert f"{len(short)} of 2 did not reach the +-2% CI target" in target_lines[0]
        assert all(f"{name.rsplit('-bs', 1)[0]} at batch 1 +-" in target_lines[0] for name in short)
    outcome = {o["optimization"]: o for o in outcomes}
    assert outcome["channels_last"]["speedup"] == info["channels_last-bs1"]["speedup"]
    report = (build([run.path], tmp_path / "rep")["markdown"]).read_text()
    sp = info["channels_last-bs1"]["speedup"]
    assert f"{sp['ratio']:.2f}x [{sp['ci_low']:.2f}-{sp['ci_high']:.2f}]" in report
    assert "speedup [95% CI] | sequential" in report


def _outcome(optimization: str, batch_size: int, rounds: list[float], seen: dict) -> dict:
    """The outcome a run records for a benchmark with these round times and this interference, built the way
    measure.py builds it (extra_info.noise from paired.cv and noise.warning, then Measurement.outcome)."""
    figures = {"cv": paired.cv(rounds), **seen, "cause": noise.cause(seen, 2)}
    figures["warning"] = noise.warning(f"{optimization} at batch size {batch_size}: the rounds' CV", figures["cv"],
                                       noise.GATE_THRESHOLD, figures)
    info = {"optimization": optimization, "batch_size": batch_size, "parity": {"passed": True, "failures": []},
            "throughput_samples_per_s": batch_size / sorted(rounds)[len(rounds) // 2],
            "latency_ms": timing.latency_ms(rounds), "precision": "fp32", "build_s": 1.0, "warmup_s": 0.5,
            "memory": {"rss_mb_peak": 900.0}, "noise": figures}
    return Measurement(info).outcome().to_json()


def _rounds(ms: float, spread: float) -> list[float]:
    """20 rounds around ``ms`` milliseconds, alternating +-``spread`` (a CV of about ``spread``)."""
    return [ms / 1e3 * (1 + spread * (-1) ** i) for i in range(20)]


def test_the_noisy_benchmarks_of_a_run_fold_into_one_terminal_line() -> None:
    outcomes = [_outcome("baseline", 1, _rounds(40, 0.01), QUIET),
                _outcome("channels_last", 1, _rounds(30, 0.08), QUIET),
                _outcome("channels_last", 8, _rounds(200, 0.20), BUSY),
                _outcome("ftz", 8, _rounds(210, 0.12), BUSY)]
    cvs = [o["noise_cv"] for o in outcomes]
    assert sum(cv > noise.GATE_THRESHOLD for cv in cvs) == 3 and all(o["noise_warning"] for o in outcomes[1:])
    lines = summary.terminal_lines(outcomes)
    folded = [line for line in lines if "noise" in line]
    assert len(folded) == 1, lines  # not one line per noisy benchmark
    line = folded[0]
    assert line.startswith("densebench: warning: noise: 3 of 4 benchmarks had a rounds' CV above 5% "
                           "(the default threshold of densebench compare and ab)")
    assert f"worst: channels_last at batch 8, CV {max(cvs):.1%}, cause seen: other processes used 40% of the 2 CPUs" \
        in line
    assert "interference seen during 2 of the 3" in line and line.endswith("figures are in extra_info.noise")

    gate = noise.Gate(0.15, "the --benchmark-compare-fail=median:15% gate")
    gated = summary.terminal_lines(outcomes, noise_gate=gate)
    (line,) = [line for line in gated if "noise" in line]
    assert "1 of 4 benchmarks had a rounds' CV above 15% (the --benchmark-compare-fail=median:15% gate)" in line
    assert "interference seen during" not in line  # one noisy benchmark: its cause is the worst's

    calm = [_outcome("baseline", 1, _rounds(40, 0.01), BUSY), _outcome("ftz", 1, _rounds(40, 0.02), QUIET)]
    assert noise.run_warning(calm) is None
    assert not any("noise" in line for line in summary.terminal_lines(calm))
    quiet_cause = noise.run_warning([_outcome("ftz", 2, _rounds(40, 0.3), QUIET)])
    assert quiet_cause is not None and f"cause seen: {noise.NO_CAUSE}" in quiet_cause


def test_paired_speedups_short_of_the_target_fold_into_one_line() -> None:
    def outcome(name: str, batch_size: int, low: float, high: float, pairs: int, block: int = 1) -> dict:
        return {**_outcome(name, batch_size, _rounds(40, 0.01), QUIET),
                "speedup": {"ratio": (low + high) / 2, "ci_low": low, "ci_high": high, "pairs": pairs,
                            "ci_block": block}}

    outcomes = [_outcome("baseline", 8, _rounds(40, 0.01), QUIET),
                outcome("int8", 8, 5.9, 6.1, 20),  # +-1.7%: reached
                outcome("openvino", 8, 6.0, 7.0, 60, block=6),  # +-7.7%, its pairs autocorrelated
                outcome("jit", 8, 1.04, 1.12, 60)]  # +-3.7%
    line = summary.paired_target_line(outcomes, 0.03)
    assert line == ("densebench: paired speedups: 2 of 3 did not reach the +-3% CI target: openvino at batch 8 "
                    "+-7.7% after 60 pairs (autocorrelated pairs: bootstrap blocks of 6), jit at batch 8 +-3.7% "
                    "after 60 pairs; more pairs "
                    "(--densebench-paired-max-rounds) or a quieter machine may narrow them; each CI is in "
                    "extra_info.speedup")
    assert line in summary.terminal_lines(outcomes, paired_target=0.03)
    assert summary.paired_target_line(outcomes, 0.10) is None  # every CI within +-10%
    assert summary.paired_target_line(outcomes, 0.0) is None  # a fixed count of pairs: no target to miss
    many = outcomes + [outcome(f"x{i}", 1, 1.0, 1.5, 60) for i in range(4)]
    assert summary.paired_target_line(many, 0.03, shown=4).count(" after 60 pairs") == 4
    assert " and 2 more;" in summary.paired_target_line(many, 0.03, shown=4)


def test_the_run_gate_is_the_strictest_percentage_of_compare_fail(pytester) -> None:
    from densebench import _pytest_benchmark as pb

    assert pb.compare_fail_percentage(pytester.parseconfigure()) is None
    absolute = pytester.parseconfigure("--benchmark-compare-fail=mean:0.001")
    assert pb.compare_fail_percentage(absolute) is None  # seconds, not a share: the default gate holds
    both = pytester.parseconfigure("--benchmark-compare-fail", "median:10%", "min:7%", "mean:0.001")
    assert pb.compare_fail_percentage(both) == (0.07, "min:7%")
