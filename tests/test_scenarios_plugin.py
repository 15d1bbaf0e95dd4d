"""Serving scenarios through the plugin: collection, the saved JSON, isolation, report and compare."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, SuiteRun

pytest.importorskip("mlperf_loadgen", reason="the serving scenarios need densebench[serving] (mlcommons-loadgen)")

SUITE = "from densebench.suite.test_inference import test_inference, test_scenario\n"
SERVE = ("--densebench-scenarios=batch,offline,server", "--densebench-server-search-s=60",
         "--densebench-scenario-duration-ms=500", "--densebench-latency-budget-ms=250",
         "--densebench-batch-sizes=1,4", "--densebench-paired-rounds=0")


def _collect(pytester: pytest.Pytester, *args: str) -> list[str]:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "densebench.plugin", "--collect-only", "-q", "--densebench-device=cpu",
                                "--densebench-optimizations=baseline,openvino", *args)
    return [line for line in result.stdout.lines if "::" in line]


def test_scenarios_are_collected_only_when_asked_for(pytester: pytest.Pytester) -> None:
    plain = _collect(pytester)
    assert plain and all("test_inference[" in line for line in plain)
    served = _collect(pytester, "--densebench-scenarios=server,offline", "--densebench-batch-sizes=1")
    assert sorted(line.split("::")[1] for line in served) == [
        "test_scenario[baseline-offline]", "test_scenario[baseline-server]", "test_scenario[openvino-offline]",
        "test_scenario[openvino-server]"]
    both = _collect(pytester, "--densebench-scenarios=batch,singlestream", "--densebench-batch-sizes=1")
    assert [line.split("::")[1] for line in both] == [  # optimization-major: each optimization is built once
        "test_inference[baseline-bs1]", "test_scenario[baseline-singlestream]", "test_inference[openvino-bs1]",
        "test_scenario[openvino-singlestream]"]


def test_a_wrong_scenario_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "densebench.plugin", "--densebench-scenarios=batch,multistream")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--densebench-scenarios: unknown scenario 'multistream' (allowed: a comma list "
                                 "of batch, offline, server, singlestream*"])


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO,
                          check=False)


def _check_scenarios(doc: dict, optimizations: tuple[str, ...], batch: bool = True) -> None:
    benches = {b["name"]: b for b in doc["benchmarks"]}
    for opt in optimizations:
        for scenario in ("offline", "server"):
            bench = benches[f"test_scenario[{opt}-{scenario}]"]
            info = bench["extra_info"]
            assert bench["group"] == f"scenario={scenario}"
            assert bench["params"] == {"optimization": opt, "scenario": scenario}
            assert info["parity"]["passed"], info["parity"]  # LoadGen's accuracy mode, scored against baseline
            result = info["scenario"]
            assert result["name"] == scenario and result["achieved_qps"] > 0
            assert bench["stats"]["rounds"] > 0
            assert (REPO / result["log_dir"]).is_dir() or result["log_dir"]
            if scenario == "server":
                search = result["server_search"]
                assert search["points"] and search["latency_budget_ms"] == 250
                if search["highest_valid_qps"] is not None:
                    assert result["valid"] and result["latency_ms"]["p99"] <= 250
        if batch:
            assert benches[f"test_inference[{opt}-bs1]"]["group"] == "batch_size=1"
    outcomes = {(o["optimization"], o["scenario"]): o for o in doc["densebench"]["scenarios"]}
    assert set(outcomes) == {(o, s) for o in optimizations for s in ("offline", "server")}
    assert all(o["status"] == "measured" for o in outcomes.values())


@pytest.fixture
def serve_suite(pytester_sub: pytest.Pytester):
    """The suite with test_scenario, run in a pytester subprocess with FAST settings; returns a SuiteRun."""
    pytester_sub.makepyfile(test_suite=SUITE)

    def run(*args: str) -> SuiteRun:
        result = pytester_sub.runpytest_subprocess(*FAST, "--benchmark-json=out.json", *args)
        return SuiteRun(result, pytester_sub.path / "out.json")

    return run


@pytest.mark.slow
def test_offline_and_server_in_one_run_then_report_and_compare(serve_suite, tmp_path) -> None:
    run = serve_suite("--densebench-optimizations=baseline,openvino", *SERVE, f"--densebench-output={tmp_path}/o")
    run.result.assert_outcomes(passed=8)
    _check_scenarios(run.json, ("baseline", "openvino"))
    openvino = next(b for b in run.json["benchmarks"] if b["name"] == "test_scenario[openvino-offline]")
    assert openvino["extra_info"]["scenario"]["batcher"]["executor"] == "openvino AsyncInferQueue"
    assert list((tmp_path / "o" / "loadgen").rglob("mlperf_log_detail.txt"))
    run.result.stdout.fnmatch_lines(["*baseline[[]server[]]: *", "*openvino[[]offline[]]: * samples/s*"])
    validator = pytest.importorskip("jsonschema", reason="needs jsonschema: pip install -e '.[test]'")
    schema = json.loads((REPO / "docs" / "schema" / "densebench-results.schema.json").read_text(encoding="utf-8"))
    errors = [e.message for e in validator.Draft202012Validator(schema).iter_errors(run.json)]
    assert not errors, errors[:3]
    # densebench report: the scenario table, the findings and the latency-vs-rate curve
    out = tmp_path / "report"
    done = _run("densebench.cli", "report", str(run.path), "-o", str(out))
    assert done.returncode == 0, done.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Serving scenarios (MLPerf LoadGen)" in md and "| server | baseline |" in md
    assert "offline (every sample at once):" in md
    assert (out / "server_curve.png").stat().st_size > 10_000
    # pytest-benchmark's own compare reads the file, scenario groups included
    script = Path(sys.executable).with_name("pytest-benchmark")  # its console script (the module has no __main__)
    done = subprocess.run([str(script), "compare", str(run.path), "--group-by=group"], capture_output=True,
                          text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "scenario=server" in done.stdout and "test_scenario[openvino-server]" in done.stdout
    # densebench compare of the run with itself: the batch benchmarks only (scenario latencies are at the rates
    # each run found, which two runs do not share)
    done = _run("densebench.cli", "compare", str(run.path), str(run.path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "baseline" in done.stdout and "[server]" not in done.stdout and "scenario" not in done.stdout


@pytest.mark.slow
def test_isolated_children_carry_their_scenarios_and_a_scenario_only_run_is_complete(serve_suite, tmp_path) -> None:
    only = ("--densebench-scenarios=offline,server", *SERVE[1:])
    run = serve_suite("--densebench-optimizations=baseline", *only, "--densebench-isolate=true",
                      f"--densebench-output={tmp_path}/o")
    run.result.assert_outcomes(passed=2)
    _check_scenarios(run.json, ("baseline",), batch=False)
    dense = run.json["densebench"]
    assert dense["planned"] == [] and dense["never_ran"] == [] and dense["complete"] is True
    done = _run("densebench.cli", "report", str(run.path), "-o", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    assert "## Serving scenarios (MLPerf LoadGen)" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
