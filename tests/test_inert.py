"""densebench installed changes nothing in a pytest run that does not use it.

Each check runs pytest in a subprocess (as an installed plugin would be loaded) in a folder
that has nothing to do with densebench, once with the plugin and once without
(``-p no:densebench.plugin``), and compares what a user would see and get.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import SUITE

# A trivial test that records what the plugin may have changed in its process.
TRIVIAL = """
import json, os, sys

def test_one():
    with open("observed.json", "w") as fh:
        json.dump({"torch": "torch" in sys.modules,
                   "inductor_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
                   "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
                  fh)
"""

PLAIN_BENCHMARK = """
def test_sum(benchmark):
    assert benchmark(sum, range(100)) == 4950
"""


def _normalized(text: str) -> list[str]:
    """Output lines without what legitimately differs: timings, the plugin list, the rootdir line."""
    lines = []
    for line in text.splitlines():
        if line.startswith(("plugins:", "rootdir:", "cachedir:")):
            continue
        lines.append(re.sub(r"\d+\.\d+s", "Ns", line))
    return lines


def _run(pytester: pytest.Pytester, *args: str, use_plugin: bool) -> pytest.RunResult:
    plugin = ("-p", "densebench.plugin") if use_plugin else ("-p", "no:densebench.plugin")
    return pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", *args)


def test_unrelated_run_is_unchanged(pytester_sub: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """No header, no environment variable set, no DENSEBENCH_* read, no file, no torch import."""
    monkeypatch.setenv("DENSEBENCH_DEVICE", "tpu")  # would be a usage error if densebench read it
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    pytester_sub.makepyfile(test_trivial=TRIVIAL)
    without = _run(pytester_sub, use_plugin=False)
    before = json.loads((pytester_sub.path / "observed.json").read_text())
    with_plugin = _run(pytester_sub, use_plugin=True)
    after = json.loads((pytester_sub.path / "observed.json").read_text())
    assert without.ret == with_plugin.ret == 0
    assert _normalized(with_plugin.stdout.str()) == _normalized(without.stdout.str())
    assert with_plugin.stderr.str() == without.stderr.str()
    assert "densebench" not in "\n".join(_normalized(with_plugin.stdout.str()))
    assert after == before == {"torch": False, "inductor_cache": None, "affinity": before["affinity"]}
    assert not (pytester_sub.path / "results").exists()


def test_another_projects_benchmark_json_is_unchanged(pytester_sub: pytest.Pytester) -> None:
    """pytest-benchmark's JSON of another project gets no densebench fields and no torch import."""
    pytester_sub.makepyfile(test_bench=PLAIN_BENCHMARK)
    pytester_sub.makeconftest("import sys\n\ndef pytest_sessionfinish(session):\n"
                              "    open('torch.txt', 'w').write(str('torch' in sys.modules))\n")
    docs = {}
    for use_plugin in (False, True):
        result = _run(pytester_sub, "--benchmark-json=bench.json", "--benchmark-max-time=0.01", use_plugin=use_plugin)
        assert result.ret == 0
        docs[use_plugin] = json.loads((pytester_sub.path / "bench.json").read_text())
        assert (pytester_sub.path / "torch.txt").read_text() == "False"
    assert "densebench" not in docs[True]
    assert set(docs[True]["machine_info"]) == set(docs[False]["machine_info"])


def test_another_projects_xdist_run_keeps_pytest_benchmarks_rule(pytester_sub: pytest.Pytester) -> None:
    """Under ``-n 2`` pytest-benchmark turns benchmarks off; densebench neither turns them on nor pins workers."""
    pytest.importorskip("xdist")
    pytester_sub.makepyfile(test_bench=PLAIN_BENCHMARK, test_trivial=TRIVIAL)
    results = {}
    for use_plugin in (False, True):
        result = _run(pytester_sub, "-n", "2", "--benchmark-json=bench.json", use_plugin=use_plugin)
        assert result.ret == 0
        results[use_plugin] = result
        observed = json.loads((pytester_sub.path / "observed.json").read_text())
        assert observed["torch"] is False
        if hasattr(os, "sched_getaffinity"):
            assert observed["affinity"] == sorted(os.sched_getaffinity(0))
        assert not (pytester_sub.path / "bench.json").exists()  # nothing benchmarked, nothing saved
    assert _normalized(results[True].stdout.str()) == _normalized(results[False].stdout.str())
    assert "densebench" not in "\n".join(_normalized(results[True].stdout.str()))


def test_collecting_a_densebench_benchmark_activates_it(run_suite, monkeypatch: pytest.MonkeyPatch) -> None:
    """No densebench flag: the suite is found at collection, and the environment's settings apply."""
    for key, value in {"DEVICE": "cpu", "WEIGHTS": "random", "DATASET": "synthetic", "IMAGE_SIZE": "32",
                       "EVAL_SAMPLES": "8", "WARMUP": "1", "CROSSCHECK": "false", "OPTIMIZATIONS": "baseline",
                       "BATCH_SIZES": "2"}.items():
        monkeypatch.setenv(f"DENSEBENCH_{key}", value)
    run = run_suite("--benchmark-min-rounds=2", "--benchmark-max-time=0.02", fast=("-p", "densebench.plugin"))
    run.result.assert_outcomes(passed=1)
    run.result.stdout.fnmatch_lines(["densebench: device=cpu optimizations=baseline batch_sizes=2 image_size=32*"])
    assert list(run.benchmarks) == ["baseline-bs2"]
    assert run.json["densebench"]["settings"]["image_size"] == 32


def test_bad_environment_found_at_collection_is_a_usage_error(pytester_sub: pytest.Pytester,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSEBENCH_BATCH_SIZES", "0")
    pytester_sub.makepyfile(test_suite=SUITE)
    result = _run(pytester_sub, use_plugin=True)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid densebench configuration*", "*--densebench-batch-sizes: 0 is not positive*"])


def test_adapter_finds_every_attribute_it_relies_on() -> None:
    """The one module that touches pytest-benchmark's internals fails here when a release drops one."""
    from densebench import _pytest_benchmark as pb

    assert pb.missing_attributes() == []
    pb.SESSION_ATTRIBUTES = (*pb.SESSION_ATTRIBUTES, "no_such_attribute")
    try:
        assert pb.missing_attributes() == ["BenchmarkSession.no_such_attribute"]
    finally:
        pb.SESSION_ATTRIBUTES = pb.SESSION_ATTRIBUTES[:-1]


def test_only_the_adapter_touches_pytest_benchmark_internals() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "densebench"
    pattern = re.compile(r"_benchmarksession|save_json|\._mode\b")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "_pytest_benchmark.py" and pattern.search(p.read_text())]
    assert offenders == []
