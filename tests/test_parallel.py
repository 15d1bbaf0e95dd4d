"""One xdist worker per GPU or per CPU slice: pinned, benchmarks on, one merged JSON."""

from __future__ import annotations

import os

import pytest

from densebench import parallel
from tests.conftest import FAST, SuiteRun


def test_cpu_assignments_are_disjoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "usable_cpus", lambda: [0, 1, 2, 3, 4])
    monkeypatch.setattr(parallel, "cuda_count", lambda: 0)
    slices = [parallel.assign("cpu", 2, i) for i in range(2)]
    assert [a.cpus for a in slices] == [(0, 1), (2, 3)]
    assert all(a.pinned and a.device == "cpu" for a in slices)
    too_many = parallel.assign("cpu", 6, 0)
    assert not too_many.pinned and "6 workers but 5 usable CPU core(s)" in too_many.reason


def test_gpu_assignments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "cuda_count", lambda: 4)
    # two GPUs on each of two NUMA nodes (CPUs 0-7 and 8-15), as the kernel's local_cpulist says
    nodes = [tuple(range(0, 8)), tuple(range(0, 8)), tuple(range(8, 16)), tuple(range(8, 16))]
    monkeypatch.setattr(parallel, "gpu_local_cpulists", lambda n: nodes[:n])
    assert [parallel.assign("cuda", 4, i).cpus for i in range(4)] == [(0, 1, 2, 3), (4, 5, 6, 7),
                                                                      (8, 9, 10, 11), (12, 13, 14, 15)]
    assert [parallel.assign("cuda", 4, i).device for i in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert parallel.assign("auto", 2, 1).device == "cuda:1"
    assert "5 workers but 4 GPU(s)" in parallel.assign("cuda", 5, 0).reason
    assert "names one GPU" in parallel.assign("cuda:1", 2, 0).reason


def test_gpu_local_cpus_from_sysfs(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import torch

    assert parallel.parse_cpulist("0-3,8-9,12\n") == (0, 1, 2, 3, 8, 9, 12)
    device = tmp_path / "0000:17:00.0"
    device.mkdir()
    (device / "local_cpulist").write_text("0-1,4\n")
    props = type("P", (), {"pci_domain_id": 0, "pci_bus_id": 0x17, "pci_device_id": 0})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(parallel, "usable_cpus", lambda: [0, 1, 2])
    assert parallel.gpu_local_cpulists(1, sysfs=str(tmp_path)) == [(0, 1)], "only CPUs this process may use"
    assert parallel.gpu_local_cpulists(1, sysfs=str(tmp_path / "none")) == [None]
    assert parallel.gpu_cpu_slices([None, (0, 1)]) == [None, (0, 1)]


def test_worker_benchmark_round_trip() -> None:
    data = {"name": "t[a-bs1]", "fullname": "f.py::t[a-bs1]", "group": "batch_size=1", "params": {}, "param": "a-bs1",
            "extra_info": {}, "options": {}, "stats": {"median": 1.0, "data": [1.0, 1.0], "iterations": 1}}
    bench = parallel.WorkerBenchmark(data)
    assert bench.as_dict(include_data=False)["stats"] == {"median": 1.0, "iterations": 1}
    assert bench.as_dict(flat=True)["median"] == 1.0 and "stats" not in bench.as_dict(flat=True)


def test_two_pinned_cpu_workers_write_one_json(run_suite) -> None:
    pytest.importorskip("xdist")
    if len(parallel.usable_cpus()) < 2:
        pytest.skip("needs 2 CPU cores")
    run = run_suite("-n", "2", "--densebench-optimizations=baseline,channels_last,amp",
                    "--densebench-batch-sizes=1,2", "--benchmark-min-rounds=3")
    run.result.assert_outcomes(passed=6)
    params = [b["param"] for b in run.json["benchmarks"]]
    assert sorted(params) == sorted(f"{o}-bs{b}" for o in ("baseline", "channels_last", "amp") for b in (1, 2))
    assert len(params) == len(set(params)), "every benchmark exactly once"
    cpus_by_opt: dict[str, set[tuple[int, ...]]] = {}
    for bench in run.json["benchmarks"]:
        assert bench["stats"]["rounds"] >= 3 and bench["stats"]["data"], "benchmarking stayed on"
        worker = bench["extra_info"]["worker"]
        assert worker["pinned"] and len(worker["cpus"]) >= 1
        assert bench["extra_info"]["cpu"]["affinity"] == worker["cpus"]
        assert bench["extra_info"]["cpu"]["torch_threads"] == len(worker["cpus"])
        assert "@" not in bench["fullname"]
        cpus_by_opt.setdefault(bench["extra_info"]["optimization"], set()).add(tuple(worker["cpus"]))
    assert all(len(v) == 1 for v in cpus_by_opt.values()), "each optimization ran (and was built) on one worker"
    workers = run.json["densebench"]["workers"]
    slices = [tuple(w["worker"]["cpus"]) for w in workers]
    assert len(slices) == 2 and not set(slices[0]) & set(slices[1]), "disjoint cores"
    run.result.stdout.fnmatch_lines(["worker gw*pinned to CPUs*", "worker gw*pinned to CPUs*"])
    dense = run.json["densebench"]  # derived on the controller from what the workers collected and measured
    assert len(dense["planned"]) == 6 and dense["never_ran"] == [] and dense["complete"] is True
    assert {r["batch_size"] for r in dense["best"]} == {1, 2}


def test_unpinned_parallel_run_keeps_benchmarks_off(pytester_sub: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    from tests.conftest import SUITE

    n = len(os.sched_getaffinity(0)) + 1
    pytester_sub.makepyfile(test_suite=SUITE)
    result = pytester_sub.runpytest_subprocess(*FAST, "-n", str(n), "--densebench-optimizations=baseline",
                                               "--densebench-batch-sizes=1", "--benchmark-json=out.json")
    run = SuiteRun(result, pytester_sub.path / "out.json")
    result.assert_outcomes(passed=1)
    assert run.json is None, "pytest-benchmark stays disabled: nothing is saved"
    result.stdout.fnmatch_lines([f"*benchmarks are off in this parallel run: -n {n} workers but*usable CPU core*"])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2 usable CPU cores for 2 pinned workers")
def test_pinned_workers_with_isolation_measure_everything_once(run_suite) -> None:
    """``-n 2 --densebench-isolate``: each worker's children are plain runs (not xdist workers), so
    every configuration is measured once, in a child, and lands in the one JSON."""
    pytest.importorskip("xdist")
    run = run_suite("-n", "2", "--densebench-isolate=true", "--densebench-optimizations=baseline,channels_last",
                    "--densebench-batch-sizes=1,2")
    run.result.assert_outcomes(passed=4)
    assert sorted(run.benchmarks) == ["baseline-bs1", "baseline-bs2", "channels_last-bs1", "channels_last-bs2"]
    statuses = sorted((o["optimization"], o["batch_size"], o["status"]) for o in run.json["densebench"]["outcomes"])
    assert statuses == [(o, b, "measured") for o in ("baseline", "channels_last") for b in (1, 2)]
    for bench in run.benchmarks.values():
        assert bench["stats"]["rounds"] >= 2
