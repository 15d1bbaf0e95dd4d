"""``densebench ab``: two long-lived workers, rounds interleaved, a paired verdict; two venvs, two image sizes.

The gate tests at the end are the paired replacements of the compare tests that once needed a 100%
threshold: same code must not be flagged at 5%, and a 4x heavier workload must be, with one core kept
busy by another process while they run.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from densebench import ab
from densebench.ab_worker import threads_for
from densebench.cli import main
from densebench.errors import ABError
from tests.conftest import HANG_GUARD, REPO, pace_s

FAST = ["--set", "device=cpu", "--set", "weights=random", "--set", "dataset=synthetic", "--set", "eval_samples=2",
        "--set", "calibration_samples=0", "--set", "warmup=2"]


def densebench_ab(tmp: Path, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp / "ab"
    proc = subprocess.run([sys.executable, "-m", "densebench.cli", "ab", *FAST, *args, "-o", str(out)],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    doc = json.loads((out / "ab.json").read_text()) if (out / "ab.json").is_file() else {}
    return proc, doc


def check_consistent(proc: subprocess.CompletedProcess, doc: dict) -> None:
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert (proc.returncode == 1) == (doc["verdict"] == "regression"), (proc.stdout, doc)
    r = doc["ratio_b_over_a"]
    assert r["ci_low"] <= r["ratio"] <= r["ci_high"] and r["method"]


@pytest.fixture
def busy_core():
    """Another process keeps one core busy for the whole test."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield spin
    spin.kill()
    spin.wait()


def make_venv(tmp: Path) -> Path:
    """A second venv (``--system-site-packages``, plus this environment's packages through a .pth file)
    that differs by one pure-Python package installed from a directory made here, without network."""
    venv = tmp / "venv-b"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "parent-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    probe = tmp / "probe"
    (probe / "densebench_ab_probe").mkdir(parents=True)
    (probe / "densebench_ab_probe" / "__init__.py").write_text("VERSION = '0.1'\n")
    (probe / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                          'build-backend = "setuptools.build_meta"\n'
                                          '[project]\nname = "densebench-ab-probe"\nversion = "0.1"\n')
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index",
                    "--no-build-isolation", "--no-deps", str(probe)], check=True, capture_output=True)
    return python


def test_ab_between_two_venvs(tmp_path: Path) -> None:
    python_b = make_venv(tmp_path)
    proc, doc = densebench_ab(tmp_path, "--set", "image_size=32", "--b", f"python={python_b}", "--pairs", "6",
                              "--max-pairs", "26", timeout=HANG_GUARD * pace_s())
    check_consistent(proc, doc)
    assert "densebench-ab-probe: absent (A) vs 0.1 (B)" in doc["packages_differ"]
    assert "packages differ (" in proc.stdout
    a = json.loads((tmp_path / "ab" / "a.json").read_text())
    b = json.loads((tmp_path / "ab" / "b.json").read_text())
    assert b["benchmarks"][0]["extra_info"]["ab_side"]["prefix"] == str(python_b.parent.parent)
    assert a["benchmarks"][0]["extra_info"]["ab_side"]["prefix"] == sys.prefix
    auto = max(1, len(os.sched_getaffinity(0)) - 1)  # the default, threads=auto, leaves a core free
    assert a["benchmarks"][0]["extra_info"]["ab_side"]["threads"] == auto
    pairs = doc["ratio_b_over_a"]["pairs"]  # 6, then blocks of 10 while the verdict is undecided, at most 26
    assert pairs in (6, 16, 26), doc
    for side in (a, b):
        (bench,) = side["benchmarks"]
        assert bench["stats"]["rounds"] == len(bench["stats"]["data"]) == 2 * pairs  # 2 rounds per turn
    # Both files are pytest-benchmark JSON: its own compare and densebench compare read them.
    listed = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(tmp_path / "ab" / "a.json"),
                             str(tmp_path / "ab" / "b.json")], capture_output=True, text=True, check=False)
    assert listed.returncode == 0 and "test_inference[baseline-bs1]" in listed.stdout, listed.stderr
    assert main(["compare", str(tmp_path / "ab" / "a.json"), str(tmp_path / "ab" / "b.json")]) in (0, 1)


def test_ab_between_two_image_sizes(tmp_path: Path) -> None:
    proc, doc = densebench_ab(tmp_path, "--a", "image_size=32", "--b", "image_size=48", "--pairs", "6",
                              "--set", "threads=1", timeout=HANG_GUARD * pace_s())
    check_consistent(proc, doc)
    assert doc["varied"] == ["image_size"]
    assert doc["decided"] and doc["ratio_b_over_a"]["ci_low"] > 1.05  # 48 px is 2.25x the pixels of 32 px
    extra = [json.loads((tmp_path / "ab" / f"{s}.json").read_text())["benchmarks"][0]["extra_info"]
             for s in ("a", "b")]
    assert [e["image_size"] for e in extra] == [32, 48]
    assert [e["ab_side"]["threads"] for e in extra] == [1, 1]  # the workers ran torch with one thread


def test_same_code_is_not_flagged_at_5_percent_with_a_core_busy(tmp_path: Path, busy_core) -> None:
    proc, doc = densebench_ab(tmp_path, "--set", "image_size=64", "--pairs", "20", "--threshold", "5%",
                              timeout=HANG_GUARD * pace_s())
    check_consistent(proc, doc)
    assert proc.returncode == 0 and doc["verdict"] != "regression", doc


def test_a_4x_heavier_workload_is_flagged_at_5_percent_with_a_core_busy(tmp_path: Path, busy_core) -> None:
    proc, doc = densebench_ab(tmp_path, "--a", "image_size=64", "--b", "image_size=128", "--pairs", "20",
                              "--threshold", "5%", timeout=HANG_GUARD * pace_s())
    check_consistent(proc, doc)
    assert proc.returncode == 1 and doc["verdict"] == "regression", doc
    assert "regression at a 5% threshold" in proc.stdout


def info(**changes) -> dict:
    base = {"device": "cpu", "device_name": "AMD EPYC", "settings": {"image_size": 224, "seed": 0, "output": "x"},
            "weights": "random", "dataset": "synthetic", "optimization": "baseline", "batch_size": 1,
            "model_digest": "abc"}
    return {**base, **changes}


def test_differences_name_what_differs_beyond_what_was_varied() -> None:
    assert ab.differences(info(), info(settings={"image_size": 224, "seed": 0, "output": "y"}), set()) == []
    assert ab.differences(info(), info(device="cuda:0", device_name="H200"), set()) == [
        "device: cpu (AMD EPYC) vs cuda:0 (H200)"]
    other = info(settings={"image_size": 235, "seed": 0, "output": "x"})
    assert ab.differences(info(), other, set()) == ["image_size: 224 vs 235"]
    assert ab.differences(info(), other, {"image_size"}) == []
    assert ab.differences(info(threads=1), info(threads=2), set()) == ["threads: 1 vs 2"]
    assert ab.differences(info(threads=1), info(threads=2), {"threads"}) == []
    assert ab.differences(info(), info(weights="imagenet", model_digest="def"), set()) == [
        "weights: 'random' vs 'imagenet'", "model weights digest: abc vs def"]


def test_bad_sides_are_refused_with_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ABError, match="expected KEY=VALUE with KEY one of python, checkout"):
        ab.parse_pairs(["colour=red"], "--a")
    with pytest.raises(ABError, match="has no densebench/ package"):
        ab.make_sides({}, {"checkout": str(tmp_path)}, {})
    proc, _ = densebench_ab(tmp_path, "--a", "nonsense", timeout=60)
    assert proc.returncode == 2 and "--a 'nonsense': expected KEY=VALUE" in proc.stderr
    assert main(["ab", "--pairs", "1"]) == 2
    with pytest.raises(ABError, match=r"side a: threads \(auto, all or a count\) must be a positive integer, "
                                      "got 'many'"):
        ab.make_sides({}, {"threads": "many"}, {})
    a, b = ab.make_sides({"threads": "1"}, {}, {"threads": "ALL"})
    assert (a.threads, b.threads) == ("1", "all")
    assert ab.make_sides({}, {}, {})[0].threads == "auto"


def test_auto_threads_leave_a_core_to_other_processes_on_the_cpu_only() -> None:
    cores = len(os.sched_getaffinity(0))
    assert threads_for("auto", "cpu") == max(1, cores - 1)
    assert threads_for("auto", "cuda") is None and threads_for("all", "cpu") is None
    assert threads_for("3", "cpu") == 3


def test_the_verdict_line_says_when_the_ci_came_from_blocks_of_autocorrelated_pairs() -> None:
    from densebench import paired

    def verdict_line(block: int) -> str:
        result = paired.PairedRatio(1.02, 0.99, 1.05, 40, block=block)
        doc = {"ratio_b_over_a": result.to_json(), "threshold": 0.05, "verdict": "no change shown", "decided": True,
               "varied": [], "packages_differ": [], "half_width": result.half_width, "interference": None}
        return ab.lines(doc)[0]

    assert verdict_line(4) == ("densebench ab: B/A time ratio 1.020 (95% CI 0.990-1.050, 40 pairs, autocorrelated: "
                               "CI over bootstrap blocks of 4 pairs; median of paired ratios): no change shown at a "
                               "5% threshold")
    assert "blocks" not in verdict_line(1)
