"""Reports and regression gates built from real JSON written by the suite in this test run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from densebench import compare as compare_mod
from densebench.cli import main
from densebench.report import ReportError, build
from tests.conftest import FAST, REPO, SUITE

# The new run's baseline is made slower on purpose: a real extra 50 ms in every forward pass.
SLOWER = '''
import time
from densebench.optimizations import base


def slow_eager(forward, example, plan, ctx):
    if plan.parts != ("baseline",):
        return base.Backed(forward=forward)

    def run(x):
        time.sleep(0.05)
        return forward(x)
    return base.Backed(forward=run)


base.register_backend(base.Backend("eager", slow_eager))
'''

# Rounds spread over a quarter second: with 12 rounds in 50 ms, one burst of load from other
# jobs on a shared 2-core machine moved a whole run's median by more than 50%.
ARGS = ("--densebench-optimizations=baseline,channels_last", "--densebench-batch-sizes=1,2",
        "--benchmark-min-rounds=30", "--benchmark-max-time=0.25")


def run_suite(directory: Path, *extra: str, conftest: str | None = None) -> subprocess.CompletedProcess:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test_suite.py").write_text(SUITE)
    if conftest:
        (directory / "conftest.py").write_text(conftest)
    fast = [a for a in FAST if not a.startswith("--benchmark-m")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *fast, *ARGS, *extra],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    store = f"--benchmark-storage=file://{root / 'store'}"
    base = run_suite(root / "base", "--benchmark-json=base.json", store, "--benchmark-save=base")
    assert base.returncode == 0, base.stdout[-3000:]
    same = run_suite(root / "same", "--benchmark-json=same.json")
    assert same.returncode == 0, same.stdout[-3000:]
    # The pytest-benchmark gate against the stored baseline, with a deliberately slowed baseline runner.
    slow = run_suite(root / "slow", "--benchmark-json=slow.json", store, "--benchmark-compare=0001",
                     "--benchmark-compare-fail=median:50%", conftest=SLOWER)
    return {"base": root / "base" / "base.json", "same": root / "same" / "same.json",
            "slow": root / "slow" / "slow.json", "gate_returncode": slow.returncode,
            "gate_output": slow.stdout + slow.stderr}


def test_pytest_gate_fails_on_the_slowed_runner(runs: dict) -> None:
    assert runs["gate_returncode"] != 0
    assert "Performance has regressed" in runs["gate_output"]
    assert "baseline-bs1" in runs["gate_output"]


def test_compare_flags_the_slowdown_with_a_clear_message(runs: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    md = tmp_path / "compare.md"
    # The threshold sits above the whole-run noise seen here (an untouched optimization once
    # moved by more than 50% between two runs) and far below the slowdown (+460% measured).
    code = main(["compare", str(runs["base"]), str(runs["slow"]), "--threshold", "100%", "--markdown", str(md)])
    out = capsys.readouterr().out
    assert code == 1
    assert "densebench compare: 2 regression(s); worst baseline at batch" in out
    text = md.read_text()
    assert "| baseline | 1 |" in text and "**regression**" in text
    changes = {(c.optimization, c.batch_size): c for c in compare_mod.compare(runs["base"], runs["slow"], 1.0)}
    assert changes[("baseline", 1)].flagged and changes[("baseline", 1)].ci_low > 0.5
    assert not changes[("channels_last", 1)].flagged, "the untouched optimization is not flagged"


def test_compare_ignores_noise_between_two_runs_of_the_same_code(runs: dict,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Two runs of identical code on this shared 2-core machine differed by up to 36% in median
    # (whole-run load, which no bootstrap over one run's rounds can see); the slowed runner
    # above is about 5.6x slower, so the thresholds keep a wide margin on both sides.
    code = main(["compare", str(runs["base"]), str(runs["same"]), "--threshold", "100%"])
    assert code == 0, capsys.readouterr().out
    assert "no regression in 4 comparisons" in capsys.readouterr().out


def test_compare_refuses_different_devices(runs: dict, tmp_path: Path) -> None:
    doc = json.loads(runs["same"].read_text())
    for bench in doc["benchmarks"]:
        bench["extra_info"]["device_name"] = "NVIDIA H200"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    with pytest.raises(ReportError, match="different devices are not the same machine"):
        compare_mod.compare(runs["base"], other)


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


def test_report_from_real_json(runs: dict, tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = build([runs["base"]], out, latency_budget_ms=1000)
    md = written["markdown"].read_text()
    assert "fastest at batch 1: **" in md and "best under a 1000 ms p99 budget" in md
    parser = Images()
    parser.feed(written["html"].read_text())
    assert {"throughput.png", "speedup.png", "latency.png", "memory_tradeoff.png"} <= set(parser.sources)
    for src in parser.sources:
        image = out / src
        assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert "energy.png" not in parser.sources and "Energy per image: not measured" in md


def test_report_warns_when_cpu_memory_came_from_one_growing_process(runs: dict, tmp_path: Path) -> None:
    doc = json.loads(runs["base"].read_text())
    trace = doc["densebench"]["memory_trace"]
    assert [t["after_releasing"] for t in trace] == ["baseline", "channels_last"]
    assert "caution: peak memory" not in build([runs["base"]], tmp_path / "flat")["markdown"].read_text()
    # The same run as if the second optimization had loaded a runtime of 50% of the process's size.
    trace[-1]["rss_mb"] = trace[0]["rss_mb"] * 1.5
    grown = tmp_path / "grown.json"
    grown.write_text(json.dumps(doc))
    md = build([grown], tmp_path / "grown")["markdown"].read_text()
    assert f"rose from {trace[0]['rss_mb']:.0f} MB (after baseline) to {trace[-1]['rss_mb']:.0f} MB" in md


def test_report_merges_runs_and_keeps_them_apart(runs: dict, tmp_path: Path) -> None:
    written = build([runs["base"], runs["slow"]], tmp_path / "merged")
    md = written["markdown"].read_text()
    assert "· base" in md and "· slow" in md, "two runs on one device are labelled by run"
    assert md.count("— batch size 1") == 2, "each run keeps its own ranking"


def test_report_rejects_what_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["report", str(bad), "-o", str(tmp_path / "r")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"benchmarks": [{"name": "test_x", "stats": {"median": 1.0}}]}))
    assert main(["report", str(plain), "-o", str(tmp_path / "r")]) == 2
    assert "has no densebench benchmarks" in capsys.readouterr().err
