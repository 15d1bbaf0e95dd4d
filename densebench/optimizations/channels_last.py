"""``channels_last``: NHWC memory format for weights and inputs.

Convolution libraries (cuDNN, oneDNN) have faster NHWC kernels, tensor cores included.
"""

from .base import Technique, register

register(Technique(
    rank=20,
    name="channels_last",
    summary="NHWC (channels_last) weights and inputs",
    apply=lambda plan: plan.with_(memory_format="channels_last"),
))
