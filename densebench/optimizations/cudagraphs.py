"""``cudagraphs``: capture the forward pass once per batch size as a CUDA graph, then replay it.

Removes per-kernel launch overhead, which dominates at small batch sizes. Alone it
captures the eager model (``torch.cuda.CUDAGraph``); stacked with ``compile`` it selects
Inductor's ``reduce-overhead`` mode (CUDA graph trees) instead. The graph reads a static
input buffer: the runner's untimed ``prepare`` copies the batch into it, so a timed
round is only ``graph.replay()``.
"""

from __future__ import annotations

from typing import Any

from .base import Backed, BuildContext, Plan, Requirements, Technique, device_batch, register, torch_memory_format


class Graphed:
    """One captured graph per input shape, with its static input and output."""

    def __init__(self, forward: Any, device: Any, dtype: Any, memory_format: Any, warmup: int = 3):
        self.forward, self.device, self.dtype, self.memory_format = forward, device, dtype, memory_format
        self.warmup = warmup
        self.graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}

    def capture(self, x: Any) -> tuple[Any, Any, Any]:
        import torch  # heavy, optional

        static_in = x.clone(memory_format=self.memory_format)
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm up on a side stream, as capture requires
            for _ in range(self.warmup):
                self.forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.forward(static_in)
        torch.cuda.synchronize(self.device)
        entry = self.graphs[tuple(x.shape)] = (graph, static_in, static_out)
        return entry

    def prepare(self, batch: Any) -> Any:
        x = device_batch(batch, self.device, self.dtype, self.memory_format)
        entry = self.graphs.get(tuple(x.shape)) or self.capture(x)
        entry[1].copy_(x)
        return entry[1]

    def __call__(self, x: Any) -> Any:
        graph, static_in, static_out = self.graphs.get(tuple(x.shape)) or self.capture(x)
        if x.data_ptr() != static_in.data_ptr():  # not prepared by us: copy (never in timed rounds)
            static_in.copy_(x)
        graph.replay()
        return static_out


def _wrap(backed: Backed, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    if plan.backend != "eager":  # compile handles it itself (reduce-overhead mode)
        return backed
    graphed = Graphed(backed.forward, ctx.device, example.dtype, torch_memory_format(plan))
    graphed.capture(example)
    return Backed(forward=graphed, fixed_shapes=True, prepare=graphed.prepare, precision=backed.precision,
                  info={**backed.info, "cuda_graph": "torch.cuda.CUDAGraph"})


def _check(plan: Plan) -> str | None:
    if plan.backend not in ("eager", "compile"):
        return f"cudagraphs captures the eager or compiled model, not the {plan.backend} backend"
    if plan.option("compile_mode"):
        return "compile_max already uses CUDA graphs on CUDA"
    return None


register(Technique(
    rank=65,
    name="cudagraphs",
    summary="CUDA graph capture/replay (eager), or Inductor reduce-overhead mode with compile",
    apply=lambda plan: plan.with_(cudagraphs=True),
    check=_check,
    wrap=_wrap,
    requires=Requirements(devices=frozenset({"cuda"})),
))
