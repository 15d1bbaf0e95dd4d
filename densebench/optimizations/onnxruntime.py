"""``onnxruntime``: export to ONNX (``torch.onnx.export``, dynamo exporter) and run it in ONNX Runtime.

One export with a dynamic batch dimension serves every batch size; it is cached under
the output directory. On CUDA the CUDA execution provider is used with I/O binding to
device tensors, so no host copy happens in a timed round (needs ``onnxruntime-gpu``);
on CPU the CPU provider runs with torch's thread count and all graph optimizations.

Precision on CUDA: the CUDA provider allows TF32 by default (its ``use_tf32`` option); ``onnxruntime``
turns it off, so it is strict FP32 like ``baseline``, and ``onnxruntime+tf32`` turns it on and is
recorded as ``tf32``. When the CUDA provider's libraries fail to load, ONNX Runtime quietly makes a
CPU session: the session's providers are checked and the optimization is skipped with the reason.
"""

from __future__ import annotations

from typing import Any

from .base import (
    Backed,
    BuildContext,
    Plan,
    Requirements,
    Unavailable,
    host_numpy_io,
    register_backend_technique,
)

REQUIRES = Requirements(packages=(("onnxruntime", "pip install 'densebench[onnxruntime]'"),
                                  ("onnx", "pip install 'densebench[onnxruntime]'"),
                                  ("onnxscript", "pip install 'densebench[onnxruntime]'")),
                        probe=lambda device_type: cuda_provider_missing() if device_type == "cuda" else None)


def cuda_provider_missing() -> str | None:
    """Why the installed onnxruntime cannot run on CUDA (no CUDAExecutionProvider), or None."""
    import onnxruntime as ort  # heavy, optional

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        return None
    return (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: {', '.join(providers)}); "
            "pip uninstall -y onnxruntime && pip install 'densebench[gpu]' (onnxruntime-gpu)")


def cuda_session(path: str, options: Any, device_index: int, tf32: bool) -> Any:
    """An InferenceSession on the CUDA provider, TF32 as asked; Unavailable if ONNX Runtime fell back to the CPU."""
    import onnxruntime as ort  # heavy, optional

    provider = ("CUDAExecutionProvider", {"device_id": device_index, "cudnn_conv_algo_search": "EXHAUSTIVE",
                                          "use_tf32": int(tf32)})
    session = ort.InferenceSession(path, options, providers=[provider])
    if "CUDAExecutionProvider" not in session.get_providers():
        raise Unavailable("onnxruntime could not load its CUDA provider (its CUDA/cuDNN libraries failed to load; "
                          f"the session would run on {', '.join(session.get_providers())}): check that the "
                          "onnxruntime-gpu build matches torch's CUDA (densebench env)")
    return session


def _check(plan: Plan) -> str | None:
    extras = [p for p in plan.parts if p not in ("onnxruntime", "tf32")]
    if extras:
        return ("onnxruntime converts the FP32 model itself and chooses its own layout; it does not stack with "
                f"{', '.join(extras)} (only with tf32, on CUDA)")
    return None


def export_onnx(module: Any, example: Any, ctx: BuildContext) -> tuple[str, bool]:
    """(path of the ONNX file, whether it came from the cache). Dynamic batch, FP32."""
    import tempfile
    from pathlib import Path

    import torch  # heavy, optional

    cache = ctx.cache("onnx") or Path(tempfile.mkdtemp(prefix="densebench-onnx-"))
    size = example.shape[-1]
    path = cache / f"densenet121-{ctx.model_digest}-{size}px-torch{torch.__version__.split('+')[0]}.onnx"
    if path.is_file():
        return str(path), True
    cpu_module = module.float().cpu() if next(module.parameters()).device.type != "cpu" else module
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(cpu_module, (example.float().cpu().clone(),), dynamo=True,
                                    dynamic_shapes=({0: batch},), optimize=True)
    tmp = path.with_suffix(".tmp.onnx")
    program.save(str(tmp))
    tmp.replace(path)
    return str(path), False


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    import numpy as np
    import onnxruntime as ort  # heavy, optional
    import torch  # heavy, optional

    module = getattr(forward, "module", forward)
    if ctx.device.type == "cuda" and cuda_provider_missing():
        raise Unavailable(cuda_provider_missing())
    path, cached = export_onnx(module, example, ctx)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    if ctx.device.type == "cuda":
        session = cuda_session(path, options, ctx.device.index or 0, plan.tf32)
    else:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    info = {"backend": "onnxruntime", "version": ort.__version__, "provider": session.get_providers()[0],
            "onnx_file": path, "exported_from_cache": cached, "graph_optimization": "ORT_ENABLE_ALL"}

    if ctx.device.type == "cuda":
        # Inputs arrive as the default Runner.prepare makes them: on the device, float32, contiguous.
        bindings: dict[tuple[int, ...], tuple[Any, Any]] = {}
        index = ctx.device.index or 0

        def run(x: Any) -> Any:
            key = tuple(x.shape)
            if key not in bindings:  # the output buffer stays bound to its IOBinding across runs
                binding, out = session.io_binding(), torch.empty((x.shape[0], 1000), device=ctx.device)
                binding.bind_output(output_name, "cuda", index, np.float32, list(out.shape), out.data_ptr())
                bindings[key] = (binding, out)
            binding, out = bindings[key]
            binding.bind_input(input_name, "cuda", index, np.float32, list(x.shape), x.data_ptr())
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return out

        run(example)
        info["use_tf32"] = plan.tf32
        return Backed(forward=run, precision="tf32" if plan.tf32 else "fp32", info=info)

    prepare_cpu, to_logits = host_numpy_io()

    def run_cpu(x: Any) -> Any:
        return session.run([output_name], {input_name: x})[0]

    run_cpu(prepare_cpu(example))
    return Backed(forward=run_cpu, prepare=prepare_cpu, to_logits=to_logits, precision="fp32", info=info)


register_backend_technique("onnxruntime", build, rank=80, requires=REQUIRES, check=_check,
                           summary="ONNX export (dynamo) + ONNX Runtime (CUDA provider with I/O binding on GPU)")
