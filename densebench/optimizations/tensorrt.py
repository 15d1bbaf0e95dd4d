"""``tensorrt`` and ``tensorrt_int8``: Torch-TensorRT (dynamo frontend), one engine per batch size.

``tensorrt_int8`` first inserts INT8 quantize/dequantize nodes with NVIDIA ModelOpt
(``mtq.quantize`` with ``INT8_DEFAULT_CFG``, calibrated on the dataset's calibration
images), then exports under ``export_torch_mode`` and compiles, as Torch-TensorRT's
quantization guide prescribes.

Precision follows the model (``use_explicit_typing``, Torch-TensorRT >= 2.10, where
``enabled_precisions`` is deprecated): ``tensorrt`` builds an FP32 engine,
``tensorrt+fp16`` an FP16 one. Older releases get ``enabled_precisions`` instead.
Engines are cached under the output directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from .base import (
    Backed,
    BuildContext,
    Plan,
    Requirements,
    register_backend_technique,
)

REQUIRES = Requirements(devices=frozenset({"cuda"}),
                        packages=(("torch_tensorrt", "pip install 'densebench[tensorrt]' with a CUDA torch"),))


def compile_settings(example: Any, ctx: BuildContext, int8: bool = False) -> dict[str, Any]:
    """Keyword arguments for torch_tensorrt.dynamo.compile that this installed release accepts.

    Releases with explicit typing take precisions from the (quantized) graph; older ones need
    them listed, INT8 included for a ModelOpt-quantized module.
    """
    import torch  # heavy, optional
    import torch_tensorrt  # heavy, optional

    fields = {f.name for f in dataclasses.fields(torch_tensorrt.dynamo.CompilationSettings)}
    wanted: dict[str, Any] = {"min_block_size": 1, "cache_built_engines": True, "reuse_cached_engines": True}
    if ctx.cache_dir is not None:
        wanted["timing_cache_path"] = str(ctx.cache_dir / "tensorrt_timing.cache")
    if "use_explicit_typing" in fields:
        wanted["use_explicit_typing"] = True
    else:
        wanted["enabled_precisions"] = {example.dtype, torch.int8} if int8 else {example.dtype}
    return {k: v for k, v in wanted.items() if k in fields}


class _PerShape:
    def __init__(self, module: Any, ctx: BuildContext, int8: bool = False, export_context: Any = None):
        self.module, self.ctx, self.int8 = module, ctx, int8
        self.export_context = export_context or contextlib.nullcontext
        self.engines: dict[tuple[int, ...], Any] = {}
        self.settings: dict[str, Any] = {}

    def build(self, x: Any) -> Any:
        import torch  # heavy, optional
        import torch_tensorrt  # heavy, optional

        with torch.inference_mode(False), torch.no_grad(), self.export_context():
            x = x.clone()  # a normal tensor: export cannot trace inference tensors
            program = torch.export.export(self.module, (x,))
            self.settings = compile_settings(x, self.ctx, self.int8)
            return torch_tensorrt.dynamo.compile(program, inputs=[x], **self.settings)

    def __call__(self, x: Any) -> Any:
        engine = self.engines.get(tuple(x.shape))
        if engine is None:
            engine = self.engines[tuple(x.shape)] = self.build(x)
        return engine(x)


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    import torch_tensorrt  # heavy, optional

    runner = _PerShape(forward, ctx)
    runner(example)
    typing = "explicit" if "use_explicit_typing" in runner.settings else "enabled_precisions"
    return Backed(forward=runner, info={"backend": "torch_tensorrt", "version": torch_tensorrt.__version__,
                                        "typing": typing})


def build_int8(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    import modelopt.torch.quantization as mtq  # heavy, optional
    import torch  # heavy, optional
    import torch_tensorrt  # heavy, optional
    from modelopt.torch.quantization.utils import export_torch_mode  # heavy, optional

    module = getattr(forward, "module", forward)
    batches = ctx.calibration_batches(len(example))

    def calibrate(model: Any) -> None:
        for batch in batches:
            model(batch.to(ctx.device, example.dtype))

    with torch.inference_mode(False), torch.no_grad():
        mtq.quantize(module, mtq.INT8_DEFAULT_CFG, forward_loop=calibrate)
    runner = _PerShape(module, ctx, int8=True, export_context=export_torch_mode)
    runner(example)
    return Backed(forward=runner, precision="int8",
                  info={"backend": "torch_tensorrt", "version": torch_tensorrt.__version__,
                        "quantizer": "NVIDIA ModelOpt INT8_DEFAULT_CFG", "calibration_images": len(ctx.calibration)})


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
                               REQUIRES.packages[0], ("modelopt", "pip install nvidia-modelopt"))),
                           summary="Torch-TensorRT INT8 engine from a ModelOpt-calibrated model")
