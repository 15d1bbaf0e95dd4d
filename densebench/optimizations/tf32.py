"""``tf32``: allow TensorFloat-32 in cuDNN convolutions and cuBLAS matmuls (CUDA, Ampere+).

FP32 weights and inputs; the matrix units round the mantissa to 10 bits. ``baseline``
turns TF32 off explicitly, so this shows what PyTorch's cuDNN default (TF32 on for
convolutions) buys.
"""

from .base import Plan, Requirements, Technique, register


def _check(plan: Plan) -> str | None:
    if plan.weight_dtype != "float32":
        return f"tf32 only changes FP32 math, but the weights are {plan.weight_dtype}"
    return None


register(Technique(
    rank=25,
    name="tf32",
    summary="TF32 allowed for cuDNN convolutions and matmuls (CUDA)",
    apply=lambda plan: plan.with_(tf32=True),
    check=_check,
    requires=Requirements(devices=frozenset({"cuda"})),
))
