"""Real runs into the store: ``densebench run --densebench-store`` three times gives three points per
series, ingesting the same JSON again changes nothing, and a store that cannot be reached costs a
warning, never the results (small settings: 32 px, baseline, batch size 1, few rounds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densebench.cli import main

from .conftest import FAST, HANG_GUARD, REPO, SuiteRun, pace_s


def densebench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "densebench.cli", *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=HANG_GUARD * pace_s(), env={**os.environ, "PYTHONPATH": str(REPO)})


def test_three_runs_give_three_points(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fast = [a for a in FAST if a not in ("-p", "densebench.plugin")]
    out = tmp_path / "out"
    for _ in range(3):
        proc = densebench("run", "-o", str(out), *fast, "--densebench-optimizations=baseline",
                          "--densebench-batch-sizes=1", "--densebench-isolate=false", "--densebench-scenarios=batch",
                          f"--densebench-store={store_url}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "densebench: results store " in proc.stdout and ": 1 benchmark(s)" in proc.stdout, proc.stdout[-3000:]
    assert main(["store", "ingest", str(out / "results.json"), "--densebench-store", store_url]) == 0
    assert "already in the store: skipped" in capsys.readouterr().out
    autosaves = sorted((tmp_path / ".benchmarks").rglob("*.json"))
    assert len(autosaves) == 3
    assert main(["store", "ingest", str(tmp_path / ".benchmarks"), "--densebench-store", store_url]) == 0
    assert capsys.readouterr().out.count("already in the store: skipped") == 3  # the same three runs
    assert main(["history", "--fail-on-regression", "--densebench-store", store_url]) == 0
    text = capsys.readouterr().out
    for metric in ("throughput_samples_per_s", "latency_p99_ms", "peak_memory_mb", "cpu_ms_per_image"):
        assert f"baseline bs1 {metric}: 3 point(s)" in text, text
    assert "4 series, 0 change point(s)" in text  # no energy reading on this CPU: 4 series, not 5


def test_an_unreachable_store_is_a_warning(run_suite) -> None:
    run: SuiteRun = run_suite("--densebench-optimizations=baseline", "--densebench-batch-sizes=1",
                              "--densebench-store=postgresql://bench:hunter2@127.0.0.1:1/results")
    out = run.result.stdout.str()
    assert run.result.ret == 0, out[-3000:]
    assert "WARNING: the run was not written to the results store postgresql://bench:***@127.0.0.1:1/results" in out
    assert "hunter2" not in out
    assert [b["param"] for b in run.json["benchmarks"]] == ["baseline-bs1"]
    assert run.json["densebench"]["settings"]["store"] == "postgresql://bench:***@127.0.0.1:1/results"
    saved = json.loads(run.path.read_text())
    assert saved["benchmarks"][0]["extra_info"]["throughput_samples_per_s"] > 0
