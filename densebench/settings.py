"""Every densebench option, declared once, and the frozen ``Settings`` parsed from them.

Each :class:`Option` holds the option's only default, its parser and its help; from it come
the command-line flag (``--densebench-batch-sizes``), the environment variable
(``DENSEBENCH_BATCH_SIZES``), the ini key (``densebench_batch_sizes`` under
``[tool.pytest.ini_options]``), the field of :class:`Settings`, the defaults of the
``densebench`` command line and the README's option table (:func:`markdown_table`; a test
checks the README against it). The flag wins over the environment, the environment over
the ini file, the ini file over the default.

Validation collects every problem and raises one :class:`~densebench.errors.SettingsError`
that says what was wrong and what is allowed; the pytest plugin turns it into
``pytest.UsageError``. This module imports torch only when CUDA or 'best' is asked for.

Adding an option: one :class:`Option` in :data:`OPTIONS` and its typed field in
:class:`Settings` (same name, same order; checked at import).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SettingsError

Errors = list[str]
Parser = Callable[[Errors, str, str], Any]  # (errors, flag, raw text) -> typed value; problems appended


@dataclass(frozen=True)
class Option:
    """One option. ``parse(errors, flag, text)`` turns its raw text into the typed setting."""

    key: str
    default: str
    parse: Parser
    help: str
    summary: str  # the README table's "allowed" column
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


# ---------------------------------------------------------------- parsers


def _integer(minimum: int, why: str = "") -> Parser:
    """An integer of at least ``minimum``; ``why`` says where that bound comes from."""
    allowed = f"allowed: an integer >= {minimum}" + (f"; {why}" if why else "")

    def parse(errors: Errors, flag: str, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            errors.append(f"{flag}: {text!r} is not an integer ({allowed})")
            return minimum
        if value < minimum:
            errors.append(f"{flag}: {value} is too small ({allowed})")
        return value

    return parse


def fraction_or_percent(text: str) -> float:
    """``"0.03"`` or ``"3%"`` -> 0.03; raises ValueError when it is neither."""
    stripped = text.strip()
    return float(stripped[:-1]) / 100 if stripped.endswith("%") else float(stripped)


def _fraction(upper: float | None = 1.0) -> Parser:
    """A number in [0, upper]; a percentage ("3%") is read as a fraction (0.03)."""

    def parse(errors: Errors, flag: str, text: str) -> float:
        try:
            value = fraction_or_percent(text)
        except ValueError:
            errors.append(f"{flag}: {text!r} is not a number (a fraction such as 0.03, or a percentage such as 3%)")
            return 0.0
        if value < 0 or (upper is not None and value > upper):
            allowed = f"0 to {upper}" if upper is not None else "a number >= 0"
            errors.append(f"{flag}: {value} is out of range (allowed: {allowed})")
        return value

    return parse


def _budget(errors: Errors, flag: str, text: str) -> float | None:
    if text.strip().lower() in ("", "none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        errors.append(f"{flag}: {text!r} is not a positive number of milliseconds (allowed: a number > 0, or none)")
        return None
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(errors: Errors, flag: str, text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    errors.append(f"{flag}: {text!r} is not a boolean (allowed: true/false, yes/no, on/off, 1/0)")
    return False


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)`` (duplicates dropped); raises SettingsError saying what is allowed."""
    allowed = "(allowed: a comma list of positive integers, e.g. 1,8,32)"
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise SettingsError(f"--densebench-batch-sizes: {text!r} has an empty entry {allowed}")
    sizes: list[int] = []
    for p in parts:
        try:
            n = int(p)
        except ValueError:
            raise SettingsError(f"--densebench-batch-sizes: {p!r} is not an integer {allowed}") from None
        if n <= 0:
            raise SettingsError(f"--densebench-batch-sizes: {n} is not positive {allowed}")
        if n not in sizes:
            sizes.append(n)
    return tuple(sizes)


def _batch_sizes(errors: Errors, flag: str, text: str) -> tuple[int, ...]:
    try:
        return parse_batch_sizes(text)
    except SettingsError as exc:
        errors.append(str(exc))
        return ()


def _device(errors: Errors, flag: str, text: str) -> str:
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
                errors.append(f"{flag}: {text!r} has a bad GPU index (allowed: {allowed})")
                return dev
        import torch  # heavy, optional: only when CUDA was asked for

        if not torch.cuda.is_available():
            from .doctor import gpu_blocker  # runs nvidia-smi: only on this error path

            why = gpu_blocker() or "torch sees no CUDA device"
            errors.append(f"{flag}: {text!r} was requested but CUDA is not available here "
                          f"({why}); use --densebench-device cpu or auto")
        elif index >= torch.cuda.device_count():
            errors.append(f"{flag}: {text!r} does not exist: {torch.cuda.device_count()} CUDA "
                          f"device(s) visible (allowed: cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
        return dev
    errors.append(f"{flag}: {text!r} is not a device (allowed: {allowed})")
    return dev


def _optimizations(errors: Errors, flag: str, text: str) -> str:
    """Kept as text here; :func:`parse` resolves it once the device is known ('best' depends on it)."""
    return text


def _choice_or_path(choices: tuple[str, ...], want: str, allowed: str) -> Parser:
    def parse(errors: Errors, flag: str, text: str) -> str:
        value = text.strip()
        if value.lower() in choices:
            return value.lower()
        path = absolute_path(value)
        if not (path.is_file() if want == "file" else path.is_dir()):
            errors.append(f"{flag}: {value!r} is not an existing {'file' if want == 'file' else 'directory'} "
                          f"(allowed: {allowed})")
        return str(path)

    return parse


SCENARIOS = ("batch", "offline", "server", "singlestream")


def _scenarios(errors: Errors, flag: str, text: str) -> tuple[str, ...]:
    """A comma list of scenarios, in the order given, duplicates dropped."""
    allowed = "allowed: a comma list of " + ", ".join(SCENARIOS) + "; e.g. batch,offline,server"
    items = [p.strip().lower() for p in text.split(",")]
    if not text.strip() or any(not p for p in items):
        errors.append(f"{flag}: {text!r} has an empty entry ({allowed})")
        return ("batch",)
    unknown = [p for p in items if p not in SCENARIOS]
    if unknown:
        errors.append(f"{flag}: unknown scenario {unknown[0]!r} ({allowed})")
    return tuple(dict.fromkeys(p for p in items if p in SCENARIOS))


def _auto_batches(errors: Errors, flag: str, text: str) -> tuple[int, ...] | None:
    """auto (None) or a comma list of positive batch sizes."""
    if text.strip().lower() in ("auto", "none"):
        return None
    try:
        return parse_batch_sizes(text)
    except SettingsError as exc:
        errors.append(str(exc).replace("--densebench-batch-sizes", flag).replace("(allowed:", "(allowed: auto, or"))
        return None


def _auto_count(errors: Errors, flag: str, text: str) -> int | None:
    """auto (None) or an integer >= 1."""
    if text.strip().lower() in ("auto", "none"):
        return None
    value = _integer(1)(errors, flag, text)
    if errors and errors[-1].startswith(flag):
        errors[-1] = errors[-1].replace("(allowed:", "(allowed: auto, or")
    return value


def absolute_path(text: str | os.PathLike[str]) -> Path:
    """``text`` as an absolute path (``~`` expanded, relative to the current directory, links kept).

    Every path setting is made absolute once, here: the settings travel to other processes (isolated
    children, xdist workers) that run in another working directory, where a relative path would name
    another place."""
    return Path(text).expanduser().absolute()


def _path(errors: Errors, flag: str, text: str) -> Path:
    return absolute_path(text)


def _journal(errors: Errors, flag: str, text: str) -> str:
    value = text.strip()
    return value.lower() if value.lower() in ("", "auto", "off") else str(absolute_path(value))


def _output(errors: Errors, flag: str, text: str) -> Path:
    path = absolute_path(text)
    problem = _unwritable(path)
    if problem:
        errors.append(f"{flag}: {problem} (choose a writable directory)")
    return path


def _label(errors: Errors, flag: str, text: str) -> str:
    return "" if text.strip().lower() == "none" else text.strip()


STORE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


def parse_store(errors: Errors, flag: str, text: str) -> str | None:
    """off/none -> None; auto stays 'auto' (:func:`parse` makes it a SQLite file under the output); a URL."""
    value = text.strip()
    if value.lower() in ("", "off", "none"):
        return None
    if value.lower() == "auto":
        return "auto"
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in STORE_SCHEMES or (scheme == "sqlite" and not value.startswith("sqlite:///")):
        errors.append(f"{flag}: {redact_url(value)!r} is not a results store URL (allowed: off, auto, "
                      "sqlite:///PATH, postgresql://USER@HOST[:PORT]/DATABASE)")
    return value


def redact_url(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (for JSON, logs and messages)."""
    if not url or "://" not in url or "@" not in url.split("://", 1)[1].split("/", 1)[0]:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be used as an output directory (created later, on demand), or None.

    Tries a temporary file in the nearest existing ancestor: permission bits alone say
    nothing for root, and some file systems refuse writes whatever the bits say."""
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


# ---------------------------------------------------------------- the options

OPTIONS: tuple[Option, ...] = (
    Option("device", "auto", _device,
           "auto | cpu | cuda | cuda:N (auto: the first CUDA GPU if there is one, else cpu)",
           "`auto`, `cpu`, `cuda`, `cuda:N`", "DEVICE"),
    Option("optimizations", "all", _optimizations,
           "comma list of optimization names; stack techniques with '+' (channels_last+amp+compile); "
           "'all' = every registered optimization (unavailable ones are skipped with the reason); "
           "'best' = 'all' plus the stacks recommended for this device",
           "comma list; stacks with `+`; `all`; `best`", "NAMES"),
    Option("batch_sizes", "1,8,32", _batch_sizes, "comma list of positive batch sizes",
           "comma list of positive integers", "N,N,..."),
    Option("image_size", "224", _integer(32, "DenseNet-121 downsamples by 32: below 29 px its last block gets "
                                             "no pixel, and 32 is the smallest size it divides evenly"),
           "input height and width in pixels (>= 32)", "pixels, at least 32", "PIXELS"),
    Option("weights", "auto",
           _choice_or_path(("auto", "imagenet", "random"), "file",
                           "auto, imagenet, random, or the path of a DenseNet-121 state dict"),
           "auto | imagenet | random | PATH to a state dict (auto: ImageNet weights when cached or "
           "downloadable, else seeded random weights)",
           "`auto`, `imagenet`, `random`, or a state-dict path", "WEIGHTS"),
    Option("dataset", "auto",
           _choice_or_path(("auto", "tiny-imagenet", "synthetic"), "dir",
                           "auto, tiny-imagenet, synthetic, or the path of an ImageFolder tree: ROOT/<class>/<image>"),
           "auto | tiny-imagenet | synthetic | PATH to an ImageFolder tree (auto: Tiny ImageNet-200 "
           "validation images when present or downloadable, else synthetic)",
           "`auto`, `tiny-imagenet`, `synthetic`, or an ImageFolder path", "DATASET"),
    Option("data_dir", "~/.cache/densebench", _path, "where datasets are downloaded and extracted",
           "where datasets are downloaded and extracted", "DIR"),
    Option("output", "results", _output, "directory for traces, TensorBoard runs, caches and the results journal",
           "traces, TensorBoard runs, compile caches, journals", "DIR"),
    Option("eval_samples", "32", _integer(2, "parity's logit error is measured against the spread between "
                                              "images, which one image does not have"),
           "number of evaluation images for the parity check (>= 2: the logit error is measured against the "
           "spread between images, which one image does not have)",
           "images in the parity evaluation set, at least 2", "N"),
    Option("calibration_samples", "32", _integer(0),
           "images for post-training quantization (int8, openvino_int8, tensorrt_int8), taken after the parity "
           "images so the two sets do not overlap (>= 0)",
           "images for INT8 calibration, disjoint from the parity set", "N"),
    Option("latency_budget_ms", "none", _budget,
           "p99 latency budget: the summary names the highest-throughput configuration that fits it "
           "(the server question) next to peak throughput (the offline question)",
           "p99 budget: name the best configuration that fits it", "MS"),
    Option("scenarios", "batch", _scenarios,
           "comma list of scenarios: batch (fixed batches timed back to back, the default), and MLPerf LoadGen's "
           "offline (every sample at once: peak throughput), server (Poisson arrivals: the highest rate whose p99 "
           "stays within --densebench-latency-budget-ms) and singlestream (one query at a time), each behind a "
           "dynamic batcher; needs densebench[serving]",
           "`batch`, `offline`, `server`, `singlestream` (comma list; LoadGen ones need `densebench[serving]`)",
           "NAMES"),
    Option("batcher_max_batch", "auto", _auto_batches,
           "the dynamic batcher's largest batch: offline uses the largest given, server searches each (auto: "
           "offline the largest --densebench-batch-sizes; server the largest whose batch is served within half "
           "the latency budget, and 1)",
           "`auto`, or max batch sizes the server search tries", "N,N,..."),
    Option("batcher_max_delay_ms", "0", _fraction(upper=None),
           "how long the batcher waits after a batch's first request for more (0: it takes what is queued)",
           "batcher's queueing delay (0: greedy)", "MS"),
    Option("inflight", "auto", _auto_count,
           "batches in flight at once where the backend runs them asynchronously (OpenVINO's AsyncInferQueue "
           "with the THROUGHPUT hint); auto: the backend's optimal number; 1: synchronous",
           "`auto`, or batches in flight (asynchronous backends)", "N"),
    Option("scenario_duration_ms", "5000", _integer(100),
           "LoadGen's minimum duration of an offline or singlestream test (>= 100)",
           "minimum duration of an offline or singlestream test", "MS"),
    Option("server_search_s", "120", _integer(1),
           "time bound of the server search of one configuration: what was confirmed when it runs out stands",
           "time bound of one configuration's server search", "SECONDS"),
    Option("parity_top1", "0.95", _fraction(),
           "minimum top-1 agreement with the baseline (fraction of images whose top-1 class matches; "
           "flips between classes the baseline itself nearly tied are not counted, see tie band)",
           "minimum top-1 agreement with baseline", "FRAC"),
    Option("parity_tie_band", "0.005", _fraction(),
           "a top-1 flip is a near-tie when the baseline's gap between the two classes is below this "
           "fraction of the image's logit range",
           "flips on near-ties (gap < band x logit range) do not count", "FRAC"),
    Option("parity_top5", "0.99", _fraction(),
           "minimum top-5 agreement (fraction of images whose baseline top-1 class is in the top 5)",
           "minimum fraction with baseline's top-1 in the top 5", "FRAC"),
    Option("parity_logit_error", "0.5", _fraction(upper=None),
           "maximum logit error relative to how much the baseline logits vary between images "
           "(0 = identical, 1 = the input-dependent signal is gone)",
           "maximum logit error relative to the between-image spread", "RATIO"),
    Option("warmup", "3", _integer(1), "untimed warm-up forward passes per optimization and batch size (>= 1)",
           "untimed warm-up passes per optimization and batch size", "N"),
    Option("paired_rounds", "20", _integer(0),
           "after timing, pairs of rounds of this optimization and the baseline, interleaved (ABBA) in one "
           "window: extra_info.speedup is the median of the paired ratios with a bootstrap CI, and every pair's "
           "turn times (0 or 1 = off)",
           "interleaved rounds with the baseline for the paired speedup and its CI (`0` or `1`: off)", "N"),
    Option("paired_target_ci", "0.03", _fraction(),
           "after the first --densebench-paired-rounds pairs, more pairs (steps of 10) until the paired "
           "speedup's 95% CI half-width is at most this fraction of the ratio (0.03 = +-3%), up to "
           "--densebench-paired-max-rounds (0 = a fixed count of pairs)",
           "CI half-width the paired speedup runs more pairs to reach (`0`: fixed count)", "FRACTION"),
    Option("paired_max_rounds", "120", _integer(0),
           "most pairs the paired speedup may run to reach --densebench-paired-target-ci (at or below "
           "--densebench-paired-rounds: a fixed count)",
           "most pairs run to reach the target CI", "N"),
    Option("seed", "0", _integer(0), "seed for random weights and synthetic data",
           "random weights and synthetic data", "N"),
    Option("crosscheck", "true", _bool,
           "time each configuration a second way (CUDA events on GPU, torch.utils.benchmark on CPU) and "
           "record the ratio", "time each configuration a second, independent way", "BOOL"),
    Option("profile", "false", _bool,
           "after timing, profile a few extra rounds with torch.profiler: Chrome/Perfetto + TensorBoard "
           "traces under the output directory, top ops/kernels in extra_info",
           "profile extra rounds after timing: Chrome/Perfetto + TensorBoard traces", "BOOL"),
    Option("profile_rounds", "3", _integer(1), "rounds per profiled benchmark (>= 1)",
           "rounds per profiled benchmark", "N"),
    Option("tensorboard", "false", _bool,
           "write throughput, latency, memory and utilization scalars as TensorBoard event files "
           "(OUTPUT/tensorboard/RUN/OPTIMIZATION)", "write per-benchmark scalars as TensorBoard event files",
           "BOOL"),
    Option("telemetry_interval_ms", "20", _integer(1),
           "RSS sampling interval while timing, only where the kernel's peak-RSS mark cannot be reset (>= 1); "
           "the GPU is read from NVML's own sample buffers after the window",
           "RSS sampling interval where the kernel's peak mark cannot be reset (GPU: NVML's own buffers)", "MS"),
    Option("journal", "auto", _journal,
           "append each finished benchmark to a JSON-lines journal (fsync'd) so a crash loses nothing: auto "
           "(OUTPUT/journals/journal-RUN.jsonl), off, or a PATH",
           "results journal: `auto` (`<output>/journals/`), `off`, or a path", "PATH"),
    Option("isolate", "false", _bool,
           "build and benchmark each optimization in a child process, so a segfault, a hang or an OOM kill "
           "is recorded for that optimization and the run goes on (default true under 'densebench run')",
           "each optimization in a child process (crash/hang/OOM contained, per-optimization RSS); "
           "`true` under `densebench run`", "BOOL"),
    Option("timeout", "1800", _integer(1),
           "with --densebench-isolate: seconds one optimization may take (all batch sizes)",
           "with isolation: seconds one optimization may take", "SECONDS"),
    Option("offline", "false", _bool, "never download anything (auto weights and dataset fall back at once)",
           "never download (auto falls back at once)", "BOOL"),
    Option("store", "off", parse_store,
           "results store the run is written to at session end (needs --benchmark-json or --benchmark-autosave; "
           "a store failure is a warning, the JSON is kept): off, auto (OUTPUT/densebench.sqlite), "
           "sqlite:///PATH or postgresql://USER@HOST/DB (password: PGPASSWORD or ~/.pgpass)",
           "results database: `off`, `auto` (`<output>/densebench.sqlite`), `sqlite:///PATH`, "
           "`postgresql://...` (see docs/fleet.md)", "URL"),
    Option("machine_label", "none", _label,
           "a label for this machine in the results store (e.g. the runner group 'l4'); part of the machine key "
           "with the CPU model, core count, GPU names and UUIDs and driver",
           "label of this machine in the results store (part of its key)", "LABEL"),
)

OPTIONS_BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """A densebench run's configuration, validated. Build it with :meth:`from_sources` or
    :meth:`from_mapping`; the defaults live only in :data:`OPTIONS`."""

    device: str  # auto | cpu | cuda | cuda:N
    optimizations: tuple[str, ...]  # resolved names, stacks joined with '+'
    batch_sizes: tuple[int, ...]
    image_size: int  # pixels
    weights: str
    dataset: str
    data_dir: Path
    output: Path
    eval_samples: int
    calibration_samples: int
    latency_budget_ms: float | None
    scenarios: tuple[str, ...]  # batch | offline | server | singlestream
    batcher_max_batch: tuple[int, ...] | None  # None: auto
    batcher_max_delay_ms: float
    inflight: int | None  # None: auto
    scenario_duration_ms: int
    server_search_s: int
    parity_top1: float
    parity_tie_band: float
    parity_top5: float
    parity_logit_error: float
    warmup: int
    paired_rounds: int  # pairs of rounds with the baseline, interleaved; 0 = no paired speedup
    paired_target_ci: float  # CI half-width (fraction of the ratio) that more pairs aim for; 0 = fixed count
    paired_max_rounds: int  # most pairs to reach paired_target_ci
    seed: int
    crosscheck: bool
    profile: bool
    profile_rounds: int
    tensorboard: bool
    telemetry_interval_ms: int
    journal: str  # auto | off | PATH
    isolate: bool
    timeout: int  # seconds
    offline: bool
    store: str | None  # None (off) or a SQLAlchemy URL
    machine_label: str

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            if f.name == "store":
                value = redact_url(value)  # saved JSON never carries a database password
            out[f.name] = value
        return out

    @classmethod
    def from_sources(cls, flag: Callable[[Option], str | None],
                     ini: Callable[[Option], str | None] = lambda o: None) -> Settings:
        """Settings from raw strings: the flag, else the environment, else the ini key, else the default."""
        return parse({opt.key: raw_value(opt, flag, ini) or opt.default for opt in OPTIONS})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from keyword values (strings or already-typed), defaults for the rest.

        Raises SettingsError for an unknown key or an invalid value."""
        unknown = sorted(set(values) - set(OPTIONS_BY_KEY))
        if unknown:
            raise SettingsError(f"unknown densebench setting(s): {', '.join(unknown)}; "
                                f"allowed: {', '.join(OPTIONS_BY_KEY)}")

        return cls.from_sources(lambda o: value_text(values[o.key]) if o.key in values else None)


if [f.name for f in dataclasses.fields(Settings)] != [o.key for o in OPTIONS]:  # pragma: no cover
    raise AssertionError("densebench: Settings fields and OPTIONS disagree (same names, same order)")


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
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(x) for x in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _device_kind(device: str, optimizations: str) -> str:
    """'cpu' or 'cuda': what 'best' is expanded for (auto asks torch, only when 'best' is used)."""
    if device == "auto" and "best" in optimizations:
        import torch  # heavy, optional: only for 'best' on 'auto'

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def parse(raw: Mapping[str, str]) -> Settings:
    """Validate raw option strings (every key of OPTIONS); raise one SettingsError listing every problem."""
    from .optimizations import resolve_names  # the registry: light, imports no torch

    errors: Errors = []
    values = {opt.key: opt.parse(errors, opt.flag, raw[opt.key]) for opt in OPTIONS}
    try:
        values["optimizations"] = resolve_names(raw["optimizations"],
                                                _device_kind(values["device"], raw["optimizations"]))
    except SettingsError as exc:
        errors.append(str(exc))
        values["optimizations"] = ()
    values["journal"] = values["journal"] or "auto"
    if values["store"] == "auto":
        values["store"] = f"sqlite:///{Path(values['output']).expanduser().resolve() / 'densebench.sqlite'}"
    if errors:
        raise SettingsError("invalid densebench configuration:\n  " + "\n  ".join(errors))
    return Settings(**values)


def markdown_table() -> str:
    """The README's option table, generated from :data:`OPTIONS` (a test keeps the README in step)."""
    lines = ["| flag | environment variable | default | allowed / meaning |", "|---|---|---|---|"]
    lines += [f"| `{o.flag}` | `{o.env}` | `{o.default}` | {o.summary} |" for o in OPTIONS]
    return "\n".join(lines)
