"""``fp16``: half-precision weights and inputs (``model.half()``).

On CUDA this uses tensor cores; on CPU it runs, but usually slowly (no FP16 matrix units
before AMX-FP16), which the benchmark then shows.
"""

from .base import Technique, register, weight_dtype

register(Technique(
    rank=50,
    name="fp16",
    summary="FP16 weights and inputs (model.half())",
    apply=weight_dtype("fp16", "float16"),
))
