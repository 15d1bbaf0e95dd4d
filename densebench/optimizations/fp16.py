"""``fp16``: half-precision weights and inputs (``model.half()``).

On CUDA this uses tensor cores; on CPU it runs, but usually slowly (no FP16 matrix units
before AMX-FP16), which the benchmark then shows.
"""

from .base import Plan, StackError, Technique, register


def _apply(plan: Plan) -> Plan:
    if plan.weight_dtype != "float32":
        raise StackError(f"fp16 and {plan.weight_dtype} weights exclude each other")
    return plan.with_(weight_dtype="float16")


register(Technique(
    rank=50,
    name="fp16",
    summary="FP16 weights and inputs (model.half())",
    apply=_apply,
))
