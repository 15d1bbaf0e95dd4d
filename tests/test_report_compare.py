"""Reports and regression gates: decisions on fabricated timings, plumbing on real JSON from this run.

Two runs of the same code on a shared machine differ by whatever load the machine had at each
moment (36% between medians here on a normal day, +1791% with another process on one of the two
cores), so no assertion below depends on how two real runs compare. The regression decisions are
tested on result files whose raw rounds are chosen here; the real runs are checked only for what
load cannot change.
"""

from __future__ import annotations

import glob
import json
import math
import os
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from densebench import compare as compare_mod
from densebench.cli import main
from densebench.report import ReportError, build
from tests.conftest import FAST, HANG_GUARD, REPO, SUITE, pace_s

ARGS = ("--densebench-optimizations=baseline,channels_last", "--densebench-batch-sizes=1,2",
        "--benchmark-min-rounds=5")
CONFIGS = [("baseline", 1), ("baseline", 2), ("channels_last", 1), ("channels_last", 2)]


def run_suite(directory: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test_suite.py").write_text(SUITE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *FAST, *ARGS, *extra],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def with_rounds(template: Path, out: Path, rounds: dict[tuple[str, int], list[float]]) -> Path:
    """``template`` (a real result file) with the raw rounds of each configuration replaced by ``rounds``.

    The statistics pytest-benchmark derives from the rounds are recomputed, so the file is what a
    run with exactly these round times would have saved.
    """
    doc = json.loads(template.read_text())
    for bench in doc["benchmarks"]:
        data = rounds[(bench["params"]["optimization"], bench["params"]["batch_size"])]
        q1, _, q3 = statistics.quantiles(data, n=4)
        bench["stats"].update(data=data, rounds=len(data), iterations=1, min=min(data), max=max(data),
                              mean=statistics.fmean(data), median=statistics.median(data),
                              stddev=statistics.stdev(data), iqr=q3 - q1, q1=q1, q3=q3,
                              total=sum(data), ops=1 / statistics.fmean(data))
    out.write_text(json.dumps(doc))
    return out


def steady(ms: float, phase: float = 0.0, n: int = 30) -> list[float]:
    """``n`` rounds of about ``ms`` milliseconds, within +-3%: one quiet run's spread."""
    return [ms / 1e3 * (1 + 0.03 * math.sin(1.7 * i + phase)) for i in range(n)]


BASE = {key: steady(10.0 * key[1]) for key in CONFIGS}


def fabricated(tmp: Path, template: Path, **changed: list[float]) -> tuple[Path, Path]:
    """(base, new) files: every configuration steady in both, ``changed`` ("baseline_1": rounds) in new."""
    base = with_rounds(template, tmp / "base.json", BASE)
    new_rounds = {key: steady(10.0 * key[1], phase=1.0) for key in CONFIGS}
    for name, data in changed.items():
        opt, bs = name.rsplit("_", 1)
        new_rounds[(opt, int(bs))] = data
    return base, with_rounds(template, tmp / "new.json", new_rounds)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two real runs of the same code; the second is also pytest-benchmark's gate against a fabricated baseline."""
    guard = HANG_GUARD * pace_s()
    root = tmp_path_factory.mktemp("runs")
    store = f"--benchmark-storage=file://{root / 'store'}"
    base = run_suite(root / "base", "--benchmark-json=base.json", store, "--benchmark-save=base", timeout=guard)
    assert base.returncode == 0, base.stdout[-3000:]
    # The stored baseline for the gate: baseline rounds of 1 us (no real DenseNet-121 forward pass is
    # that fast, so the gate must flag them) and channels_last rounds of 1000 s (no real one is that slow).
    (stored,) = glob.glob(str(root / "store" / "*" / "0001_base.json"))
    gate_rounds = {key: [1e-6] * 5 if key[0] == "baseline" else [1e3] * 5 for key in CONFIGS}
    with_rounds(Path(stored), Path(stored).with_name("0002_fabricated.json"), gate_rounds)
    second = run_suite(root / "second", "--benchmark-json=second.json", store, "--benchmark-compare=0002",
                       "--benchmark-compare-fail=median:50%", timeout=guard)
    # A gate that passes (every stored round 1000 s) at 0%: every real round's CV is above it, so the
    # noise line is sure to be printed, and it must name this gate rather than the 5% default.
    with_rounds(Path(stored), Path(stored).with_name("0003_slow.json"), {key: [1e3] * 5 for key in CONFIGS})
    passing = run_suite(root / "passing", "--benchmark-json=passing.json", store, "--benchmark-compare=0003",
                        "--benchmark-compare-fail=median:0%", "--densebench-optimizations=baseline",
                        "--densebench-batch-sizes=1", timeout=guard)
    return {"base": root / "base" / "base.json", "second": root / "second" / "second.json",
            "gate_returncode": second.returncode, "gate_output": second.stdout + second.stderr,
            "passing_returncode": passing.returncode, "passing_output": passing.stdout + passing.stderr,
            "passing": root / "passing" / "passing.json"}


def test_pytest_gate_flags_what_regressed_against_the_stored_baseline(runs: dict) -> None:
    assert runs["gate_returncode"] != 0
    out = runs["gate_output"]
    assert "Performance has regressed" in out, out[-3000:]
    assert "densebench summary" in out, "densebench's summary is written even when pytest-benchmark's gate raises"
    listed = out.split("Performance has regressed:", 1)[1].splitlines()[1:]
    flagged = [line for line in listed[:len(CONFIGS)] if line.startswith("\t")]
    assert len(flagged) == 2, listed[:6]
    assert "baseline-bs1" in flagged[0] and "baseline-bs2" in flagged[1], flagged
    assert not any("channels_last" in line for line in flagged), "rounds faster than the stored ones are not flagged"


def test_the_noise_line_names_the_threshold_the_run_gates_on(runs: dict) -> None:
    out = runs["passing_output"]
    assert runs["passing_returncode"] == 0, out[-3000:]
    (outcome,) = json.loads(runs["passing"].read_text(encoding="utf-8"))["densebench"]["outcomes"]
    (line,) = [line for line in out.splitlines() if line.startswith("densebench: warning: noise:")]
    assert line.startswith("densebench: warning: noise: 1 of 1 benchmarks had a rounds' CV above 0% "
                           "(the --benchmark-compare-fail=median:0% gate); worst: baseline at batch 1, "
                           f"CV {outcome['noise_cv']:.1%}, cause seen: "), line


def test_compare_flags_a_2x_slowdown_with_a_clear_message(runs: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    base, new = fabricated(tmp_path, runs["base"], baseline_1=steady(20.0, phase=1.0),
                           baseline_2=steady(40.0, phase=1.0))
    md = tmp_path / "compare.md"
    code = main(["compare", str(base), str(new), "--markdown", str(md)])
    out = capsys.readouterr().out
    assert code == 1
    assert "densebench compare: 2 regression(s); worst baseline at batch" in out
    text = md.read_text()
    assert "| baseline | 1 |" in text and "**regression**" in text
    changes = {(c.optimization, c.batch_size): c for c in compare_mod.compare(base, new)}
    assert changes[("baseline", 1)].flagged and changes[("baseline", 1)].change == pytest.approx(1.0, abs=0.03)
    assert changes[("baseline", 1)].ci_low > 0.9
    assert not changes[("channels_last", 1)].flagged, "the untouched optimization is not flagged"
    assert changes[("channels_last", 1)].verdict == "within threshold"


def test_compare_ignores_noise_between_two_runs_of_the_same_code(runs: dict, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base, new = fabricated(tmp_path, runs["base"])
    code = main(["compare", str(base), str(new)])
    assert code == 0, capsys.readouterr().out
    assert "no regression in 4 comparisons" in capsys.readouterr().out
    assert {c.verdict for c in compare_mod.compare(base, new)} == {"within threshold"}


def test_compare_does_not_flag_a_change_its_rounds_cannot_tell_from_noise(runs: dict, tmp_path: Path) -> None:
    # Half the rounds at 8 ms, half at 30 ms: the median moves from 10 to about 19 ms, but
    # resampling the rounds puts it anywhere from 8 to 30 ms, so the interval includes "no change".
    noisy = steady(8.0, phase=1.0, n=15) + steady(30.0, phase=2.0, n=15)
    base, new = fabricated(tmp_path, runs["base"], baseline_1=noisy)
    changes = {(c.optimization, c.batch_size): c for c in compare_mod.compare(base, new)}
    assert changes[("baseline", 1)].change > 0.5 and changes[("baseline", 1)].ci_low < 0
    assert changes[("baseline", 1)].verdict == "within noise"
    assert main(["compare", str(base), str(new)]) == 0


def test_compare_reports_an_improvement_without_failing(runs: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    base, new = fabricated(tmp_path, runs["base"], channels_last_2=steady(10.0, phase=1.0))
    assert main(["compare", str(base), str(new)]) == 0
    assert "| channels_last | 2 |" in capsys.readouterr().out
    changes = {(c.optimization, c.batch_size): c for c in compare_mod.compare(base, new)}
    assert changes[("channels_last", 2)].verdict == "improvement" and changes[("channels_last", 2)].ci_high < 0


def test_compare_two_real_runs_end_to_end(runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real files from two runs: every configuration is compared and the exit status follows the verdicts.

    Which verdicts come out depends on the load each run met, so only their consistency is checked.
    """
    md = tmp_path / "compare.md"
    code = main(["compare", str(runs["base"]), str(runs["second"]), "--markdown", str(md)])
    out = capsys.readouterr().out
    changes = compare_mod.compare(runs["base"], runs["second"])
    assert sorted((c.optimization, c.batch_size) for c in changes) == sorted(CONFIGS)
    assert all(c.ci_low is not None for c in changes), "the raw rounds were saved and used"
    flagged = [c for c in changes if c.flagged]
    for c in changes:  # a regression is a change beyond the 5% threshold whose interval excludes none
        assert c.flagged == (c.change > 0.05 and c.ci_low > 0), c
    assert code == (1 if flagged else 0), out
    text = md.read_text()
    for opt, bs in CONFIGS:
        assert f"| {opt} | {bs} |" in text
    summary = (f"densebench compare: {len(flagged)} regression(s)" if flagged
               else "densebench compare: no regression in 4 comparisons")
    assert summary in out


def test_compare_refuses_different_devices(runs: dict, tmp_path: Path) -> None:
    doc = json.loads(runs["second"].read_text())
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


def p99s_ms(path: Path) -> list[float]:
    return [b["extra_info"]["latency_ms"]["p99"] for b in json.loads(path.read_text())["benchmarks"]]


def test_report_from_real_json(runs: dict, tmp_path: Path) -> None:
    out = tmp_path / "report"
    # A budget every measured p99 of this run fits in, whatever load the run met.
    budget = float(math.ceil(max(p99s_ms(runs["base"])) * 2))
    written = build([runs["base"]], out, latency_budget_ms=budget)
    md = written["markdown"].read_text()
    assert "fastest at batch 1: **" in md and f"best under a {budget:g} ms p99 budget" in md
    parser = Images()
    parser.feed(written["html"].read_text())
    assert {"throughput.png", "speedup.png", "latency.png", "memory_tradeoff.png"} <= set(parser.sources)
    for src in parser.sources:
        image = out / src
        assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert "energy.png" not in parser.sources and "Energy per image: not measured" in md
    # ... and one none of them fits in.
    tight = min(p99s_ms(runs["base"])) / 2
    md = build([runs["base"]], tmp_path / "tight", latency_budget_ms=tight)["markdown"].read_text()
    assert f"nothing measured fits a {tight:g} ms p99 budget" in md


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
    written = build([runs["base"], runs["second"]], tmp_path / "merged")
    md = written["markdown"].read_text()
    assert "· base" in md and "· second" in md, "two runs on one device are labelled by run"
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
