"""``jit``: TorchScript trace, ``torch.jit.freeze`` and ``optimize_for_inference``.

The trace is specialised to the example's shape; a new batch size is traced again
(paid in that batch size's warm-up), so each batch size runs its own frozen graph.
"""

from __future__ import annotations

import warnings
from typing import Any

from .base import Backed, Backend, BuildContext, Plan, Technique, register, register_backend, set_backend


class _PerShape:
    """Trace + freeze + optimize once per input shape, then call the frozen graph."""

    def __init__(self, forward: Any):
        self.forward = forward
        self.graphs: dict[tuple[int, ...], Any] = {}

    def trace(self, x: Any) -> Any:
        import torch

        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript deprecation notices
            example = x.clone()
            traced = torch.jit.trace(self.forward, example, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        return frozen

    def __call__(self, x: Any) -> Any:
        graph = self.graphs.get(tuple(x.shape))
        if graph is None:
            graph = self.graphs[tuple(x.shape)] = self.trace(x)
        return graph(x)


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    runner = _PerShape(forward)
    runner(example)
    return Backed(forward=runner, info={"backend": "torchscript", "trace": True, "freeze": True,
                                        "optimize_for_inference": True})


register_backend(Backend("jit", build))
register(Technique(
    rank=40,
    name="jit",
    summary="TorchScript trace + freeze + optimize_for_inference",
    apply=set_backend("jit"),
    kind="backend",
))
