"""Build DenseNet-121 with the requested weights.

``imagenet``: torchvision's ``DenseNet121_Weights.IMAGENET1K_V1`` (downloaded once into
torch hub's cache). ``random``: seeded initialisation. ``PATH``: a state dict loaded with
``weights_only=True`` (a pickle that would run code is refused). ``auto``: ImageNet
weights when cached or downloadable, else random, and the reason is recorded.
"""

from __future__ import annotations

import pickle
import re
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import WeightsError


@dataclass(frozen=True)
class WeightsInfo:
    requested: str
    source: str  # "imagenet" | "random" | "file"
    path: str | None = None
    seed: int | None = None
    fallback_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.describe()}

    def describe(self) -> str:
        text = {"imagenet": "ImageNet-1k (torchvision IMAGENET1K_V1)", "random": f"random (seed {self.seed})",
                "file": f"file {self.path}"}[self.source]
        if self.fallback_reason:
            text += f" — fell back from '{self.requested}': {self.fallback_reason}"
        return text


# torchvision's DenseNet checkpoints predate a rename: 'norm.1' became 'norm1' etc.
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                      r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def upgrade_state_dict_keys(state: dict[str, Any]) -> dict[str, Any]:
    """Accept torchvision's old DenseNet key names and DataParallel's 'module.' prefix."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        match = _OLD_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        out[key] = value
    return out


def _imagenet_weights() -> Any:
    from torchvision.models import DenseNet121_Weights  # heavy, optional

    return DenseNet121_Weights.IMAGENET1K_V1


def imagenet_cache_path() -> Path:
    import torch  # heavy, optional

    url = _imagenet_weights().url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def reachable(url: str, timeout: float = 5.0) -> str | None:
    """None if ``url`` answers a HEAD request within ``timeout`` seconds, else the reason."""
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except Exception as exc:  # network errors come in many types; all mean "not downloadable now"
        return f"{url} is not reachable ({type(exc).__name__}: {exc})"


def load_state_dict_file(path: Path) -> dict[str, Any]:
    """Load a DenseNet-121 state dict safely (``weights_only=True``)."""
    import torch  # heavy, optional

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"refusing to load {path}: it is not a plain state dict that loads with "
                           f"weights_only=True (it may execute code when unpickled): {first}") from None
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of parameter names to tensors); "
                           f"found {type(obj).__name__}")
    return upgrade_state_dict_keys(obj)


def _random_model(seed: int) -> Any:
    import torch  # heavy, optional
    from torchvision.models import densenet121  # heavy, optional

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return densenet121(weights=None)


def build_model(weights: str, seed: int = 0, offline: bool = False) -> tuple[Any, WeightsInfo]:
    """Return (FP32 CPU DenseNet-121 in eval mode, what weights it carries and why)."""
    from torchvision.models import densenet121  # heavy, optional

    if weights == "random":
        return _random_model(seed).eval(), WeightsInfo("random", "random", seed=seed)
    if weights in ("imagenet", "auto"):
        cached = imagenet_cache_path().is_file()
        problem = None
        if not cached:
            problem = ("offline mode (--densebench-offline) and the weights are not in torch hub's cache "
                       f"({imagenet_cache_path()})") if offline else reachable(_imagenet_weights().url)
        if problem is None:
            try:
                model = densenet121(weights=_imagenet_weights())
                return model.eval(), WeightsInfo(weights, "imagenet", path=str(imagenet_cache_path()))
            except Exception as exc:
                problem = f"loading ImageNet weights failed: {type(exc).__name__}: {exc}"
        if weights == "imagenet":
            raise WeightsError(f"--densebench-weights imagenet: {problem}")
        return _random_model(seed).eval(), WeightsInfo("auto", "random", seed=seed, fallback_reason=problem)

    path = Path(weights).expanduser()
    state = load_state_dict_file(path)
    model = densenet121(weights=None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise WeightsError(f"{path} does not fit DenseNet-121 (1000 classes): {detail[:600]}") from None
    return model.eval(), WeightsInfo(weights, "file", path=str(path))
