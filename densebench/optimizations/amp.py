"""``amp``: automatic mixed precision with ``torch.autocast``.

FP32 weights; each op runs in FP16 on CUDA or BF16 on CPU where autocast deems it safe.
"""

from .base import Plan, Technique, register


def _check(plan: Plan) -> str | None:
    if plan.weight_dtype != "float32":
        return f"amp autocasts from FP32 weights, but {plan.weight_dtype} weights were asked for too"
    return None


register(Technique(
    rank=10,
    name="amp",
    summary="torch.autocast mixed precision: FP16 on CUDA, BF16 on CPU, FP32 weights",
    apply=lambda plan: plan.with_(autocast=True),
    check=_check,
))
