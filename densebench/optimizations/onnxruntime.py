"""``onnxruntime``: export to ONNX (``torch.onnx.export``, dynamo exporter) and run it in ONNX Runtime.

One export with a dynamic batch dimension serves every batch size; it is cached under
the output directory. On CUDA the CUDA execution provider is used with I/O binding to
device tensors, so no host copy happens in a timed round (needs ``onnxruntime-gpu``);
on CPU the CPU provider runs with torch's thread count and all graph optimizations.
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
    model_only,
    register_backend_technique,
)

REQUIRES = Requirements(packages=(("onnxruntime", "pip install 'densebench[onnxruntime]'"),
                                  ("onnx", "pip install 'densebench[onnxruntime]'"),
                                  ("onnxscript", "pip install 'densebench[onnxruntime]'")))


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
    providers = ort.get_available_providers()
    if ctx.device.type == "cuda" and "CUDAExecutionProvider" not in providers:
        raise Unavailable("onnxruntime on CUDA needs the CUDAExecutionProvider, which this onnxruntime build "
                          f"lacks (providers: {', '.join(providers)}; install onnxruntime-gpu)")
    path, cached = export_onnx(module, example, ctx)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    if ctx.device.type == "cuda":
        provider = ("CUDAExecutionProvider",
                    {"device_id": ctx.device.index or 0, "cudnn_conv_algo_search": "EXHAUSTIVE"})
        session = ort.InferenceSession(path, options, providers=[provider])
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
        return Backed(forward=run, precision="fp32", info=info)

    prepare_cpu, to_logits = host_numpy_io()

    def run_cpu(x: Any) -> Any:
        return session.run([output_name], {input_name: x})[0]

    run_cpu(prepare_cpu(example))
    return Backed(forward=run_cpu, prepare=prepare_cpu, to_logits=to_logits, precision="fp32", info=info)


register_backend_technique("onnxruntime", build, rank=80, requires=REQUIRES, check=model_only("onnxruntime"),
                           summary="ONNX export (dynamo) + ONNX Runtime (CUDA provider with I/O binding on GPU)")
