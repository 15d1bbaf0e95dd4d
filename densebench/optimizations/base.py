"""The optimization registry: named techniques that fold into one build ``Plan``.

A technique is either a *modifier* (memory format, precision, autocast, TF32) or a
*backend* (eager, torch.compile, TorchScript, TensorRT, ...). A name such as
``channels_last+amp+compile`` is a stack: its parts fold left to right into a
``Plan``; a part that cannot follow the ones before it raises ``StackError`` with
the reason. ``build_runner`` turns a plan into a :class:`Runner`.

Nothing here imports torch at module import: the registry is consulted while
pytest parses options.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import importlib.util
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import storage
from ..errors import SettingsError, StackError, Unavailable

if TYPE_CHECKING:
    import torch  # heavy, optional


@dataclass(frozen=True)
class Plan:
    """What a stack asks for, before anything is built."""

    parts: tuple[str, ...] = ()
    memory_format: str = "contiguous"  # or "channels_last"
    weight_dtype: str = "float32"  # or "float16", "bfloat16"
    autocast: bool = False
    tf32: bool = False
    cudagraphs: bool = False
    backend: str = "eager"
    options: tuple[tuple[str, Any], ...] = ()

    def with_(self, **changes: Any) -> Plan:
        return dataclasses.replace(self, **changes)

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def with_option(self, key: str, value: Any) -> Plan:
        opts = dict(self.options)
        opts[key] = value
        return self.with_(options=tuple(sorted(opts.items())))


@dataclass(frozen=True)
class Requirements:
    devices: frozenset[str] = frozenset({"cpu", "cuda"})
    packages: tuple[tuple[str, str], ...] = ()  # (import name, pip install hint)
    # Called with the device kind once the packages are importable: why the installed build cannot run
    # there (e.g. an onnxruntime without the CUDA provider), or None.
    probe: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class Technique:
    name: str
    summary: str
    apply: Callable[[Plan], Plan]
    # Run on the folded plan of the whole stack: the reason this part cannot be in it, or None.
    check: Callable[[Plan], str | None] | None = None
    # Applied to the built backend (e.g. CUDA graph capture): (backed, example, plan, ctx) -> backed.
    wrap: Callable[[Backed, Any, Plan, BuildContext], Backed] | None = None
    requires: Requirements = Requirements()
    kind: str = "modifier"  # or "backend"
    default: bool = True  # part of 'all'
    rank: int = 100  # position in 'all' and in listings


@dataclass(frozen=True)
class Backend:
    """Turns a prepared eager model into the callable that is timed."""

    name: str
    build: Callable[[Any, Any, Plan, BuildContext], Backed]


@dataclass
class Backed:
    forward: Callable[[Any], Any]
    prepare: Callable[[Any], Any] | None = None  # replaces the default torch input preparation
    to_logits: Callable[[Any], Any] | None = None
    precision: str | None = None  # what the backend really ran at, when it decides itself
    info: dict[str, Any] = field(default_factory=dict)
    cleanup: Callable[[], None] | None = None
    # Compiled for each input shape it sees (torch.compile, AOTInductor, TensorRT, CUDA graphs): a serving
    # batcher pads its batches to sizes warmed up beforehand instead of compiling in the timed window.
    fixed_shapes: bool = False
    # Several batches in flight at once (scenarios/batcher.py's Executor): in_flight -> executor; None when the
    # backend runs one batch at a time.
    serve: Callable[[int | None], Any] | None = None


_TECHNIQUES: dict[str, Technique] = {}
_BACKENDS: dict[str, Backend] = {}
# What 'best' runs on each device kind: the single techniques and stacks worth trying there
# (FP16 is left out on CPU, where it has no fast kernels). Filled by the technique modules.
BEST: dict[str, list[str]] = {"cpu": [], "cuda": []}


def recommend(name: str, *device_kinds: str) -> None:
    for kind in device_kinds:
        if name not in BEST[kind]:
            BEST[kind].append(name)


def register(technique: Technique) -> Technique:
    if technique.name in _TECHNIQUES or "+" in technique.name or "," in technique.name:
        raise ValueError(f"bad or duplicate optimization name {technique.name!r}")
    _TECHNIQUES[technique.name] = technique
    return technique


def register_backend(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


def techniques() -> dict[str, Technique]:
    return {t.name: t for t in sorted(_TECHNIQUES.values(), key=lambda t: t.rank)}


def names() -> list[str]:
    return list(techniques())


def register_backend_technique(name: str, build: Callable[..., Backed], summary: str, rank: int,
                               requires: Requirements = Requirements(),
                               check: Callable[[Plan], str | None] | None = None) -> Technique:
    """A technique that is a backend of its own name: register both."""
    register_backend(Backend(name, build))
    return register(Technique(rank=rank, name=name, summary=summary, apply=set_backend(name), check=check,
                              requires=requires, kind="backend"))


def weight_dtype(name: str, dtype: str) -> Callable[[Plan], Plan]:
    """A modifier that casts weights and inputs to ``dtype`` (excludes any other weight dtype)."""

    def apply(plan: Plan) -> Plan:
        if plan.weight_dtype != "float32":
            raise StackError(f"{name} and {plan.weight_dtype} weights exclude each other")
        return plan.with_(weight_dtype=dtype)

    return apply


def host_numpy_io() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(prepare, to_logits) for runtimes fed host NumPy arrays: ONNX Runtime and OpenVINO on the CPU."""
    import torch  # heavy, optional

    def prepare(batch: Any) -> Any:
        return np.ascontiguousarray(batch.float().cpu().numpy())

    def to_logits(out: Any) -> Any:
        return torch.from_numpy(np.array(out, dtype=np.float32))

    return prepare, to_logits


def set_backend(name: str) -> Callable[[Plan], Plan]:
    def apply(plan: Plan) -> Plan:
        if plan.backend != "eager":
            raise StackError(f"{name} and {plan.backend} are both backends that compile or run the model; "
                             "a stack takes at most one")
        return plan.with_(backend=name)

    return apply


def plan_for(name: str) -> Plan:
    """Fold a (possibly stacked) name into a Plan; raise SettingsError/StackError with the reason."""
    parts = [p.strip() for p in name.split("+")]
    if any(not p for p in parts):
        raise SettingsError(f"optimization {name!r} has an empty part")
    unknown = [p for p in parts if p not in _TECHNIQUES]
    if unknown:
        raise SettingsError(f"unknown optimization {unknown[0]!r} in {name!r}; "
                            f"allowed: {', '.join(names())} (stack them with '+', or use 'all' / 'best')")
    if len(set(parts)) != len(parts):
        raise StackError(f"{name!r} names a technique twice")
    if len(parts) > 1 and "baseline" in parts:
        raise StackError(f"{name!r}: baseline is the strict FP32 reference and does not stack")
    plan = Plan(parts=tuple(parts))
    try:
        for part in parts:
            plan = _TECHNIQUES[part].apply(plan)
    except StackError as exc:
        raise StackError(f"{name!r} cannot be stacked: {exc}") from None
    for part in parts:
        check = _TECHNIQUES[part].check
        problem = check(plan) if check else None
        if problem:
            raise StackError(f"{name!r} cannot be stacked: {problem}")
    return plan


def resolve_names(text: str, device_kind: str | None = None) -> tuple[str, ...]:
    """Expand 'all' / 'best' and validate each name and stack.

    'all' is every registered technique (those that cannot run here are skipped with the
    reason); 'best' is the recommended candidates for ``device_kind`` ('cpu' or 'cuda').
    """
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise SettingsError("--densebench-optimizations is empty; allowed: "
                            f"{', '.join(names())}, stacks such as channels_last+amp, 'all' or 'best'")
    out: list[str] = []
    for item in items:
        if item == "all":
            expanded = [n for n, t in techniques().items() if t.default]
        elif item == "best":
            expanded = ["baseline", *BEST.get(device_kind or "cpu", [])]
        else:
            plan_for(item)  # validates
            expanded = [item]
        out += [n for n in expanded if n not in out]
    return tuple(out)


def unavailable_reason(plan: Plan, device_type: str) -> str | None:
    """Why this plan cannot run on this device kind, naming exactly what is missing; None if it can."""
    reasons: list[str] = []
    for part in plan.parts:
        req = _TECHNIQUES[part].requires
        if device_type not in req.devices:
            reasons.append(f"{part} needs a {' or '.join(sorted(req.devices)).upper()} device "
                           f"(running on {device_type})")
        for module, hint in req.packages:
            if importlib.util.find_spec(module) is None:
                reasons.append(f"{part} needs the Python package '{module}', which is not installed "
                               f"({hint})")
        if req.probe is not None and not reasons:
            problem = req.probe(device_type)
            if problem:
                reasons.append(f"{part}: {problem}")
    return "; ".join(dict.fromkeys(reasons)) or None


def _writable_dir(path: Path) -> Path:
    """``path``, created, once a file could be written in it; raises OSError otherwise."""
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass
    return path


@dataclass
class BuildContext:
    device: torch.device
    calibration: Any = None  # CPU float32 NCHW images (disjoint from the parity set), for quantization
    cache_dir: Any = None  # pathlib.Path for compile/engine caches
    model_digest: str = "unknown"  # identifies the weights in cache keys

    def cache(self, *parts: str) -> Any:
        """A directory under the cache, created on demand; None when caching is off, or when the directory
        cannot be created or written (one StorageWarning, see storage.py): the optimization is then built
        without its cache, as on a first run."""
        if self.cache_dir is None:
            return None
        path = self.cache_dir.joinpath(*parts)
        return storage.guarded("compile cache", path, "building without the cache (full setup time again)",
                               lambda: _writable_dir(path))

    def cache_key(self, example: Any, extra: str = "") -> str:
        """Key for a cached calibrated artefact: weights, input shape, torch version, calibration images."""
        import torch  # heavy, optional

        digest = hashlib.sha256()
        for part in (self.model_digest, str(tuple(example.shape)), torch.__version__, extra,
                     self._calibration_digest):
            digest.update(part.encode())
        return digest.hexdigest()[:16]

    @cached_property
    def _calibration_digest(self) -> str:
        """Hashed once per context: the images are ~19 MB at the defaults and several keys use them."""
        if self.calibration is None:
            return ""
        return hashlib.sha256(self.calibration.numpy().tobytes()).hexdigest()

    def calibration_batches(self, batch_size: int) -> list[Any]:
        """The calibration images in batches (CPU float32 NCHW); the example itself if there are none."""
        images = self.calibration
        if images is None or len(images) == 0:
            raise Unavailable("post-training quantization needs calibration images and none were loaded")
        return [images[i:i + batch_size] for i in range(0, len(images), batch_size)]


_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def model_only(name: str) -> Callable[[Plan], str | None]:
    """Check for backends that take the FP32 model and decide precision and layout themselves."""

    def check(plan: Plan) -> str | None:
        extras = [p for p in plan.parts if p != name]
        if extras:
            return (f"{name} converts the FP32 model itself and chooses its own precision and layout; "
                    f"it does not stack with {', '.join(extras)}")
        return None

    return check


def precision_of(plan: Plan, device_type: str) -> str:
    if plan.weight_dtype == "float16":
        return "fp16"
    if plan.weight_dtype == "bfloat16":
        return "bf16"
    if plan.autocast:
        return "amp_fp16" if device_type == "cuda" else "amp_bf16"
    return "tf32" if plan.tf32 else "fp32"


def autocast_dtype(device_type: str) -> torch.dtype:
    import torch  # heavy, optional

    return torch.float16 if device_type == "cuda" else torch.bfloat16


class Runner:
    """A built optimization: prepares inputs (untimed) and runs one forward pass (timed)."""

    def __init__(self, name: str, plan: Plan, device: torch.device, backed: Backed,
                 input_dtype: torch.dtype, memory_format: torch.memory_format, build_s: float = 0.0):
        self.name = name
        self.plan = plan
        self.device = device
        self.backed = backed
        self.input_dtype = input_dtype
        self.memory_format = memory_format
        self.precision = backed.precision or precision_of(plan, device.type)
        self.info = dict(backed.info)
        self.build_s = build_s
        self.denormals_flushed = False  # set by activated(): whether the CPU flushed denormals to zero

    def prepare(self, batch: torch.Tensor) -> Any:
        """CPU float32 NCHW batch -> what forward() takes, resident on the device. Not timed."""
        if self.backed.prepare is not None:
            return self.backed.prepare(batch)
        return device_batch(batch, self.device, self.input_dtype, self.memory_format)

    def __call__(self, prepared: Any) -> Any:
        return self.backed.forward(prepared)

    def logits(self, output: Any) -> torch.Tensor:
        """Forward output -> float32 CPU logits (N, 1000). Not timed."""
        if self.backed.to_logits is not None:
            return self.backed.to_logits(output)
        return output.detach().float().cpu()

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """Process-wide flags this runner needs (TF32, cuDNN autotune, flush-to-zero) plus inference mode."""
        with flags(self.device, tf32=self.plan.tf32), flush_denormal(self.plan.option("flush_denormal", False)) as on:
            self.denormals_flushed = on
            yield

    def release(self) -> None:
        if self.backed.cleanup is not None:
            self.backed.cleanup()
        self.backed = Backed(forward=_released)


def _released(_: Any) -> Any:
    raise RuntimeError("this runner was released")


# torch's new TF32 API (torch >= 2.9): objects whose ``fp32_precision`` decides TF32. Reading a legacy
# ``allow_tf32`` flag raises ("mix of the legacy and new APIs") once the new API set them differently.
_FP32_PRECISION = (("cuda", "matmul"), ("cudnn",), ("cudnn", "conv"), ("cudnn", "rnn"))


def _precision_targets(torch: Any) -> list[Any]:
    """Objects with an ``fp32_precision`` attribute; empty on torch without the new API."""
    targets = []
    for path in _FP32_PRECISION:
        obj = torch.backends
        for part in path:
            obj = getattr(obj, part, None)
        if obj is not None and hasattr(obj, "fp32_precision"):
            targets.append(obj)
    return targets


def _tf32_state(torch: Any) -> tuple[str, tuple[Any, ...]]:
    """The TF32 settings to restore: the legacy flags, or the new API's values where reading the legacy
    flags raises because someone in this process used the new API."""
    try:
        return "legacy", (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    except RuntimeError:
        return "new", tuple(t.fp32_precision for t in _precision_targets(torch))


def _set_tf32(torch: Any, tf32: bool) -> None:
    """TF32 on or off for cuDNN and cuBLAS. The legacy setters never raise and leave both APIs consistent
    (torch's own code, torch.export included, still reads the legacy flags); with TF32 on, the cuDNN
    backend-level ``fp32_precision``, which Inductor's Triton convolution templates read, is set too."""
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    if tf32 and hasattr(torch.backends.cudnn, "fp32_precision"):
        torch.backends.cudnn.fp32_precision = "tf32"


def _restore_tf32(torch: Any, state: tuple[str, tuple[Any, ...]]) -> None:
    kind, values = state
    if kind == "legacy":
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = values
    else:
        for target, value in zip(_precision_targets(torch), values, strict=True):
            target.fp32_precision = value


@contextlib.contextmanager
def flags(device: torch.device, tf32: bool = False) -> Iterator[None]:
    """Set TF32 (strict FP32 unless ``tf32``) and cuDNN autotuning, restored afterwards, and enter
    inference mode. Works whichever TF32 API (legacy ``allow_tf32`` or ``fp32_precision``) the rest of
    the process used."""
    import torch  # heavy, optional

    cudnn = torch.backends.cudnn
    state, benchmark = _tf32_state(torch), cudnn.benchmark
    try:
        _set_tf32(torch, tf32)
        # Fixed input shapes: let cuDNN pick the fastest algorithms (warm-up pays for it).
        cudnn.benchmark = device.type == "cuda"
        with torch.inference_mode():
            yield
    finally:
        cudnn.benchmark = benchmark
        _restore_tf32(torch, state)


@contextlib.contextmanager
def flush_denormal(wanted: bool) -> Iterator[bool]:
    """Flush denormal floats to zero on the CPU while inside (``torch.set_flush_denormal``); yields
    whether it is on (False when not wanted, or when the CPU lacks SSE3's DAZ/FTZ). Off afterwards."""
    if not wanted:
        yield False
        return
    import torch  # heavy, optional

    on = bool(torch.set_flush_denormal(True))
    try:
        yield on
    finally:
        torch.set_flush_denormal(False)


def torch_memory_format(plan: Plan) -> Any:
    import torch  # heavy, optional

    return torch.channels_last if plan.memory_format == "channels_last" else torch.contiguous_format


def device_batch(batch: Any, device: Any, dtype: Any, memory_format: Any) -> Any:
    """The batch as a runner takes it: on the device, in its dtype and memory format.

    Always a fresh tensor (made under inference mode by the caller), never a view of the dataset.
    """
    return batch.to(device, dtype, copy=True).contiguous(memory_format=memory_format)


def build_runner(name: str, model: Any, example: Any, ctx: BuildContext) -> Runner:
    """Build the named (stacked) optimization from the FP32 CPU ``model``.

    ``example`` is a CPU float32 NCHW batch used to trace/compile. Raises ``Unavailable``
    when something the plan needs is missing here.
    """
    import torch  # heavy, optional

    plan = plan_for(name)
    reason = unavailable_reason(plan, ctx.device.type)
    if reason:
        raise Unavailable(reason)
    start = time.perf_counter()
    dtype = getattr(torch, _DTYPES[plan.weight_dtype])
    memory_format = torch_memory_format(plan)
    module = copy.deepcopy(model).eval().to(ctx.device)
    if dtype != torch.float32:
        module = module.to(dtype)
    module = module.to(memory_format=memory_format)
    for p in module.parameters():
        p.requires_grad_(False)
    forward: Callable[[Any], Any] = module
    if plan.autocast:
        forward = _autocast(module, ctx.device.type, autocast_dtype(ctx.device.type))
    with flags(ctx.device, tf32=plan.tf32):
        # Built in inference mode from an inference tensor, like every input it will see later
        # (Dynamo guards on that: a mismatch would recompile in the timed rounds).
        example_dev = device_batch(example, ctx.device, dtype, memory_format)
        backed = _BACKENDS[plan.backend].build(forward, example_dev, plan, ctx)
        for part in plan.parts:
            wrap = _TECHNIQUES[part].wrap
            if wrap is not None:
                backed = wrap(backed, example_dev, plan, ctx)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    return Runner(name, plan, ctx.device, backed, dtype, memory_format, time.perf_counter() - start)


def _autocast(module: Any, device_type: str, dtype: Any) -> Callable[[Any], Any]:
    """Module call under autocast: per-op FP16 (CUDA) or BF16 (CPU) from FP32 weights."""
    import torch  # heavy, optional

    def forward(x: Any) -> Any:
        with torch.autocast(device_type, dtype=dtype):
            return module(x)

    forward.module = module  # type: ignore[attr-defined]  # backends that need the module itself
    return forward


def eager(forward: Any, example: Any, plan: Plan, ctx: BuildContext) -> Backed:
    return Backed(forward=forward)


register_backend(Backend("eager", eager))
