"""``baseline``: the reference every other optimization is compared with.

Strict FP32 (TF32 off for cuDNN convolutions and matmuls), NCHW, eager PyTorch.
"""

from .base import Technique, register

register(Technique(
    rank=0,
    name="baseline",
    summary="eager PyTorch, strict FP32 (TF32 off), NCHW: the reference",
    apply=lambda plan: plan,
))
