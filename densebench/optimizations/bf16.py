"""``bf16``: bfloat16 weights and inputs (``model.to(torch.bfloat16)``).

Same exponent range as FP32, so no overflow worries; uses BF16 matrix units where the
CPU has them (AVX512-BF16, AMX) and tensor cores on CUDA.
"""

from .base import Technique, register, weight_dtype

register(Technique(
    rank=55,
    name="bf16",
    summary="BF16 weights and inputs",
    apply=weight_dtype("bf16", "bfloat16"),
))
