"""``tensorrt``: Torch-TensorRT (dynamo frontend), one engine per batch size.

Precision follows the model (``use_explicit_typing``, Torch-TensorRT >= 2.10, where
``enabled_precisions`` is deprecated): ``tensorrt`` builds an FP32 engine,
``tensorrt+fp16`` an FP16 one. Older releases get ``enabled_precisions`` instead.
Engines are cached under the output directory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import (
    Backed,
    Backend,
    BuildContext,
    Plan,
    Requirements,
    Technique,
    register,
    register_backend,
    set_backend,
)

REQUIRES = Requirements(devices=frozenset({"cuda"}),
                        packages=(("torch_tensorrt", "pip install 'densebench[tensorrt]' with a CUDA torch"),))


def compile_settings(example: Any, ctx: BuildContext, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for torch_tensorrt.dynamo.compile that this installed release accepts."""
    import torch_tensorrt

    fields = {f.name for f in dataclasses.fields(torch_tensorrt.dynamo.CompilationSettings)}
    wanted: dict[str, Any] = {"min_block_size": 1, "cache_built_engines": True, "reuse_cached_engines": True}
    if ctx.cache_dir is not None:
        wanted["timing_cache_path"] = str(ctx.cache_dir / "tensorrt_timing.cache")
    if "use_explicit_typing" in fields:
        wanted["use_explicit_typing"] = True
    else:
        wanted["enabled_precisions"] = {example.dtype}
    wanted.update(extra or {})
    return {k: v for k, v in wanted.items() if k in fields}


class _PerShape:
    def __init__(self, module: Any, ctx: BuildContext, extra: dict[str, Any] | None = None):
        self.module, self.ctx, self.extra = module, ctx, extra
        self.engines: dict[tuple[int, ...], Any] = {}
        self.settings: dict[str, Any] = {}

    def build(self, x: Any) -> Any:
        import torch
        import torch_tensorrt

        with torch.inference_mode(False), torch.no_grad():
            program = torch.export.export(self.module, (x,))
            self.settings = compile_settings(x, self.ctx, self.extra)
            return torch_tensorrt.dynamo.compile(program, inputs=[x], **self.settings)

    def __call__(self, x: Any) -> Any:
        engine = self.engines.get(tuple(x.shape))
        if engine is None:
            engine = self.engines[tuple(x.shape)] = self.build(x)
        return engine(x)


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    import torch_tensorrt

    runner = _PerShape(forward, ctx)
    runner(example)
    typing = "explicit" if "use_explicit_typing" in runner.settings else "enabled_precisions"
    return Backed(forward=runner, info={"backend": "torch_tensorrt", "version": torch_tensorrt.__version__,
                                        "typing": typing})


def _check(plan: Plan) -> str | None:
    if plan.autocast:
        return "TensorRT picks kernel precision itself; use tensorrt+fp16 rather than amp"
    return None


register_backend(Backend("tensorrt", build))
register(Technique(
    rank=60,
    name="tensorrt",
    summary="Torch-TensorRT engine (dynamo frontend), precision from the model's dtype",
    apply=set_backend("tensorrt"),
    check=_check,
    requires=REQUIRES,
    kind="backend",
))
