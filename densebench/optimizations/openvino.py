"""``openvino`` and ``openvino_int8``: Intel OpenVINO on the CPU.

``openvino`` converts the FP32 PyTorch model (``ov.convert_model``, dynamic batch) and
compiles it for the CPU with OpenVINO's defaults; the precision it really runs at is read
back from the compiled model (``INFERENCE_PRECISION_HINT``: BF16 on CPUs with BF16 units,
else FP32) and recorded. ``openvino_int8`` quantizes the converted model with NNCF
post-training quantization on the dataset's calibration images first.

The converted and quantized IR files and OpenVINO's compiled-blob cache (``CACHE_DIR``)
live under the output directory, so a second run skips conversion and calibration.
OpenVINO runs on the host CPU here, so on a CUDA run these are skipped (benchmark them
with ``--densebench-device cpu``).
"""

from __future__ import annotations

from typing import Any

from .base import (
    Backed,
    BuildContext,
    Plan,
    Requirements,
    host_numpy_io,
    model_only,
    register_backend_technique,
)

OV = ("openvino", "pip install 'densebench[openvino]'")
REQUIRES = Requirements(devices=frozenset({"cpu"}), packages=(OV,))
REQUIRES_INT8 = Requirements(devices=frozenset({"cpu"}), packages=(OV, ("nncf", "pip install 'densebench[openvino]'")))

_PRECISIONS = {"bf16": "bf16", "f32": "fp32", "f16": "fp16", "i8": "int8"}


def convert(module: Any, example: Any, ctx: BuildContext) -> tuple[Any, bool]:
    """(ov.Model with a dynamic batch dimension, whether it came from the IR cache)."""
    import openvino as ov  # heavy, optional
    import torch  # heavy, optional

    cache = ctx.cache("openvino")
    size = example.shape[-1]
    xml = cache / f"densenet121-{ctx.model_digest}-{size}px.xml" if cache else None
    core = ov.Core()
    if xml is not None and xml.is_file():
        return core.read_model(str(xml)), True
    with torch.inference_mode(False), torch.no_grad():
        model = ov.convert_model(module, example_input=example.clone(), input=[(-1, 3, size, size)])
    if xml is not None:
        ov.save_model(model, str(xml))
    return model, False


def quantize(model: Any, example: Any, ctx: BuildContext) -> tuple[Any, bool]:
    import nncf
    import openvino as ov  # heavy, optional

    cache = ctx.cache("openvino")
    key = ctx.cache_key(example[:1], extra="nncf")
    xml = cache / f"densenet121-int8-{key}.xml" if cache else None
    if xml is not None and xml.is_file():
        return ov.Core().read_model(str(xml)), True
    batches = [b.numpy() for b in ctx.calibration_batches(8)]
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=sum(len(b) for b in batches))
    if xml is not None:
        ov.save_model(quantized, str(xml))
    return quantized, False


def _build(forward: Any, example: Any, plan: Plan, ctx: BuildContext, int8: bool) -> Backed:
    import openvino as ov  # heavy, optional
    import torch  # heavy, optional

    module = getattr(forward, "module", forward)
    model, converted_cached = convert(module, example, ctx)
    quantized_cached = None
    if int8:
        model, quantized_cached = quantize(model, example, ctx)
    core = ov.Core()
    blob_cache = ctx.cache("openvino", "blobs")
    if blob_cache is not None:
        core.set_property({"CACHE_DIR": str(blob_cache)})
    config = {"INFERENCE_NUM_THREADS": torch.get_num_threads()}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # e.g. "bf16", "f32"
    precision = "int8" if int8 else _PRECISIONS.get(hint, hint)

    prepare, to_logits = host_numpy_io()

    def run(x: Any) -> Any:
        return request.infer([x])[0]

    run(prepare(example))
    info = {"backend": "openvino", "version": ov.__version__, "device": "CPU",
            "inference_precision_hint": hint, "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
            "num_streams": int(compiled.get_property("NUM_STREAMS")),
            "converted_from_cache": converted_cached}
    if int8:
        info.update({"quantizer": "nncf.quantize (post-training, default preset)", "quantized_from_cache":
                     quantized_cached, "non_quantized_ops_precision": hint,
                     "calibration_images": 0 if ctx.calibration is None else len(ctx.calibration)})
    return Backed(forward=run, prepare=prepare, to_logits=to_logits, precision=precision, info=info,
                  serve=lambda in_flight: AsyncServing(core, model, in_flight))


class AsyncServing:
    """Several batches in flight: the model compiled again with OpenVINO's THROUGHPUT performance hint (CPU
    streams, each with its share of the cores) behind an ``AsyncInferQueue`` of ``in_flight`` requests
    (None: the number the plugin reports optimal, ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``). An Executor of
    scenarios/batcher.py: ``submit`` blocks until a request is idle; ``done`` is called on OpenVINO's thread.
    Source: OpenVINO docs, "High-level Performance Hints" and "OpenVINO Inference Request: AsyncInferQueue"."""

    def __init__(self, core: Any, model: Any, in_flight: int | None):
        import openvino as ov  # heavy, optional

        self.compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
        optimal = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.in_flight = in_flight or optimal
        self.queue = ov.AsyncInferQueue(self.compiled, self.in_flight)
        self.queue.set_callback(lambda request, done: done(request.get_output_tensor(0).data.copy()))
        self.info = {"executor": "openvino AsyncInferQueue", "in_flight": self.in_flight,
                     "performance_hint": "THROUGHPUT", "optimal_infer_requests": optimal,
                     "num_streams": int(self.compiled.get_property("NUM_STREAMS")),
                     "inference_num_threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS"))}

    def submit(self, x: Any, done: Any) -> None:
        self.queue.start_async([x], done)

    def drain(self) -> None:
        self.queue.wait_all()


def build(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    return _build(forward, example, plan, ctx, int8=False)


def build_int8(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    return _build(forward, example, plan, ctx, int8=True)


register_backend_technique("openvino", build, rank=90, requires=REQUIRES, check=model_only("openvino"),
                           summary="OpenVINO on the CPU with its default settings (precision hint recorded)")
register_backend_technique("openvino_int8", build_int8, rank=91, requires=REQUIRES_INT8,
                           check=model_only("openvino_int8"),
                           summary="OpenVINO + NNCF post-training INT8, calibrated on the dataset")
