"""The densebench command line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densebench.cli import main
from tests.conftest import FAST, HANG_GUARD, REPO, make_tiny_zip, pace_s


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("baseline", "amp", "channels_last", "compile", "jit", "fp16", "tensorrt"):
        assert name in out


def test_env_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["libraries"]["torch"]
    assert info["optimizations"]["baseline"]["cpu"] == "available"
    assert "CUDA" in info["optimizations"]["tensorrt"]["cpu"]


def test_data_from_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = make_tiny_zip(tmp_path / "mine.zip")
    data_dir = tmp_path / "data"
    assert main(["data", "--data-dir", str(data_dir), "--archive", str(archive)]) == 2
    assert "MD5 mismatch" in capsys.readouterr().err
    assert main(["data", "--data-dir", str(data_dir), "--archive", str(archive), "--skip-md5"]) == 0
    assert "6 validation images" in capsys.readouterr().out
    assert hashlib.md5(archive.read_bytes()).hexdigest()  # the archive itself is left alone


def test_unknown_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["list", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_run_uses_the_packaged_suite_outside_a_checkout(tmp_path: Path) -> None:
    """Also: on the CPU, with LoadGen installed, densebench run serves each optimization offline and under the
    server search besides the batch benchmarks."""
    pytest.importorskip("mlperf_loadgen", reason="the serving scenarios need densebench[serving]")
    out = tmp_path / "out"
    fast = [a for a in FAST if a not in ("-p", "densebench.plugin")]
    proc = subprocess.run([sys.executable, "-m", "densebench.cli", "run", "-o", str(out), *fast,
                           "--densebench-optimizations=baseline", "--densebench-batch-sizes=1",
                           "--densebench-server-search-s=20", "--densebench-scenario-duration-ms=300"],
                          check=False, cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD * pace_s(),
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "each optimization is also served under MLPerf LoadGen" in proc.stdout
    saved = json.loads((out / "results.json").read_text())
    assert [b["param"] for b in saved["benchmarks"]] == ["baseline-bs1", "baseline-offline", "baseline-server"]
    assert [b["group"] for b in saved["benchmarks"]] == ["batch_size=1", "scenario=offline", "scenario=server"]
    assert saved["benchmarks"][0]["fullname"].startswith("densebench/suite/test_inference.py::")
    assert saved["densebench"]["isolated"]["baseline"]["returncode"] == 0, "densebench run isolates by default"
    assert "warnings summary" not in proc.stdout
