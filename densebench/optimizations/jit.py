"""``jit``: TorchScript trace, ``torch.jit.freeze`` and ``optimize_for_inference``.

The trace is specialised to the example's shape; a new batch size is traced again
(paid in that batch size's warm-up), so each batch size runs its own frozen graph.
"""

from __future__ import annotations

import warnings
from typing import Any

from .base import Backed, BuildContext, Plan, register_backend_technique


class _PerShape:
    """Trace + freeze + optimize once per input shape, then call the frozen graph."""

    def __init__(self, forward: Any):
        self.forward = forward
        self.graphs: dict[tuple[int, ...], Any] = {}

    def trace(self, x: Any) -> Any:
        import torch  # heavy, optional

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


def release_torchscript_state(runner: _PerShape) -> None:
    """TorchScript keeps every traced module type (with its frozen weights as constants) in global
    registries for the life of the process: about one model's worth of memory per trace. Clear them
    when the runner is released, so a long run does not grow with every batch size."""
    import torch  # heavy, optional

    runner.graphs.clear()
    clear_registry = getattr(torch._C, "_jit_clear_class_registry", None)
    if clear_registry is not None:
        clear_registry()
    recursive = torch.jit._recursive
    if hasattr(recursive, "ConcreteTypeStore"):
        recursive.concrete_type_store = recursive.ConcreteTypeStore()
    torch.jit._state._clear_class_state()


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    runner = _PerShape(forward)
    runner(example)
    return Backed(forward=runner, fixed_shapes=True, cleanup=lambda: release_torchscript_state(runner),
                  info={"backend": "torchscript", "trace": True, "freeze": True, "optimize_for_inference": True})


register_backend_technique("jit", build, rank=40, summary="TorchScript trace + freeze + optimize_for_inference")
