"""``compile_max``: ``torch.compile`` in ``max-autotune`` mode.

Inductor benchmarks kernel choices (Triton/CPP GEMM templates) at compile time and, on
CUDA, replays the result with CUDA graphs. Much longer compile, sometimes faster kernels.
"""

from .base import Plan, Technique, register, set_backend


def _apply(plan: Plan) -> Plan:
    return set_backend("compile")(plan).with_option("compile_mode", "max-autotune")


register(Technique(
    rank=35,
    name="compile_max",
    summary="torch.compile mode=max-autotune (CUDA graphs on CUDA)",
    apply=_apply,
    kind="backend",
))
