"""``bf16``: bfloat16 weights and inputs (``model.to(torch.bfloat16)``).

Same exponent range as FP32, so no overflow worries; uses BF16 matrix units where the
CPU has them (AVX512-BF16, AMX) and tensor cores on CUDA.
"""

from .base import Plan, StackError, Technique, register


def _apply(plan: Plan) -> Plan:
    if plan.weight_dtype != "float32":
        raise StackError(f"bf16 and {plan.weight_dtype} weights exclude each other")
    return plan.with_(weight_dtype="bfloat16")


register(Technique(
    rank=55,
    name="bf16",
    summary="BF16 weights and inputs",
    apply=_apply,
))
