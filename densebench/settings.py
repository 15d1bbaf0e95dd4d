"""One frozen ``Settings`` object, parsed and validated once.

Every option exists three ways: a command-line flag (``--densebench-batch-sizes``),
an environment variable (``DENSEBENCH_BATCH_SIZES``) and an ini key
(``densebench_batch_sizes`` under ``[tool.pytest.ini_options]``). The flag wins over
the environment, the environment over the ini file, the ini file over the default.

Validation collects every problem and raises one :class:`SettingsError` that says what
was wrong and what is allowed; the pytest plugin turns it into ``pytest.UsageError``.
This module does not import torch: it runs in every pytest start-up.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """Bad configuration: the message says what was wrong and what is allowed."""


@dataclass(frozen=True)
class Option:
    key: str
    default: str
    help: str
    metavar: str = "VALUE"

    @property
    def boolean(self) -> bool:
        return self.metavar == "BOOL"

    @property
    def flag(self) -> str:
        return "--densebench-" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "DENSEBENCH_" + self.key.upper()

    @property
    def ini(self) -> str:
        return "densebench_" + self.key


OPTIONS: tuple[Option, ...] = (
    Option("device", "auto", "auto | cpu | cuda | cuda:N (auto: the first CUDA GPU if there is one, else cpu)",
           "DEVICE"),
    Option("optimizations", "all",
           "comma list of optimization names; stack techniques with '+' (channels_last+amp+compile); "
           "'all' = every registered optimization (unavailable ones are skipped with the reason); "
           "'best' = 'all' plus the stacks recommended for this device",
           "NAMES"),
    Option("batch_sizes", "1,8,32", "comma list of positive batch sizes", "N,N,..."),
    Option("image_size", "224", "input height and width in pixels (>= 32)", "PIXELS"),
    Option("weights", "auto",
           "auto | imagenet | random | PATH to a state dict (auto: ImageNet weights when cached or "
           "downloadable, else seeded random weights)", "WEIGHTS"),
    Option("dataset", "auto",
           "auto | tiny-imagenet | synthetic | PATH to an ImageFolder tree (auto: Tiny ImageNet-200 "
           "validation images when present or downloadable, else synthetic)", "DATASET"),
    Option("data_dir", "~/.cache/densebench", "where datasets are downloaded and extracted", "DIR"),
    Option("output", "results", "directory for traces, TensorBoard runs, caches and the results journal",
           "DIR"),
    Option("eval_samples", "32", "number of evaluation images for the parity check (>= 1)", "N"),
    Option("calibration_samples", "32",
           "images for post-training quantization (int8, openvino_int8, tensorrt_int8), taken after the parity "
           "images so the two sets do not overlap (>= 0)", "N"),
    Option("latency_budget_ms", "none",
           "p99 latency budget: the summary names the highest-throughput configuration that fits it "
           "(the server question) next to peak throughput (the offline question)", "MS"),
    Option("parity_top1", "0.95",
           "minimum top-1 agreement with the baseline (fraction of images whose top-1 class matches; "
           "flips between classes the baseline itself nearly tied are not counted, see tie band)", "FRAC"),
    Option("parity_tie_band", "0.005",
           "a top-1 flip is a near-tie when the baseline's gap between the two classes is below this "
           "fraction of the image's logit range", "FRAC"),
    Option("parity_top5", "0.99",
           "minimum top-5 agreement (fraction of images whose baseline top-1 class is in the top 5)", "FRAC"),
    Option("parity_logit_error", "0.5",
           "maximum logit error relative to how much the baseline logits vary between images "
           "(0 = identical, 1 = the input-dependent signal is gone)", "RATIO"),
    Option("warmup", "3", "untimed warm-up forward passes per optimization and batch size (>= 1)", "N"),
    Option("seed", "0", "seed for random weights and synthetic data", "N"),
    Option("crosscheck", "true",
           "time each configuration a second way (CUDA events on GPU, torch.utils.benchmark on CPU) and "
           "record the ratio", "BOOL"),
    Option("profile", "false",
           "after timing, profile a few extra rounds with torch.profiler: Chrome/Perfetto + TensorBoard "
           "traces under the output directory, top ops/kernels in extra_info", "BOOL"),
    Option("profile_rounds", "3", "rounds per profiled benchmark (>= 1)", "N"),
    Option("tensorboard", "false",
           "write throughput, latency, memory and utilization scalars as TensorBoard event files "
           "(OUTPUT/tensorboard/RUN/OPTIMIZATION)", "BOOL"),
    Option("telemetry_interval_ms", "20", "telemetry sampling interval while a benchmark is timed (>= 1)", "MS"),
    Option("journal", "auto",
           "append each finished benchmark to a JSON-lines journal (fsync'd) so a crash loses nothing: auto "
           "(OUTPUT/journals/journal-RUN.jsonl), off, or a PATH", "PATH"),
    Option("isolate", "false",
           "build and benchmark each optimization in a child process, so a segfault, a hang or an OOM kill "
           "is recorded for that optimization and the run goes on", "BOOL"),
    Option("timeout", "1800", "with --densebench-isolate: seconds one optimization may take (all batch sizes)",
           "SECONDS"),
    Option("offline", "false", "never download anything (auto weights and dataset fall back at once)", "BOOL"),
)

OPTIONS_BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    device: str = "auto"
    optimizations: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    image_size: int = 224
    weights: str = "auto"
    dataset: str = "auto"
    data_dir: Path = field(default_factory=lambda: Path("~/.cache/densebench").expanduser())
    output: Path = Path("results")
    eval_samples: int = 32
    calibration_samples: int = 32
    latency_budget_ms: float | None = None
    parity_top1: float = 0.95
    parity_top5: float = 0.99
    parity_logit_error: float = 0.5
    parity_tie_band: float = 0.005
    warmup: int = 3
    seed: int = 0
    crosscheck: bool = True
    profile: bool = False
    profile_rounds: int = 3
    tensorboard: bool = False
    telemetry_interval_ms: int = 20
    journal: str = "auto"
    isolate: bool = False
    timeout: int = 1800
    offline: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_sources(cls, flag: Callable[[Option], str | None],
                     ini: Callable[[Option], str | None] = lambda o: None) -> Settings:
        """Settings from raw strings: the flag, else the environment, else the ini key, else the default."""
        raw = {}
        for opt in OPTIONS:
            value = raw_value(opt, flag, ini)
            if value is not None:
                raw[opt.key] = value
        return parse(raw)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from keyword values (strings or already-typed), defaults for the rest."""
        unknown = sorted(set(values) - set(OPTIONS_BY_KEY))
        if unknown:
            raise SettingsError(f"unknown densebench setting(s): {', '.join(unknown)}; "
                                f"allowed: {', '.join(OPTIONS_BY_KEY)}")

        return cls.from_sources(lambda o: value_text(values[o.key]) if o.key in values else None)


# Defaults a front end changes for its own runs (densebench run: isolate), below flag, env and ini.
_DEFAULT_OVERRIDES: dict[str, str] = {}


def override_default(key: str, value: str) -> None:
    """Make ``value`` the default of setting ``key`` in this process; flag, environment and ini still win."""
    if key not in OPTIONS_BY_KEY:
        raise SettingsError(f"unknown densebench setting {key!r}; allowed: {', '.join(OPTIONS_BY_KEY)}")
    _DEFAULT_OVERRIDES[key] = value


def raw_value(opt: Option, flag: Callable[[Option], str | None],
              ini: Callable[[Option], str | None] = lambda o: None) -> str | None:
    """One option's raw string: the flag, else the environment, else the ini key, else the default."""
    for value in (flag(opt), os.environ.get(opt.env), ini(opt), _DEFAULT_OVERRIDES.get(opt.key, opt.default)):
        if value is not None and str(value) != "":
            return str(value)
    return None


def value_text(value: Any) -> str:
    """A typed setting as the string its flag or environment variable takes."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(x) for x in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _int(errors: list[str], opt: str, text: str, minimum: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        errors.append(f"{opt}: {text!r} is not an integer (allowed: an integer >= {minimum})")
        return minimum
    if value < minimum:
        errors.append(f"{opt}: {value} is too small (allowed: an integer >= {minimum})")
    return value


def _fraction(errors: list[str], opt: str, text: str, upper: float | None = 1.0) -> float:
    try:
        value = float(text)
    except ValueError:
        errors.append(f"{opt}: {text!r} is not a number")
        return 0.0
    if value < 0 or (upper is not None and value > upper):
        allowed = f"0 to {upper}" if upper is not None else "a number >= 0"
        errors.append(f"{opt}: {value} is out of range (allowed: {allowed})")
    return value


def _budget(errors: list[str], text: str) -> float | None:
    if text.strip().lower() in ("", "none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        errors.append(f"--densebench-latency-budget-ms: {text!r} is not a positive number of milliseconds "
                      "(allowed: a number > 0, or none)")
        return None
    return value


def _bool(errors: list[str], opt: str, text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    errors.append(f"{opt}: {text!r} is not a boolean (allowed: true/false, yes/no, on/off, 1/0)")
    return False


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise SettingsError(f"--densebench-batch-sizes: {text!r} has an empty entry "
                            "(allowed: a comma list of positive integers, e.g. 1,8,32)")
    sizes: list[int] = []
    for p in parts:
        try:
            n = int(p)
        except ValueError:
            raise SettingsError(f"--densebench-batch-sizes: {p!r} is not an integer "
                                "(allowed: a comma list of positive integers, e.g. 1,8,32)") from None
        if n <= 0:
            raise SettingsError(f"--densebench-batch-sizes: {n} is not positive "
                                "(allowed: a comma list of positive integers, e.g. 1,8,32)")
        if n not in sizes:
            sizes.append(n)
    return tuple(sizes)


def _device(errors: list[str], text: str) -> str:
    dev = text.strip().lower()
    allowed = "auto, cpu, cuda, cuda:N"
    if dev in ("auto", "cpu"):
        return dev
    if dev == "cuda" or dev.startswith("cuda:"):
        index = 0
        if dev.startswith("cuda:"):
            try:
                index = int(dev.split(":", 1)[1])
                if index < 0:
                    raise ValueError
            except ValueError:
                errors.append(f"--densebench-device: {text!r} has a bad GPU index (allowed: {allowed})")
                return dev
        import torch  # only when CUDA was asked for

        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no NVIDIA driver or GPU is visible")
            errors.append(f"--densebench-device: {text!r} was requested but CUDA is not available here "
                          f"({why}); use --densebench-device cpu or auto")
        elif index >= torch.cuda.device_count():
            errors.append(f"--densebench-device: {text!r} does not exist: {torch.cuda.device_count()} CUDA "
                          f"device(s) visible (allowed: cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
        return dev
    errors.append(f"--densebench-device: {text!r} is not a device (allowed: {allowed})")
    return dev


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be used as an output directory (created later, on demand), or None.

    Tries a temporary file in the nearest existing ancestor: permission bits alone say
    nothing for root, and some file systems refuse writes whatever the bits say."""
    import tempfile

    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"'{path}' is not a directory ('{probe}' is a file)"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return f"'{path}' is not writable ('{probe}': {exc.strerror or exc})"
    return None


def _device_kind(device: str, optimizations: str) -> str:
    """'cpu' or 'cuda': what 'best' is expanded for (auto asks torch, only when 'best' is used)."""
    if device == "auto" and "best" in optimizations:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def parse(raw: Mapping[str, str]) -> Settings:
    """Validate raw option strings; raise one SettingsError listing every problem."""
    from .optimizations import resolve_names  # light: the registry imports no torch

    errors: list[str] = []
    device = _device(errors, raw["device"])
    try:
        optimizations = resolve_names(raw["optimizations"], _device_kind(device, raw["optimizations"]))
    except SettingsError as exc:
        errors.append(str(exc))
        optimizations = ()
    try:
        batch_sizes = parse_batch_sizes(raw["batch_sizes"])
    except SettingsError as exc:
        errors.append(str(exc))
        batch_sizes = ()
    image_size = _int(errors, "--densebench-image-size", raw["image_size"], 32)

    weights = raw["weights"].strip()
    if weights.lower() in ("auto", "imagenet", "random"):
        weights = weights.lower()
    elif not Path(weights).expanduser().is_file():
        errors.append(f"--densebench-weights: {weights!r} is not an existing file "
                      "(allowed: auto, imagenet, random, or the path of a DenseNet-121 state dict)")

    dataset = raw["dataset"].strip()
    if dataset.lower() in ("auto", "tiny-imagenet", "synthetic"):
        dataset = dataset.lower()
    elif not Path(dataset).expanduser().is_dir():
        errors.append(f"--densebench-dataset: {dataset!r} is not an existing directory (allowed: auto, "
                      "tiny-imagenet, synthetic, or the path of an ImageFolder tree: ROOT/<class>/<image>)")

    output = Path(raw["output"]).expanduser()
    problem = _unwritable(output)
    if problem:
        errors.append(f"--densebench-output: {problem} (choose a writable directory)")

    settings = Settings(
        device=device,
        optimizations=optimizations,
        batch_sizes=batch_sizes,
        image_size=image_size,
        weights=weights,
        dataset=dataset,
        data_dir=Path(raw["data_dir"]).expanduser(),
        output=output,
        eval_samples=_int(errors, "--densebench-eval-samples", raw["eval_samples"], 1),
        calibration_samples=_int(errors, "--densebench-calibration-samples", raw["calibration_samples"], 0),
        latency_budget_ms=_budget(errors, raw["latency_budget_ms"]),
        parity_top1=_fraction(errors, "--densebench-parity-top1", raw["parity_top1"]),
        parity_top5=_fraction(errors, "--densebench-parity-top5", raw["parity_top5"]),
        parity_tie_band=_fraction(errors, "--densebench-parity-tie-band", raw["parity_tie_band"]),
        parity_logit_error=_fraction(errors, "--densebench-parity-logit-error", raw["parity_logit_error"],
                                     upper=None),
        warmup=_int(errors, "--densebench-warmup", raw["warmup"], 1),
        seed=_int(errors, "--densebench-seed", raw["seed"], 0),
        crosscheck=_bool(errors, "--densebench-crosscheck", raw["crosscheck"]),
        profile=_bool(errors, "--densebench-profile", raw["profile"]),
        profile_rounds=_int(errors, "--densebench-profile-rounds", raw["profile_rounds"], 1),
        tensorboard=_bool(errors, "--densebench-tensorboard", raw["tensorboard"]),
        telemetry_interval_ms=_int(errors, "--densebench-telemetry-interval-ms", raw["telemetry_interval_ms"], 1),
        journal=raw["journal"].strip() or "auto",
        isolate=_bool(errors, "--densebench-isolate", raw["isolate"]),
        timeout=_int(errors, "--densebench-timeout", raw["timeout"], 1),
        offline=_bool(errors, "--densebench-offline", raw["offline"]),
    )
    if errors:
        raise SettingsError("invalid densebench configuration:\n  " + "\n  ".join(errors))
    return settings
