"""``int8``: post-training static INT8 quantization with PT2E, compiled by Inductor.

CPU: ``torch.export`` -> torchao's ``X86InductorQuantizer`` (per-channel weights,
per-tensor activations) -> calibration on the dataset's calibration images (disjoint
from the parity images) -> ``convert_pt2e`` -> Inductor with weight freezing, which
lowers the quantize/dequantize patterns to oneDNN INT8 kernels (VNNI/AMX). Stacked with
``amp`` the non-quantized ops run in BF16 (Inductor's int8-mixed-bf16).

Inductor compiles it ahead of time (AOTInductor), one package per batch size, because
with weight freezing its just-in-time caches do not apply: the quantized program and each
package are stored under the cache directory, so a second run loads instead of compiling.
On CUDA there is no INT8 convolution path in PyTorch itself: use ``tensorrt_int8`` there.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .base import (
    Backed,
    BuildContext,
    Plan,
    Requirements,
    register_backend_technique,
)

REQUIRES = Requirements(devices=frozenset({"cpu"}),
                        packages=(("torchao", "pip install 'densebench[int8]'"),))


def quantize(module: Any, example: Any, ctx: BuildContext) -> tuple[Any, bool]:
    """(quantized GraphModule, whether it came from the cache)."""
    import torch  # heavy, optional
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # heavy, optional
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (  # heavy, optional
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    cache = ctx.cache("int8")
    key = ctx.cache_key(example[:1], extra=str(example.is_contiguous()))
    path = cache / f"densenet121-pt2e-{key}.pt2" if cache else None
    if path is not None and path.is_file():
        return torch.export.load(str(path)).module(), True
    # A dynamic batch dimension, so one quantized program serves every batch size
    # (export needs an example of at least 2 to keep the dimension symbolic).
    sample = example if len(example) > 1 else example.repeat(2, 1, 1, 1)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=65536)},)
    with torch.inference_mode(False), torch.no_grad():
        sample = sample.clone()  # a normal tensor: export cannot trace inference tensors
        exported = torch.export.export(module, (sample,), dynamic_shapes=dynamic).module()
        quantizer = X86InductorQuantizer()
        quantizer.set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        for batch in ctx.calibration_batches(max(2, len(example))):
            prepared(batch.to(example.device))
        converted = convert_pt2e(prepared)
        if path is not None:
            torch.export.save(torch.export.export(converted, (sample,), dynamic_shapes=dynamic), str(path))
    return converted, False


def mixed_bf16(inner: Any) -> Any:
    """The quantized program under BF16 autocast (int8-mixed-bf16), as a module to export."""
    import torch  # heavy, optional

    class MixedBF16(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(x)

    return MixedBF16()


class AOTPackages:
    """One AOTInductor package per input shape: loaded from the cache, or compiled (with weight
    freezing) and stored there. A timed round is one dictionary lookup and the package call."""

    def __init__(self, program: Any, ctx: BuildContext, key: str):
        self.program, self.ctx, self.key = program, ctx, key
        self.loaded: dict[tuple[int, ...], Any] = {}
        self.from_cache: dict[int, bool] = {}

    def load(self, x: Any) -> Any:
        import torch  # heavy, optional
        import torch._inductor.config as inductor_config  # heavy, optional

        cache = self.ctx.cache("int8") or Path(tempfile.mkdtemp(prefix="densebench-int8-"))
        shape = tuple(x.shape)
        package = cache / f"densenet121-int8-{self.key}-{'x'.join(map(str, shape))}.pt2"
        self.from_cache[shape[0]] = package.is_file()
        if not package.is_file():
            with torch.inference_mode(False), torch.no_grad():
                exported = torch.export.export(self.program, (x.clone(),))
                with inductor_config.patch(freezing=True):
                    tmp = package.with_suffix(".tmp.pt2")
                    torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp))
                    tmp.replace(package)
        return torch._inductor.aoti_load_package(str(package))

    def __call__(self, x: Any) -> Any:
        runner = self.loaded.get(tuple(x.shape))
        if runner is None:
            runner = self.loaded[tuple(x.shape)] = self.load(x)
        return runner(x)


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    module = forward.module if hasattr(forward, "module") else forward
    quantized, cached = quantize(module, example, ctx)
    program = mixed_bf16(quantized) if plan.autocast else quantized
    key = ctx.cache_key(example[:1], extra=f"{example.is_contiguous()}-amp{plan.autocast}")
    packages = AOTPackages(program, ctx, key)
    packages(example)
    precision = "int8+bf16" if plan.autocast else "int8"
    return Backed(forward=packages, fixed_shapes=True, precision=precision,
                  info={"quantizer": "torchao X86InductorQuantizer (PT2E, static, per-channel weights)",
                        "calibration_images": 0 if ctx.calibration is None else len(ctx.calibration),
                        "quantized_from_cache": cached, "compiler": "AOTInductor (weight freezing)",
                        "package_from_cache": packages.from_cache.get(len(example))})


def _check(plan: Plan) -> str | None:
    if plan.weight_dtype != "float32":
        return "int8 quantizes the FP32 model; use amp for BF16 in the non-quantized ops"
    return None


register_backend_technique("int8", build, rank=70, requires=REQUIRES, check=_check,
                           summary="PT2E static INT8 (torchao X86InductorQuantizer, calibrated), AOTInductor; CPU")
