"""``int8``: post-training static INT8 quantization with PT2E, then ``torch.compile``.

CPU: ``torch.export`` -> torchao's ``X86InductorQuantizer`` (per-channel weights,
per-tensor activations) -> calibration on the dataset's calibration images (disjoint
from the parity images) -> ``convert_pt2e`` -> ``torch.compile`` with weight freezing,
which lowers the quantize/dequantize patterns to oneDNN INT8 kernels (VNNI/AMX).
Stacked with ``amp`` the non-quantized ops run in BF16 (Inductor's int8-mixed-bf16).

The quantized program is saved under the cache directory (``torch.export.save``), so a
second run skips export and calibration. On CUDA there is no INT8 convolution path in
PyTorch itself: use ``tensorrt_int8`` there.
"""

from __future__ import annotations

import hashlib
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

REQUIRES = Requirements(devices=frozenset({"cpu"}),
                        packages=(("torchao", "pip install 'densebench[int8]'"),))


def calibration_key(ctx: BuildContext, example: Any, extra: str = "") -> str:
    """Cache key: weights, input shape, calibration images, torch version."""
    import torch

    digest = hashlib.sha256()
    digest.update(ctx.model_digest.encode())
    digest.update(str(tuple(example.shape)).encode())
    digest.update(torch.__version__.encode())
    digest.update(extra.encode())
    if ctx.calibration is not None:
        digest.update(ctx.calibration.numpy().tobytes())
    return digest.hexdigest()[:16]


def quantize(module: Any, example: Any, ctx: BuildContext) -> tuple[Any, bool]:
    """(quantized GraphModule, whether it came from the cache)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    cache = ctx.cache("int8")
    key = calibration_key(ctx, example[:1], extra=str(example.is_contiguous()))
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


class FrozenCompile:
    """Compile each new input shape with Inductor's weight freezing on.

    The INT8 lowering (quantize/dequantize patterns -> oneDNN qconv) runs only when freezing
    is on in the global Inductor config while the graph compiles; ``options={"freezing": True}``
    is not enough for it. The patch is active only for the call that compiles a new shape
    (warm-up), so timed rounds pay one dictionary lookup.
    """

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self.shapes: set[tuple[int, ...]] = set()

    def __call__(self, x: Any) -> Any:
        shape = tuple(x.shape)
        if shape in self.shapes:
            return self.compiled(x)
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            out = self.compiled(x)
        self.shapes.add(shape)
        return out


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    import torch

    module = forward.module if hasattr(forward, "module") else forward
    quantized, cached = quantize(module, example, ctx)
    if plan.autocast:
        inner = quantized

        def quantized(x: Any) -> Any:  # int8-mixed-bf16: non-quantized ops in BF16
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return inner(x)

    compiled = FrozenCompile(torch.compile(quantized, backend="inductor", dynamic=False))
    compiled(example)
    precision = "int8+bf16" if plan.autocast else "int8"
    return Backed(forward=compiled, precision=precision,
                  info={"quantizer": "torchao X86InductorQuantizer (PT2E, static, per-channel weights)",
                        "calibration_images": 0 if ctx.calibration is None else len(ctx.calibration),
                        "quantized_from_cache": cached, "backend": "inductor", "freezing": True})


def _check(plan: Plan) -> str | None:
    if plan.weight_dtype != "float32":
        return "int8 quantizes the FP32 model; use amp for BF16 in the non-quantized ops"
    return None


register_backend(Backend("int8", build))
register(Technique(
    rank=70,
    name="int8",
    summary="PT2E static INT8 (torchao X86InductorQuantizer, calibrated) + torch.compile; CPU",
    apply=set_backend("int8"),
    check=_check,
    requires=REQUIRES,
    kind="backend",
))
