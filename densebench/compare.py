"""``densebench compare BASE.json NEW.json``: did performance change, beyond noise?

For each optimization x batch size present in both files, the change in median round
time (and throughput) comes with a bootstrap confidence interval computed from the raw
round timings (``stats.data``, which ``--benchmark-json`` and ``--benchmark-save-data``
keep). A change is flagged only when it is both larger than ``--threshold`` and
significant (the interval excludes "no change"). A configuration the base measured that
the new run lacks (``missing``, with the new run's reason when it has one) and one whose
parity passed in the base and fails in the new run (``parity failed``) are flagged too:
a gate must not pass because the slow or wrong configuration disappeared. Any flag makes
the exit status 1. A configuration only the new run has is listed as ``not in base``.

Two runs are comparable only when they measured the same thing: the device, the image
size, the weights, the dataset and the parity settings must agree. Otherwise the
comparison is refused and every difference is named (exit status 2), unless
``--allow-different-devices`` / ``--allow-different-settings`` says to go on.

It complements pytest-benchmark's own gate (``--benchmark-compare-fail``), which checks a
threshold on one statistic without a significance test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paired import bootstrap_ratio
from .report import ReportError, load

FLAGGED = ("regression", "missing", "parity failed")  # verdicts that fail the gate


@dataclass(frozen=True)
class Change:
    """One configuration of either run, and how it compares. Times in ms, throughput in images/s; the
    figures of the side that lacks the configuration, the change and the interval are then None."""

    optimization: str
    batch_size: int
    base_median_ms: float | None
    new_median_ms: float | None
    change: float | None  # new/base - 1 of the median round time (+ = slower)
    ci_low: float | None
    ci_high: float | None
    base_throughput: float | None
    new_throughput: float | None
    # regression | improvement | within threshold | within noise | untested (no raw timings)
    # | missing | parity failed | not in base
    verdict: str
    note: str = ""  # why: the new run's outcome for a missing configuration, the parity failures

    @property
    def flagged(self) -> bool:
        return self.verdict in FLAGGED


def _key(bench: dict[str, Any]) -> tuple[str, int] | None:
    info = bench.get("extra_info") or {}
    params = bench.get("params") or {}
    opt = info.get("optimization") or params.get("optimization")
    bs = info.get("batch_size") or params.get("batch_size")
    if info.get("scenario") or params.get("scenario"):
        # A serving scenario's rounds are per-query latencies at the rate that run found: two runs' medians are
        # not comparable. Its answers (highest valid rate, offline throughput) are in the report.
        return None
    return (str(opt), int(bs)) if opt is not None and bs is not None else None


def _device(doc: dict[str, Any]) -> str:
    for bench in doc["benchmarks"]:
        name = (bench.get("extra_info") or {}).get("device_name")
        if name:
            return str(name)
    return "unknown device"


def _first(doc: dict[str, Any], key: str) -> Any:
    """``key`` of the first benchmark's extra_info that has it."""
    return next((info[key] for b in doc["benchmarks"] if key in (info := b.get("extra_info") or {})), None)


def _measured_what(doc: dict[str, Any]) -> dict[str, Any]:
    """What a run measured, beyond the device: the settings two comparable runs share (None: not recorded)."""
    dense = doc.get("densebench") or {}
    settings = dense.get("settings") or {}
    weights, dataset = dense.get("weights") or {}, dense.get("dataset") or {}
    weights_source = weights.get("source") or _first(doc, "weights")
    what = {
        "image size (--densebench-image-size)": _first(doc, "image_size") or settings.get("image_size"),
        "weights (--densebench-weights)": weights_source and " ".join(
            str(x) for x in (weights_source, weights.get("path") or "",
                             f"seed {weights['seed']}" if weights.get("seed") is not None else "") if x),
        "dataset (--densebench-dataset)": (dataset.get("source") or _first(doc, "dataset")) and " ".join(
            str(x) for x in (dataset.get("source") or _first(doc, "dataset"), dataset.get("path") or "") if x),
        "parity images (--densebench-eval-samples)": settings.get("eval_samples"),
    }
    for key in ("parity_top1", "parity_top5", "parity_logit_error", "parity_tie_band"):
        what[f"parity threshold (--densebench-{key.replace('_', '-')})"] = settings.get(key)
    return what


def differences(base_doc: dict[str, Any], new_doc: dict[str, Any]) -> list[str]:
    """One line per setting two runs do not share (a setting only one of them recorded is not compared)."""
    base, new = _measured_what(base_doc), _measured_what(new_doc)
    return [f"{name}: {base[name]} in the base, {new[name]} in the new run" for name in base
            if base[name] is not None and new[name] is not None and base[name] != new[name]]


def _median_s(bench: dict[str, Any], path: Path) -> float:
    median = (bench.get("stats") or {}).get("median")
    if not isinstance(median, (int, float)) or not median > 0:
        raise ReportError(f"{path}: benchmark {bench.get('name')!r} has no positive median round time "
                          f"(stats.median = {median!r}); the file is damaged or was edited")
    return float(median)


def _timed(key: tuple[str, int], b: dict[str, Any], n: dict[str, Any], paths: tuple[Path, Path], threshold: float,
           confidence: float, resamples: int, seed: int) -> Change:
    """The change in median round time of one configuration both runs measured."""
    b_med, n_med = _median_s(b, paths[0]), _median_s(n, paths[1])
    change = n_med / b_med - 1
    b_data, n_data = b["stats"].get("data"), n["stats"].get("data")
    if b_data and n_data and len(b_data) >= 2 and len(n_data) >= 2:
        low, high = bootstrap_ratio(b_data, n_data, resamples, confidence, seed)
        ci_low, ci_high = low - 1, high - 1
        significant = ci_low > 0 or ci_high < 0
        if abs(change) <= threshold:
            verdict = "within threshold"
        elif not significant:
            verdict = "within noise"
        else:
            verdict = "regression" if change > 0 else "improvement"
    else:
        ci_low = ci_high = None
        verdict = "untested (no raw timings)" if abs(change) > threshold else "within threshold"
    note = ""
    b_parity = (b.get("extra_info") or {}).get("parity") or {}
    n_parity = (n.get("extra_info") or {}).get("parity") or {}
    if b_parity.get("passed", True) and not n_parity.get("passed", True):
        verdict = "parity failed"
        note = "passed parity in the base, fails it now: " + "; ".join(n_parity.get("failures") or [])
    bs = key[1]
    return Change(key[0], bs, b_med * 1e3, n_med * 1e3, change, ci_low, ci_high, bs / b_med, bs / n_med, verdict, note)


def _missing(key: tuple[str, int], b: dict[str, Any], base_path: Path, new_doc: dict[str, Any]) -> Change:
    """A configuration the base measured and the new run did not: what the new run says happened to it."""
    b_med = _median_s(b, base_path)
    said = [o for o in (new_doc.get("densebench") or {}).get("outcomes") or []
            if o.get("optimization") == key[0] and o.get("batch_size") in (key[1], None)]
    note = (f"{said[-1].get('status')}: {said[-1].get('reason')}" if said
            else "not in the new run (not collected, or the run was cut short before it)")
    return Change(key[0], key[1], b_med * 1e3, None, None, None, None, key[1] / b_med, None, "missing", note)


def compare(base_path: Path, new_path: Path, threshold: float = 0.05, confidence: float = 0.95,
            resamples: int = 2000, seed: int = 0, allow_different_devices: bool = False,
            allow_different_settings: bool = False) -> list[Change]:
    """Every configuration the base measured, compared with the new run (see the module docstring).

    Raises ReportError for unreadable files, runs from different devices or settings (unless allowed)
    and files with nothing in common."""
    base_doc, new_doc = load(base_path), load(new_path)
    base_dev, new_dev = _device(base_doc), _device(new_doc)
    if base_dev != new_dev and not allow_different_devices:
        raise ReportError(f"{base_path} ran on '{base_dev}' but {new_path} on '{new_dev}': different devices are "
                          "not the same machine; compare like with like (or pass --allow-different-devices)")
    different = differences(base_doc, new_doc)
    if different and not allow_different_settings:
        raise ReportError(f"{base_path} and {new_path} did not measure the same thing, so their times cannot be "
                          "compared:\n  " + "\n  ".join(different) + "\nrun both with the same settings (or pass "
                          "--allow-different-settings to compare anyway)")
    base = {k: b for b in base_doc["benchmarks"] if (k := _key(b))}
    new = {k: b for b in new_doc["benchmarks"] if (k := _key(b))}
    if base and not set(base) & set(new) and new:
        raise ReportError(f"{base_path} and {new_path} have no optimization x batch size in common")
    changes = [_timed(key, base[key], new[key], (base_path, new_path), threshold, confidence, resamples, seed)
               if key in new else _missing(key, base[key], base_path, new_doc)
               for key in sorted(base, key=lambda k: (k[1], k[0]))]
    changes += [Change(key[0], key[1], None, _median_s(new[key], new_path) * 1e3, None, None, None, None,
                       key[1] / _median_s(new[key], new_path), "not in base",
                       "measured only in the new run: nothing to compare it with")
                for key in sorted(set(new) - set(base), key=lambda k: (k[1], k[0]))]
    if not changes:
        raise ReportError(f"{base_path} has no densebench benchmark to compare")
    return changes


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def _num(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown(changes: list[Change], base: Path, new: Path, threshold: float, confidence: float) -> str:
    flagged = [c for c in changes if c.flagged]
    head = f"### densebench compare: {_counts(flagged)}" if flagged else "### densebench compare: no regression"
    lines = [head, "",
             f"`{base}` → `{new}`; flagged when the median round time changes by more than "
             f"{threshold:.0%} and the {confidence:.0%} bootstrap interval excludes no change, when a "
             "configuration of the base is missing, or when parity that passed now fails.", "",
             "| optimization | batch | base ms | new ms | change | CI | img/s base → new | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for c in changes:
        ci = "—" if c.ci_low is None or c.ci_high is None else f"[{c.ci_low:+.1%}, {c.ci_high:+.1%}]"
        verdict = f"**{c.verdict}**" if c.verdict in ("improvement", *FLAGGED) else c.verdict
        if c.note:
            verdict += f": {c.note}".replace("|", "/")
        lines.append(f"| {c.optimization} | {c.batch_size} | {_num(c.base_median_ms, '.3f')} | "
                     f"{_num(c.new_median_ms, '.3f')} | {_pct(c.change)} | {ci} | "
                     f"{_num(c.base_throughput, '.1f')} → {_num(c.new_throughput, '.1f')} | {verdict} |")
    return "\n".join(lines) + "\n"


def _counts(flagged: list[Change]) -> str:
    kinds = {"regression(s)": "regression", "missing": "missing", "parity failure(s)": "parity failed"}
    counts = {name: sum(c.verdict == verdict for c in flagged) for name, verdict in kinds.items()}
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n)


def summary_line(changes: list[Change]) -> str:
    flagged = [c for c in changes if c.flagged]
    if not flagged:
        return f"densebench compare: no regression in {len(changes)} comparisons"
    parts = []
    slower = [c for c in flagged if c.verdict == "regression"]
    if slower:
        worst = max(slower, key=lambda c: c.change or 0.0)
        parts.append(f"{len(slower)} regression(s); worst {worst.optimization} at batch {worst.batch_size}: "
                     f"{_pct(worst.change)} median round time (CI {_pct(worst.ci_low)} to {_pct(worst.ci_high)})")
    parts += [f"{c.verdict}: {c.optimization} at batch {c.batch_size} ({c.note})"
              for c in flagged if c.verdict != "regression"]
    return "densebench compare: " + "; ".join(parts)
