"""Every optimization, registered by name (each module registers itself on import)."""

from . import amp, baseline, channels_last, compile, fp16, jit, tensorrt  # noqa: F401  (registers)
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
for _name in ("amp", "channels_last", "channels_last+amp", "jit", "compile", "channels_last+amp+compile"):
    recommend(_name, "cpu")
for _name in ("amp", "channels_last+amp", "fp16", "channels_last+fp16", "compile", "channels_last+amp+compile",
              "tensorrt", "tensorrt+fp16"):
    recommend(_name, "cuda")

__all__ = [
    "BEST", "BuildContext", "Plan", "Runner", "StackError", "Unavailable", "build_runner", "flags", "names",
    "plan_for", "recommend", "resolve_names", "techniques", "unavailable_reason",
]
