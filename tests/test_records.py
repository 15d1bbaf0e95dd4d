"""Typed records of the JSON contract: exact round trips on real saved runs, statuses, the committed schema.

Fast and CPU-only: nothing here imports torch or runs a benchmark.
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from densebench import records
from densebench.records import (
    PROBLEM_STATUSES,
    TIMED_STATUSES,
    UNTIMED_STATUSES,
    BenchmarkRecord,
    Crosscheck,
    Latency,
    Outcome,
    Parity,
    ResultsFile,
    RunnerInfo,
    RunRecord,
    Status,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = sorted((REPO / "docs" / "results").glob("*/*.json"))
SCHEMA = REPO / records.SCHEMA_PATH


def exact(value: Any) -> str:
    """Equal dicts can still differ in key order or int vs float (1 == 1.0): compare the text."""
    return json.dumps(value)


@pytest.fixture(scope="module", params=RESULTS, ids=lambda p: p.name)
def saved(request: pytest.FixtureRequest) -> dict[str, Any]:
    return json.loads(request.param.read_text())


@pytest.fixture(scope="module")
def draft() -> Any:
    """jsonschema's draft 2020-12 validator class (the test extra installs jsonschema)."""
    return pytest.importorskip("jsonschema", reason="needs jsonschema: pip install -e '.[test]'").Draft202012Validator


@pytest.fixture(scope="module")
def validator(draft: Any) -> Any:
    return draft(records.json_schema())


def test_real_results_are_committed() -> None:
    assert len(RESULTS) >= 3, "the round-trip and schema tests run on the committed real results"


# ---------------------------------------------------------------- round trips on real files


def test_every_benchmark_record_round_trips(saved: dict[str, Any]) -> None:
    for bench in saved["benchmarks"]:
        info = bench["extra_info"]
        record = BenchmarkRecord.from_json(info)
        assert record.to_json() == info
        assert exact(record.to_json()) == exact(info), bench["name"]


def test_run_record_round_trips(saved: dict[str, Any]) -> None:
    run = saved["densebench"]
    assert exact(RunRecord.from_json(run).to_json()) == exact(run)


def test_whole_file_round_trips(saved: dict[str, Any]) -> None:
    assert exact(ResultsFile.from_json(saved).to_json()) == exact(saved)


def test_records_read_as_types(saved: dict[str, Any]) -> None:
    doc = ResultsFile.from_json(saved)
    for bench in doc.benchmarks:
        info = bench.extra_info
        assert isinstance(info, BenchmarkRecord) and isinstance(info.latency_ms, Latency)
        assert isinstance(info.parity, Parity) and isinstance(info.parity.thresholds, records.ParityThresholds)
        assert isinstance(info.runner, RunnerInfo) and info.runner.parts
        assert info.latency_ms.min <= info.latency_ms.p50 <= info.latency_ms.max
        assert (info.optimization, info.batch_size) == (bench.params.optimization, bench.params.batch_size)
        assert info.memory.rss_mb_peak >= info.memory.rss_mb_before * 0.5
        assert info.gpu.energy_j is None and info.gpu.reasons["energy_j"], "CPU runs: null with a reason"
    outcomes = doc.densebench.outcomes
    assert outcomes and all(isinstance(o.status, Status) for o in outcomes)
    timed = [o for o in outcomes if o.status.timed]
    assert timed and all(isinstance(o.latency_ms, Latency) and o.throughput_samples_per_s for o in timed)
    assert all(o.throughput_samples_per_s is None for o in outcomes if not o.status.timed)


def test_backend_details_are_flat_extra_keys(saved: dict[str, Any]) -> None:
    infos = [b["extra_info"] for b in saved["benchmarks"]]
    ov = next(i for i in infos if i["optimization"] == "openvino")
    runner = BenchmarkRecord.from_json(ov).runner
    assert runner.extra["backend"] == "openvino" and "backend" in runner.to_json()
    baseline = next(i for i in infos if i["optimization"] == "baseline")
    assert BenchmarkRecord.from_json(baseline).runner.extra == {}


# ---------------------------------------------------------------- older and newer files


def _newest_info() -> dict[str, Any]:
    doc = json.loads(next(p for p in RESULTS if p.name == "main-job-warm.json").read_text())
    return doc["benchmarks"][0]["extra_info"]


def test_an_older_file_reads_with_nones_and_writes_back_what_it_had() -> None:
    old = copy.deepcopy(_newest_info())
    for key in ("build_s", "build_s_total", "warmup_s", "telemetry", "runner", "crosscheck"):
        del old[key]
    del old["parity"]["top1_flips_near_tie"]
    record = BenchmarkRecord.from_json(old)
    assert record.build_s is None and record.telemetry is None and record.crosscheck is None
    assert record.parity.top1_flips_near_tie is None
    assert exact(record.to_json()) == exact(old), "no key appears that the file did not have"


def test_the_older_committed_run_lacks_min_ms_and_ratio_min() -> None:
    doc = json.loads(next(p for p in RESULTS if p.name == "results.json").read_text())
    check = BenchmarkRecord.from_json(doc["benchmarks"][0]["extra_info"]).crosscheck
    assert isinstance(check, Crosscheck) and check.ratio is not None
    assert check.min_ms is None and check.ratio_min is None
    assert "min_ms" not in check.to_json() and "ratio_min" not in check.to_json()


def test_keys_a_later_version_adds_are_kept() -> None:
    new = copy.deepcopy(_newest_info())
    new["energy_budget"] = {"joules": 3.5, "met": True}
    new["parity"]["top10_agreement"] = 1.0
    new["latency_ms"]["p999"] = 99.0
    new["runner"]["graph_breaks"] = 0
    record = BenchmarkRecord.from_json(new)
    assert record.extra == {"energy_budget": {"joules": 3.5, "met": True}}
    assert record.parity.extra == {"top10_agreement": 1.0} and record.latency_ms.extra == {"p999": 99.0}
    assert exact(record.to_json()) == exact(new)


def test_a_value_of_an_unexpected_shape_is_kept_not_raised() -> None:
    odd = copy.deepcopy(_newest_info())
    odd["parity"] = "not computed"
    odd["latency_ms"]["p50"] = "n/a"
    odd["memory"] = [1, 2]
    record = BenchmarkRecord.from_json(odd)
    assert record.parity == "not computed" and record.memory == [1, 2]
    assert exact(record.to_json()) == exact(odd)
    with pytest.raises(TypeError, match="needs a JSON object"):
        BenchmarkRecord.from_json(["not", "an", "object"])  # type: ignore[arg-type]


def test_an_unknown_status_is_kept_as_its_string() -> None:
    data = {"optimization": "x", "batch_size": 1, "status": "interrupted", "reason": "Ctrl-C"}
    outcome = Outcome.from_json(data)
    assert outcome.status == "interrupted" and not isinstance(outcome.status, Status)
    assert outcome.to_json() == data


def test_records_share_nothing_with_their_json() -> None:
    info = copy.deepcopy(_newest_info())
    record = BenchmarkRecord.from_json(info)
    info["parity"]["failures"].append("changed after reading")
    info["runner"]["parts"].append("x")
    assert record.parity.failures == [] and "x" not in record.runner.parts
    out = record.to_json()
    out["cpu"]["affinity"].append(99)
    assert 99 not in record.cpu.affinity


# ---------------------------------------------------------------- records built in code


def test_an_outcome_built_in_code_writes_what_note_writes_today() -> None:
    skipped = Outcome(optimization="tf32", batch_size=1, status=Status.SKIPPED, reason="tf32 needs a CUDA device")
    assert exact(skipped.to_json()) == exact({"optimization": "tf32", "batch_size": 1, "status": "skipped",
                                              "reason": "tf32 needs a CUDA device"})
    latency = {"p50": 2.0, "p90": 2.5, "p99": 3.0, "mean": 2.1, "min": 1.9, "max": 3.1}
    measured = Outcome(optimization="amp", batch_size=8, status="measured", reason=None,
                       throughput_samples_per_s=400.0, latency_ms=Latency(**latency), peak_memory_mb=None,
                       precision="amp_bf16", build_s=0.0, warmup_s=0.5)
    assert measured.status is Status.MEASURED
    # DenseBench.note(..., **summary) writes every summary key of a timed outcome, null or not.
    assert exact(measured.to_json()) == exact({
        "optimization": "amp", "batch_size": 8, "status": "measured", "reason": None,
        "throughput_samples_per_s": 400.0, "latency_ms": latency, "peak_memory_mb": None,
        "precision": "amp_bf16", "build_s": 0.0, "warmup_s": 0.5})


def test_optional_keys_are_left_out_and_other_nones_written_as_null() -> None:
    info = BenchmarkRecord.from_json(_newest_info())
    info.worker = info.profile = info.tensorboard_run = info.crosscheck = None
    built = BenchmarkRecord(**{f: getattr(info, f) for f in (
        "optimization", "batch_size", "image_size", "device", "device_name", "precision",
        "throughput_samples_per_s", "latency_ms", "setup_s", "parity", "memory", "gpu", "cpu")})
    out = built.to_json()
    assert "worker" not in out and "profile" not in out and "tensorboard_run" not in out
    assert out["crosscheck"] is None and out["build_s"] is None, "always-written fields are null, not missing"
    built.profile = records.Profile(rounds=3, chrome_trace="a.json", tensorboard_trace="b.json",
                                    tensorboard_logdir="tb")
    assert built.to_json()["profile"]["rounds"] == 3


def test_from_measurement_rebuilds_the_saved_records() -> None:
    """The helper for DenseBench._extra_info gives exactly what the current code saved."""
    rebuilt = 0
    for path in RESULTS:
        for bench in json.loads(path.read_text())["benchmarks"]:
            info = bench["extra_info"]
            check = info["crosscheck"]
            if "ratio_min" not in check:
                continue  # written before the crosscheck had min_ms and ratio_min
            record = BenchmarkRecord.from_measurement(
                optimization=info["optimization"], batch_size=info["batch_size"], image_size=info["image_size"],
                device=info["device"], device_name=info["device_name"], precision=info["precision"],
                round_times_s=bench["stats"]["data"], build_s_total=info["build_s_total"],
                first_use=info["build_s"] == info["build_s_total"], warmup_s=info["warmup_s"],
                warmup_iterations=info["warmup_iterations"],
                recompiles_during_timing=info["recompiles_during_timing"], parity=info["parity"],
                runner=info["runner"], weights=info["weights"], dataset=info["dataset"],
                telemetry={k: info[k] for k in ("memory", "gpu", "cpu", "telemetry")},
                crosscheck={k: v for k, v in check.items() if k not in ("ratio", "ratio_min")},
                worker=info.get("worker"))
            assert exact(record.to_json()) == exact(info), bench["name"]
            rebuilt += 1
    assert rebuilt >= 30


def test_from_measurement_without_crosscheck_or_rounds() -> None:
    info = _newest_info()
    record = BenchmarkRecord.from_measurement(
        optimization="baseline", batch_size=1, image_size=32, device="cpu", device_name="cpu", precision="fp32",
        round_times_s=[], build_s_total=1.0, first_use=False, warmup_s=0.25, warmup_iterations=1,
        recompiles_during_timing=0, parity=info["parity"], runner={"parts": ["baseline"], "input_dtype": "float32",
                                                                   "memory_format": "contiguous"},
        weights="random", dataset="synthetic", telemetry={"memory": info["memory"], "future_namespace": {"a": 1}})
    out = record.to_json()
    assert out["throughput_samples_per_s"] is None and out["latency_ms"] is None and out["crosscheck"] is None
    assert out["build_s"] == 0.0 and out["setup_s"] == 0.25 and out["future_namespace"] == {"a": 1}
    assert "worker" not in out


# ---------------------------------------------------------------- statuses


def test_status_behaves_like_its_string() -> None:
    assert Status.OOM == "oom" and "oom" in {Status.OOM} and Status.OOM in {"oom"}
    assert f"{Status.PARITY_FAILED}: x" == "parity_failed: x" and str(Status.CRASHED) == "crashed"
    assert json.dumps({"status": Status.TIMEOUT}) == '{"status": "timeout"}'
    assert Status.parse("skipped") is Status.SKIPPED and Status.parse("later") == "later"
    assert TIMED_STATUSES | UNTIMED_STATUSES == set(Status) and not TIMED_STATUSES & UNTIMED_STATUSES
    assert PROBLEM_STATUSES == set(Status) - {Status.MEASURED}
    assert all(s.meaning for s in Status)


def _status_literals(tree: ast.AST) -> set[str]:
    """String constants the code writes as a status (``.note(opt, bs, STATUS, ...)``) or compares one with."""

    def values(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return values(node.body) | values(node.orelse)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*map(values, node.elts)) if node.elts else set()
        return set()

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and "status" in ast.unparse(node.left):
            for comparator in node.comparators:
                found |= values(comparator)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "note":
            if len(node.args) >= 3:
                found |= values(node.args[2])
    return found


def test_every_status_the_code_uses_is_a_status_member() -> None:
    literals: dict[str, set[str]] = {}
    for path in sorted((REPO / "densebench").rglob("*.py")):
        found = _status_literals(ast.parse(path.read_text()))
        if found:
            literals[path.name] = found
    used = set().union(*literals.values())
    assert used <= {s.value for s in Status}, f"use densebench.records.Status: {literals}"
    sample = 'if o["status"] in ("skipped", "odd"): s.note(a, b, "ok" if p else "bad", r)\nx = o.get("status") == "x"'
    assert _status_literals(ast.parse(sample)) == {"skipped", "odd", "ok", "bad", "x"}, "the scan sees status lists"


def test_every_isolated_child_failure_is_a_status(tmp_path: Path) -> None:
    from densebench.isolate import ChildRun

    log = tmp_path / "child.log"
    for timed_out, code in ((True, -9), (False, -9), (False, -11), (False, 1)):
        status, _ = ChildRun("x", code, timed_out, 1.0, log).failure()
        assert status in set(Status), status


# ---------------------------------------------------------------- the JSON Schema


def test_the_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA.is_file(), f"run: python -m densebench.records -o {records.SCHEMA_PATH}"
    assert SCHEMA.read_text() == records.schema_text(), (
        f"the records changed: regenerate with python -m densebench.records -o {records.SCHEMA_PATH}")


@pytest.mark.parametrize("root", list(records.ROOTS))
def test_the_schemas_are_valid_draft_2020_12(root: str, draft: Any) -> None:
    schema = records.json_schema(root)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    draft.check_schema(schema)


def test_every_committed_result_validates(saved: dict[str, Any], validator: Any, draft: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(saved)]
    assert not errors, errors[:5]
    benchmark = draft(records.json_schema("benchmark"))
    for bench in saved["benchmarks"]:
        benchmark.validate(bench["extra_info"])
    draft(records.json_schema("run")).validate(saved["densebench"])


def _mutilated(saved: dict[str, Any], change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(saved)
    change(doc)
    return doc


@pytest.mark.parametrize(("what", "change"), [
    ("throughput as a string", lambda d: d["benchmarks"][0]["extra_info"].update(throughput_samples_per_s="fast")),
    ("batch_size missing from params", lambda d: d["benchmarks"][0]["params"].pop("batch_size")),
    ("parity missing", lambda d: d["benchmarks"][0]["extra_info"].pop("parity")),
    ("an unknown status", lambda d: d["densebench"]["outcomes"][0].update(status="went_fine")),
    ("latency percentiles as a list", lambda d: d["benchmarks"][0]["extra_info"].update(latency_ms=[1.0, 2.0])),
    ("a negative-free count as a float", lambda d: d["benchmarks"][0]["extra_info"].update(batch_size=1.5)),
    ("no densebench object", lambda d: d.pop("densebench")),
])
def test_a_mutilated_file_does_not_validate(saved: dict[str, Any], validator: Any, what: str, change: Any) -> None:
    assert not validator.is_valid(_mutilated(saved, change)), what


def test_extending_keeps_a_file_valid(saved: dict[str, Any], validator: Any) -> None:
    def extend(doc: dict[str, Any]) -> None:
        doc["benchmarks"][0]["extra_info"]["energy_budget"] = {"met": True}
        doc["benchmarks"][0]["extra_info"]["parity"]["top10_agreement"] = 1.0
        doc["densebench"]["paired"] = []

    assert validator.is_valid(_mutilated(saved, extend))


def test_fields_document_units_where_the_name_has_none() -> None:
    props = records.json_schema("benchmark")["$defs"]["MemoryTelemetry"]["properties"]
    assert "MiB" in props["rss_mb_peak"]["description"]
    latency = records.json_schema("benchmark")["$defs"]["Latency"]["properties"]
    assert "(unit: ms)" in latency["p99"]["description"]


def test_main_writes_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schema.json"
    assert records.main(["-o", str(out)]) == 0
    assert out.read_text() == records.schema_text()
    assert records.main(["--root", "benchmark"]) == 0
    assert json.loads(capsys.readouterr().out)["title"].startswith("densebench benchmark record")


def test_every_field_is_documented() -> None:
    schema = records.json_schema()
    undocumented = [f"{name}.{key}" for name, part in [("", schema), *schema["$defs"].items()]
                    for key, prop in part.get("properties", {}).items() if not prop.get("description")]
    assert not undocumented
    assert all(part.get("description") for part in schema["$defs"].values())


def test_reading_records_needs_no_torch() -> None:
    code = ("import sys, densebench.records as r, densebench.timing; r.json_schema(); "
            "assert 'torch' not in sys.modules, 'torch was imported'")  # from_measurement imports timing
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_a_fresh_run_validates_and_round_trips(run_suite, validator: Any) -> None:
    """What this version writes, not only what is committed: a real run's JSON against the schema."""
    run = run_suite("--densebench-optimizations=baseline,channels_last,tf32", "--densebench-batch-sizes=1",
                    "--densebench-latency-budget-ms=10000", "--densebench-tensorboard")
    run.result.assert_outcomes(passed=2, skipped=1)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(run.json)]
    assert not errors, errors[:5]
    assert exact(records.ResultsFile.from_json(run.json).to_json()) == exact(run.json)
    statuses = [o["status"] for o in run.json["densebench"]["outcomes"]]
    assert sorted(statuses) == ["measured", "measured", "skipped"]
