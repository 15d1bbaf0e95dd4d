"""The GPU path without a GPU (issue 12): the doctor, and build_and_run.sh against fakes of the outer
process boundary (``nvidia-smi``, ``docker``, a container toolkit) on PATH, with the real torch,
onnxruntime and pynvml packages behind them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densebench import doctor
from densebench.cli import main
from densebench.errors import Unavailable
from densebench.optimizations import plan_for, unavailable_reason
from tests.conftest import FAST, HANG_GUARD, REPO, pace_s

ZEN4 = "flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni avx_vnni amx_tile amx_bf16 amx_int8\n"


def test_cpu_vector_extensions_decide_bf16_and_int8() -> None:
    zen4 = {c.name: c for c in doctor.cpu_checks(doctor.cpu_flags(ZEN4))}
    assert zen4["CPU avx512_bf16"].status == "ok" and zen4["CPU amx_bf16"].status == "off"
    assert zen4["CPU bf16"].detail == "native BF16 through avx512_bf16"
    assert zen4["CPU int8"].detail == "int8 dot products through avx512_vnni"
    spr = {c.name: c for c in doctor.cpu_checks(doctor.cpu_flags(SAPPHIRE_RAPIDS))}
    assert spr["CPU bf16"].detail == "native BF16 through amx_bf16, avx512_bf16"
    assert spr["CPU int8"].detail == "int8 dot products through amx_int8, avx512_vnni, avx_vnni"
    old = {c.name: c for c in doctor.cpu_checks(doctor.cpu_flags("flags\t: fpu sse2 avx2\n"))}
    assert old["CPU bf16"].status == "off" and "software" in old["CPU bf16"].detail
    assert doctor.cpu_checks(set())[0].status == "missing"


def test_driver_too_old_for_the_cuda_build_of_torch() -> None:
    problem = doctor.driver_mismatch("535.183.01", "13.0")
    assert problem is not None
    for part in ("535.183.01", "CUDA 13.0", "driver >= 580", "torch built for CUDA 12", "--index-url"):
        assert part in problem
    assert doctor.driver_mismatch("580.65.06", "13.0") is None
    assert doctor.driver_mismatch("535.183.01", "12.8") is None
    assert doctor.driver_mismatch("470.1", "13.0") is not None and "CUDA 11" in doctor.driver_mismatch("470.1", "13.0")
    assert doctor.driver_mismatch(None, "13.0") is None and doctor.driver_mismatch("535.1", None) is None


def test_env_lists_cpu_extensions_and_every_gpu_check_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    names = {c["name"] for items in checks.values() for c in items}
    for name in ("CPU avx512_bf16", "CPU avx512_vnni", "CPU amx_bf16", "CPU amx_int8", "CPU bf16", "CPU int8",
                 "nvidia-smi", "driver vs torch CUDA build", "torch sees CUDA", "NVML (nvidia-ml-py)",
                 "NVIDIA Container Toolkit", "onnxruntime (CUDA)", "torch-tensorrt", "nvidia-modelopt"):
        assert name in names, name
    assert any(c["name"].startswith("MIG") for c in checks["gpu"])
    for items in checks.values():
        for check in items:
            assert check["status"] in ("ok", "missing", "mismatch", "off") and check["detail"], check
    if os.path.exists("/proc/cpuinfo") and "avx512_bf16" in Path("/proc/cpuinfo").read_text():
        flags = {c["name"]: c["status"] for c in checks["cpu"]}
        assert flags["CPU avx512_bf16"] == "ok"
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert "checks (cpu):" in text and "checks (gpu):" in text and "CPU avx512_vnni" in text


def test_nvml_absent_through_the_real_pynvml() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        expected = str(exc)
    else:
        pytest.skip("NVML is present here")
    from densebench.telemetry import Nvml

    nvml, reason = Nvml.module()
    assert nvml is None and reason == f"no NVIDIA driver (NVML: {expected})"
    checks = {c.name: c for c in doctor.gpu_checks()}
    assert checks["NVML (nvidia-ml-py)"].status == "missing" and expected in checks["NVML (nvidia-ml-py)"].detail


def test_onnxruntime_without_the_cuda_provider_is_unavailable_on_cuda() -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    reason = unavailable_reason(plan_for("onnxruntime"), "cuda")
    assert reason is not None and "has no CUDAExecutionProvider" in reason and "densebench[gpu]" in reason
    assert "CPUExecutionProvider" in reason, "the real provider list is named"
    assert unavailable_reason(plan_for("onnxruntime"), "cpu") is None
    check = doctor.onnxruntime_check("13.0")
    assert check.status == "missing" and "onnxruntime-gpu" in (check.fix or "")


def test_onnxruntime_silent_cpu_fallback_is_refused(tmp_path: Path) -> None:
    """A session asked for the CUDA provider that ONNX Runtime quietly built on the CPU (here: the real
    CPU wheel, which has no CUDA provider) is refused with the reason, never timed as 'cuda'."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    from densebench.optimizations.onnxruntime import cuda_session

    with pytest.raises(Unavailable, match="could not load its CUDA provider.*CPUExecutionProvider"), \
            pytest.warns(UserWarning, match="CUDAExecutionProvider"):  # ONNX Runtime's own, easy to miss
        cuda_session(str(path), ort.SessionOptions(), 0, tf32=False)


def test_modelopt_missing_dependencies_skip_tensorrt_int8_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modelopt", None)  # what an import of a missing dependency raises
    monkeypatch.setitem(sys.modules, "modelopt.torch.quantization", None)
    from densebench.optimizations import tensorrt

    with pytest.raises(Unavailable, match=r"nvidia-modelopt cannot be imported .*densebench\[gpu\]"):
        tensorrt._modelopt()
    assert {m for m, _ in tensorrt.MODELOPT} == {"modelopt", "requests", "huggingface_hub"}


def test_stacks_with_tf32_are_distinct_engines() -> None:
    assert plan_for("onnxruntime+tf32").tf32 and not plan_for("onnxruntime").tf32
    assert plan_for("tensorrt+tf32").tf32 and not plan_for("tensorrt").tf32
    with pytest.raises(Exception, match=r"does not stack with channels_last \(only with tf32"):
        plan_for("onnxruntime+channels_last")


# ---------------------------------------------------------------- build_and_run.sh with fakes on PATH


def _fakes(tmp_path: Path, driver: str, docker_runtimes: str | None = None, toolkit: bool = False) -> dict[str, str]:
    """PATH with a fake nvidia-smi (and docker, nvidia-ctk) in front of /usr/bin:/bin; a venv that is the
    test's own interpreter, already 'installed' for the GPU extras so bootstrap.sh installs nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    scripts = {"nvidia-smi": f'echo "nvidia-smi $*" >> {log}\ncase "$*" in\n'
                             '  *-L*) echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-fake)" ;;\n'
                             f'  *driver_version*) echo "{driver}" ;;\n  *) exit 9 ;;\nesac\n'}
    if docker_runtimes is not None:
        scripts["docker"] = (f'echo "docker $*" >> {log}\ncase "$*" in\n'
                             f"  *Runtimes*) echo '{docker_runtimes}' ;;\n  info) exit 0 ;;\n  *) exit 99 ;;\nesac\n")
    if toolkit:
        scripts["nvidia-ctk"] = "echo 'NVIDIA Container Toolkit CLI version 1.17.0'\n"
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    (venv / ".densebench-install").write_text(f"{digest} gpu,report,xdist,serving\n")
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(REPO)}


def _build_and_run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./build_and_run.sh", "--venv", str(tmp_path / "venv"), "--output-dir",
                           str(tmp_path / "out"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=HANG_GUARD * pace_s(), check=False)


def _torch_cuda_major() -> str:
    import torch

    if not torch.version.cuda or torch.cuda.is_available():
        pytest.skip("needs a CUDA build of torch on a machine where it sees no GPU")
    return torch.version.cuda


def test_gpu_true_with_driver_535_and_torch_for_cuda_13_stops_naming_the_fix(tmp_path: Path) -> None:
    cuda = _torch_cuda_major()
    if not cuda.startswith("13."):
        pytest.skip(f"torch here is built for CUDA {cuda}, not 13")
    env = _fakes(tmp_path, "535.183.01")
    result = _build_and_run(tmp_path, env, "--gpu-enabled", "true", "--docker", "false")
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr
    for part in ("--gpu-enabled true, but densebench cannot use an NVIDIA GPU here", "NVIDIA driver 535.183.01",
                 f"built for CUDA {cuda}", "needs driver >= 580", "Install NVIDIA driver >= 580",
                 "pip install torch torchvision --index-url https://download.pytorch.org/whl/cu12"):
        assert part in message, (part, message)
    assert not (tmp_path / "out" / "results.json").exists()


def test_docker_without_the_container_toolkit_falls_back_to_the_venv(tmp_path: Path) -> None:
    _torch_cuda_major()
    env = _fakes(tmp_path, "535.183.01", docker_runtimes='{"runc":{"path":"runc"}}')
    result = _build_and_run(tmp_path, env, "--gpu-enabled", "true")
    assert "Docker is here, but the NVIDIA Container Toolkit is not installed" in result.stderr
    assert "Using a local venv instead" in result.stderr
    assert "densebench cannot use an NVIDIA GPU here: NVIDIA driver 535.183.01" in result.stderr
    assert result.returncode == 2
    calls = (tmp_path / "calls.log").read_text()
    assert "docker build" not in calls and "docker run" not in calls
    forced = _build_and_run(tmp_path, env, "--gpu-enabled", "true", "--docker", "true")
    assert forced.returncode == 2 and "--docker true with the GPU, but the NVIDIA Container Toolkit" in forced.stderr


def test_docker_with_the_toolkit_builds_the_image_for_this_uid(tmp_path: Path) -> None:
    env = _fakes(tmp_path, "580.65.06", docker_runtimes='{"runc":{}}', toolkit=True)
    result = _build_and_run(tmp_path, env, "--gpu-enabled", "true")
    calls = (tmp_path / "calls.log").read_text()
    assert result.returncode == 99, result.stderr  # the fake docker refuses to build: nothing ran
    assert f"docker build -f {REPO}/docker/Dockerfile --build-arg VARIANT=gpu --build-arg UID={os.getuid()}" in calls


def test_gpu_auto_says_why_it_benchmarks_the_cpu(tmp_path: Path) -> None:
    _torch_cuda_major()
    env = _fakes(tmp_path, "535.183.01")
    fast = [a for a in FAST if a not in ("-p", "densebench.plugin", "--densebench-device=cpu")]
    result = _build_and_run(tmp_path, env, "--docker", "false", "--optimizations", "baseline", "--batch-sizes", "1",
                            "--image-size", "32", "--", *fast, "--densebench-isolate=false",
                            "--densebench-scenarios=batch")
    assert "an NVIDIA GPU is present but unusable, so the CPU is benchmarked: NVIDIA driver 535.183.01" \
        in result.stderr
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["benchmarks"][0]["extra_info"]["device"] == "cpu"
    assert list((tmp_path / "out" / ".benchmarks").rglob("*.json")), "the autosave is beside the results"


def test_tf32_flags_after_the_new_fp32_precision_api_was_used() -> None:
    """torch's new ``fp32_precision`` API used elsewhere in the process made the legacy flags raise
    ("mix of the legacy and new APIs"); the flags helper now uses the new API, which is also what
    Inductor's Triton convolution templates read (``torch.backends.cudnn.fp32_precision``).
    In a subprocess: the flags are process-wide."""
    import torch

    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        pytest.skip(f"torch {torch.__version__} has no fp32_precision API")
    script = (
        "import torch\n"
        "from densebench.optimizations.base import flags\n"
        "torch.backends.cuda.matmul.fp32_precision = 'tf32'\n"
        "cpu = torch.device('cpu')\n"
        "with flags(cpu, tf32=False):\n"
        "    assert torch.backends.cudnn.allow_tf32 is False, 'torch.export reads the legacy flag'\n"
        "    assert torch.backends.cuda.matmul.allow_tf32 is False\n"
        "    assert torch.backends.cudnn.fp32_precision != 'tf32', 'Inductor conv templates: no TF32'\n"
        "with flags(cpu, tf32=True):\n"
        "    assert torch.backends.cudnn.fp32_precision == 'tf32', 'what Inductor conv templates read'\n"
        "    assert torch.backends.cuda.matmul.fp32_precision == 'tf32'\n"
        "assert torch.backends.cuda.matmul.fp32_precision == 'tf32', 'restored'\n"
        "with flags(cpu, tf32=False):\n"
        "    pass\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          timeout=HANG_GUARD * pace_s(), env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_tensorrt_timing_cache_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each build works on a private copy; the shared file is only ever replaced whole (os.replace)."""
    from densebench.optimizations import BuildContext
    from densebench.optimizations.tensorrt import private_timing_cache

    ctx = BuildContext(device=None, cache_dir=tmp_path)
    shared = tmp_path / "tensorrt" / "timing.cache"
    monkeypatch.setattr(os, "getpid", lambda: 101)
    with private_timing_cache(ctx) as first:
        assert first is not None and first.name == "timing.cache.101.tmp"
        monkeypatch.setattr(os, "getpid", lambda: 202)  # a second worker builds meanwhile
        with private_timing_cache(ctx) as second:
            second.write_bytes(b"worker 202")
        assert shared.read_bytes() == b"worker 202"
        first.write_bytes(b"worker 101, longer")
        assert shared.read_bytes() == b"worker 202", "never a half-written shared file"
    assert shared.read_bytes() == b"worker 101, longer"
    assert sorted(p.name for p in shared.parent.iterdir()) == ["timing.cache"], "no private copy left behind"
    with private_timing_cache(ctx) as third:
        assert third.read_bytes() == b"worker 101, longer", "a build starts from the shared cache"


def test_benchmark_workflow_keeps_its_baseline_and_runs_the_venv_path() -> None:
    import yaml

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "benchmark.yml").read_text())
    steps = workflow["jobs"]["gpu"]["steps"]
    cached = [s["with"]["path"] for s in steps if str(s.get("uses", "")).startswith("actions/cache")]
    assert cached == ["results/.benchmarks", "results/.benchmarks"], "restored and saved where the run stores it"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "./build_and_run.sh --gpu-enabled true --docker false --output-dir results" in runs
    assert ".venv/bin/densebench compare" in runs, "the venv the --docker false path creates"
    assert "find results/.benchmarks" in runs


def test_device_cuda_with_an_old_driver_names_the_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--densebench-device cuda said 'torch sees no CUDA GPU', sending users to the wrong place."""
    cuda = _torch_cuda_major()
    if not cuda.startswith(("12.", "13.")):
        pytest.skip(f"torch here is built for CUDA {cuda}")
    from densebench.errors import SettingsError
    from densebench.settings import Settings

    env = _fakes(tmp_path, "470.256.02")  # older than any CUDA 12 or 13 build allows
    monkeypatch.setenv("PATH", env["PATH"])
    with pytest.raises(SettingsError, match=r"NVIDIA driver 470\.256\.02 is too old for this torch, which is built "
                                            rf"for CUDA {cuda}.*--densebench-device cpu or auto"):
        Settings.from_mapping({"device": "cuda"})


@pytest.mark.parametrize(("installed", "cuda", "status", "says"), [
    ({"torch-tensorrt": "2.14.0", "torch": "2.14.1", "tensorrt-cu13": "11.1.0"}, "13.0", "ok", "strict-FP32 engine"),
    ({"torch-tensorrt": "2.13.0", "torch": "2.14.1", "tensorrt-cu13": "11.0.0"}, "13.0", "mismatch",
     "torch-tensorrt 2.13.0 is for torch 2.13, torch is 2.14.1"),
    ({"torch-tensorrt": "2.14.0", "torch": "2.14.1+cu126", "tensorrt-cu13": "11.1.0"}, "12.6", "mismatch",
     "TensorRT is built for CUDA 13 (tensorrt-cu13), torch for CUDA 12.6"),
])
def test_torch_tensorrt_must_match_torch_and_its_cuda(monkeypatch: pytest.MonkeyPatch, installed: dict[str, str],
                                                      cuda: str, status: str, says: str) -> None:
    monkeypatch.setattr(doctor, "_version", installed.get)
    check = doctor.tensorrt_checks(cuda)[0]
    assert check.status == status and says in check.detail, check
