"""Every optimization, registered by name (each module registers itself on import)."""

from . import (  # noqa: F401  (each module registers its techniques)
    amp,
    baseline,
    bf16,
    channels_last,
    compile,
    compile_max,
    cudagraphs,
    fp16,
    ftz,
    int8,
    jit,
    onnxruntime,
    openvino,
    tensorrt,
    tf32,
)
from .base import (
    BEST,
    BuildContext,
    Plan,
    Runner,
    StackError,
    Unavailable,
    build_runner,
    flags,
    names,
    plan_for,
    recommend,
    resolve_names,
    techniques,
    unavailable_reason,
)

# 'best': the candidates worth benchmarking per device kind, fastest-known stacks included.
# On CPU, FP16 has no fast kernels, plain compile/jit are dominated by the stacks below, and PT2E int8
# (minutes of ahead-of-time compiling per batch size) by openvino_int8; 'all' still runs every one.
for _name in ("channels_last", "amp", "channels_last+amp", "channels_last+bf16", "channels_last+amp+compile",
              "onnxruntime", "openvino", "openvino_int8"):
    recommend(_name, "cpu")
for _name in ("tf32", "amp", "channels_last+amp", "fp16", "channels_last+fp16", "channels_last+fp16+cudagraphs",
              "compile", "channels_last+amp+compile", "channels_last+fp16+compile_max", "jit", "tensorrt",
              "tensorrt+fp16", "tensorrt_int8", "onnxruntime"):
    recommend(_name, "cuda")

__all__ = [
    "BEST", "BuildContext", "Plan", "Runner", "StackError", "Unavailable", "build_runner", "flags", "names",
    "plan_for", "recommend", "resolve_names", "techniques", "unavailable_reason",
]
