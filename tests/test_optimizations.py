"""The optimizations beyond the seed set, on CPU: parity, recorded precision, caches, OOM, stacks."""

from __future__ import annotations

import math

import pytest

from densebench.optimizations import plan_for, resolve_names, unavailable_reason
from densebench.settings import SettingsError
from tests.conftest import HANG_GUARD, pace_s

GPU_ONLY = ("tf32", "cudagraphs", "tensorrt", "tensorrt_int8")


@pytest.mark.parametrize(("name", "reason"), [
    ("openvino+amp", "openvino converts the FP32 model itself"),
    ("channels_last+onnxruntime", "does not stack with channels_last"),
    ("int8+fp16", "int8 quantizes the FP32 model"),
    ("jit+cudagraphs", "not the jit backend"),
    ("compile_max+cudagraphs", "compile_max already uses CUDA graphs"),
    ("bf16+fp16", "exclude each other"),
    ("tf32+fp16", "tf32 only changes FP32 math"),
    ("compile+int8", "both backends"),
])
def test_impossible_stacks_say_why(name: str, reason: str) -> None:
    with pytest.raises(SettingsError, match=reason):
        plan_for(name)


def test_possible_stacks() -> None:
    assert plan_for("channels_last+bf16+compile").weight_dtype == "bfloat16"
    assert plan_for("channels_last+int8+amp").backend == "int8"
    assert plan_for("channels_last+fp16+cudagraphs").cudagraphs


def test_best_differs_by_device() -> None:
    cpu, cuda = resolve_names("best", "cpu"), resolve_names("best", "cuda")
    assert cpu[0] == cuda[0] == "baseline"
    assert "openvino_int8" in cpu and "fp16" not in cpu
    assert "tensorrt+fp16" in cuda and "openvino" not in cuda


@pytest.mark.parametrize("name", GPU_ONLY)
def test_gpu_only_optimizations_name_what_is_missing_on_cpu(name: str) -> None:
    reason = unavailable_reason(plan_for(name), "cpu")
    assert reason and "needs a CUDA device (running on cpu)" in reason


def test_openvino_is_refused_on_cuda_with_the_reason() -> None:
    assert "needs a CPU device (running on cuda)" in unavailable_reason(plan_for("openvino"), "cuda")


def test_runtime_and_precision_optimizations(run_suite) -> None:
    names = "baseline,bf16,channels_last+bf16,onnxruntime,openvino,openvino_int8," + ",".join(GPU_ONLY)
    run = run_suite(f"--densebench-optimizations={names}", "--densebench-batch-sizes=1,2",
                    "--densebench-calibration-samples=8", "--densebench-output=out")
    run.result.assert_outcomes(passed=12, skipped=2 * len(GPU_ONLY))
    precision = {b["extra_info"]["optimization"]: b["extra_info"]["precision"] for b in run.benchmarks.values()}
    ov_hint = run.benchmarks["openvino-bs1"]["extra_info"]["runner"]["inference_precision_hint"]
    assert precision == {"baseline": "fp32", "bf16": "bf16", "channels_last+bf16": "bf16", "onnxruntime": "fp32",
                         "openvino": {"bf16": "bf16", "f32": "fp32"}.get(ov_hint, ov_hint),
                         "openvino_int8": "int8"}
    for bench in run.benchmarks.values():
        assert bench["extra_info"]["parity"]["passed"]
    assert run.benchmarks["onnxruntime-bs1"]["extra_info"]["runner"]["provider"] == "CPUExecutionProvider"
    int8 = run.benchmarks["openvino_int8-bs1"]["extra_info"]["runner"]
    assert int8["calibration_images"] == 8 and int8["converted_from_cache"] is True, \
        "openvino_int8 reuses the IR that openvino converted"
    skipped = {o["optimization"]: o["reason"] for o in run.outcomes("skipped")}
    assert set(skipped) == set(GPU_ONLY)
    assert run.json["densebench"]["calibration"] == {"images": 8, "overlaps_parity_set": False}

    again = run_suite("--densebench-optimizations=onnxruntime,openvino,openvino_int8",
                      "--densebench-batch-sizes=1", "--densebench-calibration-samples=8",
                      "--densebench-output=out", json_name="again.json")
    again.result.assert_outcomes(passed=3)
    runners = {b["extra_info"]["optimization"]: b["extra_info"]["runner"] for b in again.benchmarks.values()}
    assert runners["onnxruntime"]["exported_from_cache"] is True
    assert runners["openvino"]["converted_from_cache"] is True
    assert runners["openvino_int8"]["quantized_from_cache"] is True


@pytest.mark.slow
def test_pt2e_int8_on_cpu(run_suite) -> None:
    run = run_suite("--densebench-optimizations=int8", "--densebench-batch-sizes=2",
                    "--densebench-calibration-samples=8", "--densebench-output=out")
    run.result.assert_outcomes(passed=1)
    info = run.benchmarks["int8-bs2"]["extra_info"]
    assert info["precision"] == "int8" and info["parity"]["passed"]
    assert info["recompiles_during_timing"] == 0
    assert info["runner"]["quantized_from_cache"] is False
    assert info["warmup_s"] < info["build_s"], "the build compiled this batch size; warm-up did not recompile"


OOM = '''
import torch
from densebench.optimizations.base import Backed, Backend, Technique, register, register_backend, set_backend


def build(forward, example, plan, ctx):
    def run(x):
        if x.shape[0] >= 4:  # a genuine allocator failure: far more than any machine has
            torch.empty(x.shape[0] * 2**50, dtype=torch.uint8)
        return forward(x)
    return Backed(forward=run)


register_backend(Backend("hungry", build))
register(Technique(name="hungry", summary="runs out of memory from batch 4", apply=set_backend("hungry"),
                   kind="backend", default=False))
'''


def test_out_of_memory_is_recorded_and_the_run_goes_on(pytester_sub: pytest.Pytester, run_suite) -> None:
    pytester_sub.makeconftest(OOM)
    # A budget every round fits in, however loaded the machine: as long as a hang guard (minutes).
    budget = math.ceil(HANG_GUARD * pace_s()) * 1000
    run = run_suite("--densebench-optimizations=hungry,baseline", "--densebench-batch-sizes=2,4",
                    f"--densebench-latency-budget-ms={budget}", "-rs")
    result = run.result
    result.assert_outcomes(passed=3, skipped=1)
    assert sorted(run.benchmarks) == ["baseline-bs2", "baseline-bs4", "hungry-bs2"]
    oom = run.outcomes("oom")
    assert [(o["optimization"], o["batch_size"]) for o in oom] == [("hungry", 4)]
    assert "out of memory: hungry at batch size 4" in oom[0]["reason"]
    result.stdout.fnmatch_lines([f"latency budget {budget:g} ms (p99):*",
                                 "oom: out of memory: hungry at batch size 4: *can't allocate memory*"])
    server = run.json["densebench"]["server"]
    assert server["fits"] is True and server["latency_budget_ms"] == budget
    assert run.json["densebench"]["offline"]["optimization"] in ("hungry", "baseline")
