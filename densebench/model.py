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


# Prefixes that wrappers put before every key: DataParallel / DistributedDataParallel ('module.') and
# torch.compile's OptimizedModule ('_orig_mod.'), in any order and nesting.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip_wrappers(key: str) -> str:
    while key.startswith(_WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def upgrade_state_dict_keys(state: dict[str, Any], expected: set[str] | None = None) -> dict[str, Any]:
    """Keys as torchvision's DenseNet-121 names them.

    Accepts torchvision's old DenseNet key names ('norm.1'), the prefixes DataParallel/DDP
    ('module.') and torch.compile ('_orig_mod.') add, and, given the ``expected`` keys, one
    attribute prefix that a wrapping module adds (a Lightning module's ``self.model`` saves
    'model.features...'): it is removed when that makes the keys fit."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        key = _strip_wrappers(key)
        match = _OLD_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        out[key] = value
    if expected and not expected <= set(out):
        out = _strip_attribute_prefix(out, expected)
    return out


def _strip_attribute_prefix(state: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """``state`` with the one leading 'name.' removed (from the keys that have it) under which every
    expected key is found; unchanged when there is no such prefix."""
    for prefix in sorted({k.split(".", 1)[0] + "." for k in state if "." in k}):
        inner = {_strip_wrappers(k[len(prefix):]) if k.startswith(prefix) else k: v for k, v in state.items()}
        if expected <= set(inner):
            return upgrade_state_dict_keys(inner)
    return state


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


# The keys under which checkpoints keep a model's state dict (Lightning: 'state_dict'; training scripts:
# 'model', 'model_state_dict', 'net'; EMA weights: 'state_dict_ema').
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "state_dict_ema")


def _is_safetensors(path: Path) -> bool:
    """Whether the file starts like safetensors: an 8-byte little-endian header length, then a JSON object."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = fh.seek(0, 2)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size


def _read_weights(path: Path) -> Any:
    import torch  # heavy, optional

    if _is_safetensors(path):
        try:
            from safetensors.torch import load_file  # optional: comes with timm
        except ImportError:
            raise WeightsError(f"{path} is a safetensors file and the Python package 'safetensors' is not installed "
                               "(pip install safetensors)") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError, OSError, ValueError
            raise WeightsError(f"cannot read safetensors file {path}: {type(exc).__name__}: {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"refusing to load {path}: it is not a plain state dict that loads with "
                           f"weights_only=True (it may execute code when unpickled): {first}. Save the "
                           "weights with torch.save(model.state_dict(), PATH) instead of the whole model") from None
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from None


def load_state_dict_file(path: Path, expected: set[str] | None = None) -> dict[str, Any]:
    """Load a DenseNet-121 state dict safely: a ``torch.save`` file (``weights_only=True``) or safetensors.

    Checkpoint wrappers (``{'state_dict': ...}`` and the like, see ``_WRAPPER_KEYS``) are unwrapped and
    keys renamed by :func:`upgrade_state_dict_keys`. Raises WeightsError saying what the file holds."""
    import torch  # heavy, optional

    obj = _read_weights(path)
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"{path} does not hold a state dict (a mapping of parameter names to tensors); "
                           f"found {type(obj).__name__}{' (empty)' if isinstance(obj, dict) else ''}")
    odd = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise WeightsError(f"{path} does not hold a state dict: {len(odd)} of its {len(obj)} entries are not "
                           f"tensors ({', '.join(f'{k!r}: {type(obj[k]).__name__}' for k in odd[:5])}); expected "
                           f"parameter names mapped to tensors, or a checkpoint with one under {_WRAPPER_KEYS}")
    return upgrade_state_dict_keys(obj, expected)


def _listing(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def misfit(state: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """Why ``state`` does not fit a model whose state dict is ``expected``, in full; None when it fits.

    Names the unexpected keys (and a prefix they share), the missing keys and every shape mismatch."""
    unexpected = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state]
    shapes = [f"{k} is {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in DenseNet-121"
              for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    if unexpected:
        heads = {k.split(".", 1)[0] for k in unexpected}
        shared = f", all under '{heads.pop()}.'" if len(heads) == 1 and len(unexpected) > 1 else ""
        parts.append(f"{len(unexpected)} unexpected key(s){shared}: {_listing(unexpected)}")
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if shapes:
        parts.append(f"{len(shapes)} size mismatch(es): " + "; ".join(shapes[:4])
                     + (f"; and {len(shapes) - 4} more" if len(shapes) > 4 else ""))
    if any(s.startswith("classifier.") for s in shapes):
        parts.append("the classifier was trained for another number of classes; densebench measures "
                     "DenseNet-121 with the 1000-class ImageNet head")
    return "; ".join(parts) or None


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
    model = densenet121(weights=None)
    expected = model.state_dict()
    state = load_state_dict_file(path, set(expected))
    problem = misfit(state, expected)
    if problem:
        raise WeightsError(f"{path} does not fit DenseNet-121 (1000 classes): {problem}")
    model.load_state_dict(state, strict=True)
    return model.eval(), WeightsInfo(weights, "file", path=str(path))
