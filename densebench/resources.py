"""What every benchmark of a run shares, built lazily: device, model, data, baseline, runners.

Nothing here is built until a benchmark asks for it, so a run that skips everything never
loads a model. Role-free: the same object serves a plain run, an xdist worker and an
isolated child.
"""

from __future__ import annotations

import gc
import hashlib
from functools import cached_property
from typing import Any

from . import data as data_mod
from . import parity as parity_mod
from . import telemetry
from .errors import BuildFailed, DataError, InputError, OutOfMemory, Unavailable, WeightsError
from .model import build_model
from .optimizations import BuildContext, Runner, build_runner
from .settings import Settings


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 500 characters), or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` means "out of memory" (CUDA, or the host allocator)."""
    import torch  # heavy, optional: only once something failed

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def device_name(device: Any) -> str:
    """The GPU's name for a CUDA device, else the CPU model."""
    if device.type == "cuda":
        import torch  # heavy, optional

        return torch.cuda.get_device_name(device)
    return telemetry.cpu_model_name()


class Resources:
    """The run's device, model, weights, data, parity reference and build context (all lazy)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def device(self) -> Any:
        """torch.device; 'auto' is the first CUDA GPU if there is one, else the CPU."""
        import torch  # heavy, optional

        dev = self.settings.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(dev)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", 0)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    @cached_property
    def model_and_weights(self) -> tuple[Any, Any]:
        return build_model(self.settings.weights, self.settings.seed, self.settings.offline)

    @property
    def model(self) -> Any:
        return self.model_and_weights[0]

    @property
    def weights(self) -> Any:
        return self.model_and_weights[1]

    @cached_property
    def data(self) -> Any:
        s = self.settings
        n = max(s.eval_samples + s.calibration_samples, max(s.batch_sizes, default=1))
        return data_mod.load(s.dataset, s.data_dir, n, s.image_size, s.seed, s.offline)

    @cached_property
    def eval_set(self) -> tuple[Any, Any]:
        """(images (N, 3, H, W) float32, labels or None): the parity set."""
        return self.data.eval_set(self.settings.eval_samples)

    @cached_property
    def calibration(self) -> tuple[Any, bool]:
        """(calibration images for quantization, whether they overlap the parity images)."""
        return self.data.calibration_set(len(self.eval_set[0]), self.settings.calibration_samples)

    @cached_property
    def model_digest(self) -> str:
        """Short hash of the weights: compile/engine caches are keyed by it."""
        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]

    @cached_property
    def baseline_logits(self) -> Any:
        """Strict-FP32 eager logits (N, 1000) on the evaluation set: the parity reference."""
        images, _ = self.eval_set
        runner = build_runner("baseline", self.model, images[:1], self.context())
        try:
            with runner.activated():
                return parity_mod.predict(runner, images, min(len(images), 8))
        finally:
            runner.release()

    @cached_property
    def paired_baseline(self) -> Runner:
        """A baseline runner kept alive beside each optimization for the paired speedup (built once)."""
        return build_runner("baseline", self.model, self.data.batch(1), self.context())

    def context(self) -> BuildContext:
        cache = (self.settings.output / "cache").resolve()
        return BuildContext(device=self.device, calibration=self.calibration[0], cache_dir=cache,
                            model_digest=self.model_digest)

    @property
    def thresholds(self) -> parity_mod.Thresholds:
        s = self.settings
        return parity_mod.Thresholds(s.parity_top1, s.parity_top5, s.parity_logit_error, s.parity_tie_band)

    def prepare(self) -> None:
        """Load weights, data and the baseline now; raise ``InputError`` on unusable input."""
        try:
            _ = self.device, self.model, self.data, self.baseline_logits
        except (DataError, WeightsError) as exc:
            raise InputError(str(exc)) from None

    def loaded(self) -> dict[str, Any]:
        """What has been loaded so far, for the run record (nothing is loaded to answer)."""
        info: dict[str, Any] = {}
        if "device" in self.__dict__:
            info["device"] = str(self.device)
            info["device_name"] = device_name(self.device)
        if "model_and_weights" in self.__dict__:
            info["weights"] = self.weights.as_dict()
        if "data" in self.__dict__:
            info["dataset"] = self.data.info.as_dict()
        if "calibration" in self.__dict__:
            info["calibration"] = {"images": len(self.calibration[0]), "overlaps_parity_set": self.calibration[1]}
        return info

    def free_device_memory(self) -> None:
        gc.collect()
        if "device" in self.__dict__ and self.device.type == "cuda":
            import torch  # heavy, optional

            torch.cuda.empty_cache()


class Runners:
    """One built runner at a time (optimization-major test order builds each once).

    A build that raises is remembered, so the other batch sizes of the same optimization
    report it without rebuilding. ``memory_trace`` records memory after each release.
    """

    def __init__(self, resources: Resources):
        self.resources = resources
        self._current: tuple[str, Runner | BaseException] | None = None
        self.memory_trace: list[dict[str, Any]] = []
        self._reported_build = False  # the current runner's build time went into a record already

    @property
    def current(self) -> str | None:
        """The optimization built (or whose build failed) now, if any."""
        return self._current[0] if self._current is not None else None

    def get(self, name: str, batch_size: int) -> Runner:
        """The built runner for ``name``; raises ``Unavailable`` (skip), ``OutOfMemory`` or ``BuildFailed``."""
        if self._current is None or self._current[0] != name:
            self.release()
            self._current = (name, self._build(name, batch_size))
            self._reported_build = False
        result = self._current[1]
        if isinstance(result, BaseException):
            raise result
        return result

    def _build(self, name: str, batch_size: int) -> Runner | BaseException:
        res = self.resources
        try:
            return build_runner(name, res.model, res.data.batch(batch_size), res.context())
        except Unavailable as exc:
            return exc
        except Exception as exc:  # contained: this optimization fails, the run goes on
            built: BaseException
            if is_oom(exc):
                built = OutOfMemory(f"out of memory while building {name} at batch size {batch_size}: "
                                    f"{first_line(exc)}")
            else:
                built = BuildFailed(f"building {name} failed: {type(exc).__name__}: {first_line(exc)}")
            built.__cause__ = exc
            res.free_device_memory()
            return built

    def first_use(self) -> bool:
        """True the first time the current runner is measured (its build time belongs to that benchmark)."""
        first = not self._reported_build
        self._reported_build = True
        return first

    def release(self) -> None:
        """Release the current runner, free device memory and note memory afterwards."""
        if self._current is None:
            return
        name, built = self._current
        if isinstance(built, Runner):
            built.release()
        self._current = None
        self.resources.free_device_memory()
        self.memory_trace.append({"after_releasing": name, **telemetry.memory_now(self.resources.device)})
