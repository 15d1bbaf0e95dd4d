"""``compile``: ``torch.compile`` with the Inductor backend.

Shapes are static (``dynamic=False``): each batch size is specialised, as a fixed-shape
deployment would be, and the recompile for a new batch size is paid in that batch
size's warm-up (``warmup_s``), never in the timed rounds. On CPU, Inductor's
``freezing`` folds the weights into the graph (prepacked oneDNN weights), which is
what makes compiled convolutions fast there. Compiled artefacts are cached under the
output directory (``TORCHINDUCTOR_CACHE_DIR``) so a second run skips most of the work.
"""

from __future__ import annotations

from typing import Any

from .base import Backed, BuildContext, Plan, register_backend_technique


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    import torch  # heavy, optional

    requested = plan.option("compile_mode") or ("reduce-overhead" if plan.cudagraphs else None)
    mode = requested
    options: dict[str, Any] = {}
    if ctx.device.type == "cpu":
        options["freezing"] = True
    # torch.compile takes either a mode or options, not both: fold freezing into the mode's options.
    if mode and options:
        options = {**torch._inductor.list_mode_options(mode), **options}
        mode = None
    compiled = torch.compile(forward, backend="inductor", mode=mode, dynamic=False, fullgraph=True,
                             options=options or None)
    compiled(example)  # compile now; setup time, not timed
    # Dynamo's code cache keeps the compiled graphs (with their frozen weights) alive after the
    # runner is dropped; reset it when the runner is released so memory does not grow run-long.
    return Backed(forward=compiled, fixed_shapes=True, cleanup=torch._dynamo.reset,
                  info={"backend": "inductor", "mode": requested or "default", "dynamic": False,
                        **{k: v for k, v in options.items() if isinstance(v, (bool, int, str))}})


register_backend_technique("compile", build, rank=30,
                           summary="torch.compile (Inductor, static shapes; weight freezing on CPU)")
