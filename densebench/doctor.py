"""``densebench env`` as a doctor: can this machine run what densebench would run, and if not, why.

Every check gives a status (``ok``, ``missing``, ``mismatch``, ``off``), what was seen and, when
something is wrong, the fix in one line. The GPU checks go from the outside in: ``nvidia-smi`` and
the driver, the driver against the CUDA build of the installed torch, torch's view of CUDA, NVML,
the NVIDIA Container Toolkit for Docker, MIG, then each GPU backend (ONNX Runtime's CUDA provider,
Torch-TensorRT, ModelOpt) and the precision it would really use. On the CPU side it lists the vector
extensions that decide whether BF16 and INT8 are fast (``/proc/cpuinfo`` flags).

``python -m densebench.doctor --require-gpu`` exits 3 with the reason (the driver, the CUDA build of
torch and what to install) when densebench could not run on an NVIDIA GPU here; ``build_and_run.sh``
calls it. Minimum drivers per CUDA major version: NVIDIA, *CUDA Compatibility*, "Minor Version
Compatibility", Table 1 (CUDA 11.x >= 450, 12.x >= 525, 13.x >= 580).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# CUDA major version -> minimum NVIDIA driver branch (Linux), NVIDIA's minor version compatibility table.
MIN_DRIVER = {11: 450, 12: 525, 13: 580}

# /proc/cpuinfo flag -> what it is called and what it speeds up.
CPU_EXTENSIONS = {
    "avx2": "AVX2 (FP32 baseline for oneDNN)",
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX-512 BF16 (fast bf16 / amp on CPU)",
    "avx512_vnni": "AVX-512 VNNI (fast int8 on CPU)",
    "avx_vnni": "AVX-VNNI (int8 dot products, 256-bit)",
    "amx_tile": "AMX tiles",
    "amx_bf16": "AMX-BF16 (much faster bf16 matmul/conv)",
    "amx_int8": "AMX-INT8 (much faster int8 matmul/conv)",
}

TORCH_INDEX = "https://download.pytorch.org/whl"


@dataclass(frozen=True)
class Check:
    """One finding. ``status``: 'ok', 'missing', 'mismatch' or 'off' (not applicable here)."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        mark = {"ok": "ok", "off": "--"}.get(self.status, "!!")
        return f"  [{mark}] {self.name}: {self.detail}" + (f"\n       fix: {self.fix}" if self.fix else "")


# ---------------------------------------------------------------- CPU


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The flags of the first CPU in ``/proc/cpuinfo`` (or the given text); empty where unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_checks(flags: set[str]) -> list[Check]:
    """One check per vector extension, then what that means for bf16 and int8."""
    if not flags:
        return [Check("CPU flags", "missing", "/proc/cpuinfo has no flags line (not Linux on x86?)")]
    out = [Check(f"CPU {name}", "ok" if name in flags else "off", ("present: " if name in flags else "absent: ") + what)
           for name, what in CPU_EXTENSIONS.items()]
    bf16 = [n for n in ("amx_bf16", "avx512_bf16") if n in flags]
    int8 = [n for n in ("amx_int8", "avx512_vnni", "avx_vnni") if n in flags]
    out.append(Check("CPU bf16", "ok" if bf16 else "off",
                     f"native BF16 through {', '.join(bf16)}" if bf16 else
                     "no BF16 instructions: bf16/amp on CPU convert in software and may be slower than fp32"))
    out.append(Check("CPU int8", "ok" if int8 else "off",
                     f"int8 dot products through {', '.join(int8)}" if int8 else
                     "no VNNI/AMX: int8 (int8, openvino_int8) gains little here"))
    return out


# ---------------------------------------------------------------- driver and torch


def driver_version() -> tuple[str | None, str]:
    """(driver version from ``nvidia-smi``, or None; what was seen)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "nvidia-smi is not on PATH (no NVIDIA driver installed, or not visible here)"
    try:
        proc = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi failed: {exc}"
    lines = [x.strip() for x in proc.stdout.splitlines() if x.strip()]
    if proc.returncode != 0 or not lines:
        return None, f"nvidia-smi failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[:200]}"
    return lines[0], f"driver {lines[0]} ({len(lines)} GPU(s))"


def torch_cuda() -> tuple[str | None, bool, int]:
    """(torch's CUDA build such as '13.0' or None for a CPU/ROCm build, CUDA usable, device count)."""
    import torch  # heavy, optional

    available = bool(torch.cuda.is_available())
    return torch.version.cuda, available, torch.cuda.device_count() if available else 0


def driver_mismatch(driver: str | None, cuda_build: str | None) -> str | None:
    """Why a torch built for ``cuda_build`` cannot run on ``driver``, with the fix; None when it can."""
    if driver is None or cuda_build is None:
        return None
    try:
        branch, major = int(driver.split(".")[0]), int(cuda_build.split(".")[0])
    except ValueError:
        return None
    need = MIN_DRIVER.get(major)
    if need is None or branch >= need:
        return None
    fits = [m for m, d in sorted(MIN_DRIVER.items()) if d <= branch]
    alt = (f", or a torch built for CUDA {fits[-1]}: pip install torch torchvision --index-url "
           f"{TORCH_INDEX}/cu{fits[-1]}X (X: a CUDA {fits[-1]} minor that your torch release is built for, "
           "see pytorch.org/get-started)") if fits else ""
    return (f"NVIDIA driver {driver} is too old for this torch, which is built for CUDA {cuda_build} "
            f"(CUDA {major}.x needs driver >= {need}). Install NVIDIA driver >= {need}{alt}")


def gpu_blocker() -> str | None:
    """Why densebench cannot use an NVIDIA GPU with this torch here (None when it can)."""
    driver, seen = driver_version()
    cuda_build, available, count = torch_cuda()
    if available and count:
        return None
    import torch  # heavy, optional

    if driver is None:
        return f"no usable NVIDIA GPU: {seen}"
    if cuda_build is None:
        return (f"NVIDIA driver {driver} is installed, but torch {torch.__version__} is a CPU-only build. "
                f"Install a CUDA build: pip install torch torchvision --index-url {TORCH_INDEX}/cu130 "
                f"(CUDA 13, driver >= {MIN_DRIVER[13]}) or cu12X for driver >= {MIN_DRIVER[12]}")
    problem = driver_mismatch(driver, cuda_build)
    if problem:
        return problem
    return (f"NVIDIA driver {driver} and torch {torch.__version__} (CUDA {cuda_build}) should work together, "
            "but torch sees no CUDA device: check CUDA_VISIBLE_DEVICES, the container's --gpus flag, "
            "and `python -c 'import torch; torch.cuda.init()'` for the CUDA error")


def gpu_checks() -> list[Check]:
    """Driver, torch's CUDA build, CUDA devices and NVML, each with a reason."""
    import torch  # heavy, optional

    driver, seen = driver_version()
    cuda_build, available, count = torch_cuda()
    out = [Check("nvidia-smi", "ok" if driver else "missing", seen)]
    build = f"torch {torch.__version__} built for " + (f"CUDA {cuda_build}" if cuda_build else "CPU only (no CUDA)")
    problem = driver_mismatch(driver, cuda_build)
    if problem:
        seen_part, fix = problem.split(". Install ", 1)
        out.append(Check("driver vs torch CUDA build", "mismatch", seen_part, "install " + fix))
    elif driver and cuda_build:
        out.append(Check("driver vs torch CUDA build", "ok", f"{build}; driver {driver} is new enough"))
    else:
        out.append(Check("driver vs torch CUDA build", "off", f"{build}; no NVIDIA driver to compare with"))
    blocker = gpu_blocker()
    out.append(Check("torch sees CUDA", "ok" if available and count else "missing",
                     f"{count} CUDA device(s)" if available and count else (blocker or "no CUDA device")))
    from .telemetry import Nvml

    nvml, reason = Nvml.module()
    out.append(Check("NVML (nvidia-ml-py)", "ok" if nvml is not None else "missing",
                     "initialised: GPU power, energy, clocks and per-process memory are readable" if nvml is not None
                     else f"{reason}: GPU telemetry will be null with this reason"))
    out += mig_checks(nvml)
    return out


def mig_checks(nvml: Any) -> list[Check]:
    """MIG mode per GPU through NVML (a MIG slice gets its own handle, see telemetry.Nvml.handle)."""
    if nvml is None:
        return [Check("MIG", "off", "not checked: NVML unavailable")]
    out = []
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception as exc:
        return [Check("MIG", "off", f"NVML cannot count GPUs: {exc}")]
    for i in range(count):
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(nvml.nvmlDeviceGetHandleByIndex(i))
            state = "enabled: telemetry uses the MIG slice's own handle" if current else "disabled"
        except Exception as exc:
            state = f"not supported ({exc})"
        out.append(Check(f"MIG on GPU {i}", "ok", state))
    return out or [Check("MIG", "off", "no GPU visible to NVML")]


# ---------------------------------------------------------------- containers


def container_toolkit() -> Check:
    """Is the NVIDIA Container Toolkit there for ``docker run --gpus``?"""
    if shutil.which("docker") is None:
        return Check("NVIDIA Container Toolkit", "off", "docker is not installed: build_and_run.sh uses a local venv")
    try:
        engine = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False).returncode
    except (OSError, subprocess.TimeoutExpired):
        engine = -1
    if engine != 0:
        return Check("NVIDIA Container Toolkit", "off",
                     "no Docker engine answers ('docker info' fails): build_and_run.sh uses a local venv")
    found = [t for t in ("nvidia-ctk", "nvidia-container-cli", "nvidia-container-runtime-hook") if shutil.which(t)]
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True,
                              timeout=30, check=False)
        runtimes = proc.stdout if proc.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        runtimes = ""
    if "nvidia" in runtimes:
        found.append("the 'nvidia' Docker runtime")
    if found:
        return Check("NVIDIA Container Toolkit", "ok", "found: " + ", ".join(found))
    return Check("NVIDIA Container Toolkit", "missing",
                 "docker is installed but the toolkit is not (docker run --gpus would fail); build_and_run.sh "
                 "falls back to a local venv",
                 "install nvidia-container-toolkit and run `sudo nvidia-ctk runtime configure --runtime=docker` "
                 "(docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html)")


# ---------------------------------------------------------------- GPU backends


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnxruntime_check(cuda_build: str | None) -> Check:
    """Would ``onnxruntime`` run on the CUDA provider, and at which precision?"""
    if importlib.util.find_spec("onnxruntime") is None:
        return Check("onnxruntime (CUDA)", "missing", "onnxruntime is not installed",
                     "pip install 'densebench[gpu]' (onnxruntime-gpu)")
    import onnxruntime as ort  # heavy, optional

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return Check("onnxruntime (CUDA)", "missing",
                     f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: {', '.join(providers)}): "
                     "on a GPU 'onnxruntime' is skipped",
                     "pip uninstall -y onnxruntime && pip install 'densebench[gpu]' (onnxruntime-gpu)")
    ort_cuda = getattr(getattr(ort.capi, "build_and_package_info", None), "cuda_version", None)
    if ort_cuda and cuda_build and ort_cuda.split(".")[0] != cuda_build.split(".")[0]:
        return Check("onnxruntime (CUDA)", "mismatch",
                     f"onnxruntime-gpu {ort.__version__} is built for CUDA {ort_cuda}, torch for CUDA {cuda_build}: "
                     "its CUDA libraries may fail to load (then the session is refused, never run on the CPU)",
                     f"install the onnxruntime-gpu build for CUDA {cuda_build.split('.')[0]}")
    return Check("onnxruntime (CUDA)", "ok",
                 f"CUDAExecutionProvider (built for CUDA {ort_cuda or '?'}); 'onnxruntime' runs strict FP32 "
                 "(use_tf32=0), 'onnxruntime+tf32' allows TF32")


def tensorrt_checks(cuda_build: str | None = None) -> list[Check]:
    """Torch-TensorRT (its torch release, its TensorRT's CUDA major) and ModelOpt (with the two packages
    it imports without declaring them)."""
    trt, torch_v = _version("torch-tensorrt"), _version("torch")
    out = []
    trt_cuda = [d[-2:] for d in ("tensorrt-cu11", "tensorrt-cu12", "tensorrt-cu13") if _version(d)]
    major = cuda_build.split(".")[0] if cuda_build else None
    if trt is None:
        out.append(Check("torch-tensorrt", "missing", "not installed: 'tensorrt*' are skipped",
                         "pip install 'densebench[gpu]' (pulls the torch-tensorrt release that matches your torch)"))
    elif torch_v and trt.split(".")[:2] != torch_v.split("+")[0].split(".")[:2]:
        pair = ".".join(trt.split(".")[:2])
        out.append(Check("torch-tensorrt", "mismatch", f"torch-tensorrt {trt} is for torch {pair}, torch is {torch_v}",
                         f"pip install 'torch-tensorrt=={torch_v.split('+')[0]}'"))
    elif major and trt_cuda and major not in trt_cuda:
        out.append(Check("torch-tensorrt", "mismatch", f"TensorRT is built for CUDA {', '.join(trt_cuda)} "
                         f"(tensorrt-cu{trt_cuda[0]}), torch for CUDA {cuda_build}",
                         f"install the torch-tensorrt/TensorRT build for CUDA {major} (PyPI's torch-tensorrt "
                         "pulls tensorrt-cu13), or NVIDIA's NGC PyTorch container (docker/Dockerfile)"))
    else:
        out.append(Check("torch-tensorrt", "ok", f"{trt}; 'tensorrt' builds a strict-FP32 engine (TF32 disabled), "
                         "'tensorrt+tf32' a TF32 one, 'tensorrt+fp16' an FP16 one"))
    missing = [m for m in ("modelopt", "requests", "huggingface_hub") if importlib.util.find_spec(m) is None]
    out.append(Check("nvidia-modelopt", "missing" if missing else "ok",
                     f"cannot import {', '.join(missing)}: 'tensorrt_int8' is skipped" if missing else
                     f"{_version('nvidia-modelopt')}: INT8 calibration for 'tensorrt_int8'",
                     "pip install 'densebench[gpu]' (nvidia-modelopt, requests, huggingface_hub)" if missing else None))
    return out


def all_checks() -> dict[str, list[Check]]:
    """Every check, by section: 'cpu', 'gpu', 'container', 'backends'."""
    cuda_build = torch_cuda()[0]
    return {"cpu": cpu_checks(cpu_flags()), "gpu": gpu_checks(), "container": [container_toolkit()],
            "backends": [onnxruntime_check(cuda_build), *tensorrt_checks(cuda_build)]}


def as_json(checks: dict[str, list[Check]]) -> dict[str, list[dict[str, Any]]]:
    return {section: [asdict(c) for c in items] for section, items in checks.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m densebench.doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--require-gpu", action="store_true",
                        help="exit 3 with the reason when densebench cannot use an NVIDIA GPU here")
    parser.add_argument("--json", action="store_true", help="print every check as JSON")
    args = parser.parse_args(argv)
    if args.require_gpu:
        blocker = gpu_blocker()
        if blocker:
            print(blocker, file=sys.stderr)
            return 3
        return 0
    checks = all_checks()
    if args.json:
        print(json.dumps(as_json(checks), indent=2))
    else:
        for section, items in checks.items():
            print(f"{section}:")
            print("\n".join(c.line() for c in items))
    return 0


if __name__ == "__main__":
    sys.exit(main())
