"""``tensorrt`` and ``tensorrt_int8``: Torch-TensorRT (dynamo frontend), one engine per batch size.

``tensorrt_int8`` first inserts INT8 quantize/dequantize nodes with NVIDIA ModelOpt
(``mtq.quantize`` with ``INT8_DEFAULT_CFG``, calibrated on the dataset's calibration
images), then exports under ``export_torch_mode`` and compiles, as Torch-TensorRT's
quantization guide prescribes.

Precision follows the model (``use_explicit_typing``; from Torch-TensorRT 2.14 every engine is
strongly typed and ``enabled_precisions`` is gone; older releases get ``enabled_precisions``).
TensorRT allows TF32 for FP32 layers unless told otherwise, so ``tensorrt`` builds with
``disable_tf32=True`` (strict FP32, comparable with ``baseline``) and ``tensorrt+tf32`` without it
(recorded as ``tf32``): two different engines under two names. A release without ``disable_tf32``
is recorded as ``tf32``, which is what its engine may use.

Engines are not cached between processes: Torch-TensorRT's engine cache needs refittable
(mutable) weights, which cost speed, so the cache flags would be inert. The TensorRT timing cache
is kept under the output directory; each build works on a private copy that replaces the shared
file atomically, so parallel workers never read or leave half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import (
    Backed,
    BuildContext,
    Plan,
    Requirements,
    Unavailable,
    register_backend_technique,
)

REQUIRES = Requirements(devices=frozenset({"cuda"}),
                        packages=(("torch_tensorrt", "pip install 'densebench[gpu]' with a CUDA torch"),))


def compile_settings(example: Any, ctx: BuildContext, int8: bool = False, tf32: bool = False) -> dict[str, Any]:
    """Keyword arguments for torch_tensorrt.dynamo.compile that this installed release accepts.

    Releases with explicit typing take precisions from the (quantized) graph; older ones need
    them listed, INT8 included for a ModelOpt-quantized module. TF32 is disabled unless ``tf32``.
    """
    import torch  # heavy, optional
    import torch_tensorrt  # heavy, optional

    fields = {f.name for f in dataclasses.fields(torch_tensorrt.dynamo.CompilationSettings)}
    wanted: dict[str, Any] = {"min_block_size": 1, "disable_tf32": not tf32}
    if "use_explicit_typing" in fields:
        wanted["use_explicit_typing"] = True
    else:
        wanted["enabled_precisions"] = {example.dtype, torch.int8} if int8 else {example.dtype}
    return {k: v for k, v in wanted.items() if k in fields}


def engine_precision(example: Any, settings: dict[str, Any], int8: bool = False) -> str | None:
    """What the engine may really run at: int8, fp16/bf16 (from the model), tf32 or fp32."""
    import torch  # heavy, optional

    if int8:
        return "int8"
    if example.dtype != torch.float32:
        return None  # the plan's fp16 / bf16
    return "fp32" if settings.get("disable_tf32") else "tf32"


@contextlib.contextmanager
def private_timing_cache(ctx: BuildContext) -> Iterator[Path | None]:
    """A per-process copy of the shared TensorRT timing cache; it replaces the shared file atomically
    after the build, so parallel workers never see a half-written cache."""
    shared = ctx.cache("tensorrt")
    if shared is None:
        yield None
        return
    target = shared / "timing.cache"
    private = shared / f"timing.cache.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        shutil.copyfile(target, private)
    try:
        yield private
        if private.is_file() and private.stat().st_size:
            os.replace(private, target)
    finally:
        private.unlink(missing_ok=True)


class _PerShape:
    def __init__(self, module: Any, ctx: BuildContext, int8: bool = False, export_context: Any = None,
                 tf32: bool = False):
        self.module, self.ctx, self.int8, self.tf32 = module, ctx, int8, tf32
        self.export_context = export_context or contextlib.nullcontext
        self.engines: dict[tuple[int, ...], Any] = {}
        self.settings: dict[str, Any] = {}

    def build(self, x: Any) -> Any:
        import torch  # heavy, optional
        import torch_tensorrt  # heavy, optional

        with torch.inference_mode(False), torch.no_grad(), self.export_context(), \
                private_timing_cache(self.ctx) as timing_cache:
            x = x.clone()  # a normal tensor: export cannot trace inference tensors
            program = torch.export.export(self.module, (x,))
            self.settings = compile_settings(x, self.ctx, self.int8, self.tf32)
            extra = {"timing_cache_path": str(timing_cache)} if timing_cache is not None else {}
            fields = {f.name for f in dataclasses.fields(torch_tensorrt.dynamo.CompilationSettings)}
            extra = {k: v for k, v in extra.items() if k in fields}
            return torch_tensorrt.dynamo.compile(program, inputs=[x], **self.settings, **extra)

    def __call__(self, x: Any) -> Any:
        engine = self.engines.get(tuple(x.shape))
        if engine is None:
            engine = self.engines[tuple(x.shape)] = self.build(x)
        return engine(x)


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    import torch_tensorrt  # heavy, optional

    runner = _PerShape(forward, ctx, tf32=plan.tf32)
    runner(example)
    typing = "explicit" if "use_explicit_typing" in runner.settings else "enabled_precisions"
    return Backed(forward=runner, fixed_shapes=True, precision=engine_precision(example, runner.settings),
                  info={"backend": "torch_tensorrt", "version": torch_tensorrt.__version__, "typing": typing,
                        "tf32_allowed": not runner.settings.get("disable_tf32", False)})


def _modelopt() -> tuple[Any, Any]:
    """(modelopt.torch.quantization, export_torch_mode); Unavailable with an install hint when ModelOpt or a
    package it imports without declaring it (requests, huggingface_hub in 0.47) is missing."""
    try:
        import modelopt.torch.quantization as mtq  # heavy, optional
        from modelopt.torch.quantization.utils import export_torch_mode  # heavy, optional
    except ImportError as exc:
        raise Unavailable(f"nvidia-modelopt cannot be imported ({exc}); pip install 'densebench[gpu]' "
                          "(nvidia-modelopt with requests and huggingface_hub)") from exc
    return mtq, export_torch_mode


def build_int8(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    import torch  # heavy, optional
    import torch_tensorrt  # heavy, optional

    mtq, export_torch_mode = _modelopt()

    module = getattr(forward, "module", forward)
    batches = ctx.calibration_batches(len(example))

    def calibrate(model: Any) -> None:
        for batch in batches:
            model(batch.to(ctx.device, example.dtype))

    with torch.inference_mode(False), torch.no_grad():
        mtq.quantize(module, mtq.INT8_DEFAULT_CFG, forward_loop=calibrate)
    runner = _PerShape(module, ctx, int8=True, export_context=export_torch_mode)
    runner(example)
    return Backed(forward=runner, fixed_shapes=True, precision="int8",
                  info={"backend": "torch_tensorrt", "version": torch_tensorrt.__version__,
                        "quantizer": "NVIDIA ModelOpt INT8_DEFAULT_CFG", "calibration_images": len(ctx.calibration)})


# nvidia-modelopt 0.47 imports requests and huggingface_hub without declaring them as dependencies.
MODELOPT = tuple((m, "pip install 'densebench[gpu]' (nvidia-modelopt, requests, huggingface_hub)")
                 for m in ("modelopt", "requests", "huggingface_hub"))


def _check(plan: Plan) -> str | None:
    if plan.autocast:
        return "TensorRT picks kernel precision itself; use tensorrt+fp16 rather than amp"
    return None


def _check_int8(plan: Plan) -> str | None:
    if plan.autocast or plan.weight_dtype != "float32":
        return "tensorrt_int8 quantizes the FP32 model; it does not stack with amp, fp16 or bf16"
    return None


register_backend_technique("tensorrt", build, rank=60, requires=REQUIRES, check=_check,
                           summary="Torch-TensorRT engine (dynamo frontend), precision from the model's dtype")
register_backend_technique("tensorrt_int8", build_int8, rank=62, check=_check_int8,
                           requires=Requirements(devices=frozenset({"cuda"}), packages=(
                               REQUIRES.packages[0], *MODELOPT)),
                           summary="Torch-TensorRT INT8 engine from a ModelOpt-calibrated model")
