"""``densebench compare BASE.json NEW.json``: did performance change, beyond noise?

For each optimization x batch size present in both files, the change in median round
time (and throughput) comes with a bootstrap confidence interval computed from the raw
round timings (``stats.data``, which ``--benchmark-json`` and ``--benchmark-save-data``
keep). A change is flagged only when it is both larger than ``--threshold`` and
significant (the interval excludes "no change"). A flagged slowdown makes the exit
status 1. Results from different devices are refused unless ``--allow-different-devices``:
they are not the same machine.

It complements pytest-benchmark's own gate (``--benchmark-compare-fail``), which checks a
threshold on one statistic without a significance test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .report import ReportError, load


@dataclass(frozen=True)
class Change:
    optimization: str
    batch_size: int
    base_median_ms: float
    new_median_ms: float
    change: float  # new/base - 1 of the median round time (+ = slower)
    ci_low: float | None
    ci_high: float | None
    base_throughput: float
    new_throughput: float
    verdict: str  # regression | improvement | within threshold | within noise | untested (no raw timings)

    @property
    def flagged(self) -> bool:
        return self.verdict == "regression"


def _key(bench: dict[str, Any]) -> tuple[str, int] | None:
    info = bench.get("extra_info") or {}
    params = bench.get("params") or {}
    opt = info.get("optimization") or params.get("optimization")
    bs = info.get("batch_size") or params.get("batch_size")
    return (str(opt), int(bs)) if opt is not None and bs is not None else None


def _device(doc: dict[str, Any]) -> str:
    for bench in doc["benchmarks"]:
        name = (bench.get("extra_info") or {}).get("device_name")
        if name:
            return str(name)
    return "unknown device"


def bootstrap_ratio(base: list[float], new: list[float], resamples: int, confidence: float,
                    seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of median(new) / median(base)."""
    rng = np.random.default_rng(seed)
    b = np.asarray(base, dtype=float)
    n = np.asarray(new, dtype=float)
    b_med = np.median(rng.choice(b, size=(resamples, b.size), replace=True), axis=1)
    n_med = np.median(rng.choice(n, size=(resamples, n.size), replace=True), axis=1)
    ratios = n_med / b_med
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(low), float(high)


def compare(base_path: Path, new_path: Path, threshold: float = 0.05, confidence: float = 0.95,
            resamples: int = 2000, seed: int = 0, allow_different_devices: bool = False) -> list[Change]:
    base_doc, new_doc = load(base_path), load(new_path)
    base_dev, new_dev = _device(base_doc), _device(new_doc)
    if base_dev != new_dev and not allow_different_devices:
        raise ReportError(f"{base_path} ran on '{base_dev}' but {new_path} on '{new_dev}': different devices are "
                          "not the same machine; compare like with like (or pass --allow-different-devices)")
    base = {k: b for b in base_doc["benchmarks"] if (k := _key(b))}
    new = {k: b for b in new_doc["benchmarks"] if (k := _key(b))}
    changes = []
    for key in sorted(set(base) & set(new), key=lambda k: (k[1], k[0])):
        b, n = base[key]["stats"], new[key]["stats"]
        b_med, n_med = b["median"], n["median"]
        change = n_med / b_med - 1
        b_data, n_data = b.get("data"), n.get("data")
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
        bs = key[1]
        changes.append(Change(key[0], bs, b_med * 1e3, n_med * 1e3, change, ci_low, ci_high, bs / b_med, bs / n_med,
                              verdict))
    if not changes:
        raise ReportError(f"{base_path} and {new_path} have no optimization x batch size in common")
    return changes


def markdown(changes: list[Change], base: Path, new: Path, threshold: float, confidence: float) -> str:
    flagged = [c for c in changes if c.flagged]
    head = (f"### densebench compare: {len(flagged)} regression(s)" if flagged
            else "### densebench compare: no regression")
    lines = [head, "",
             f"`{base}` → `{new}`; flagged when the median round time changes by more than "
             f"{threshold:.0%} and the {confidence:.0%} bootstrap interval excludes no change.", "",
             "| optimization | batch | base ms | new ms | change | CI | img/s base → new | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for c in changes:
        ci = "—" if c.ci_low is None else f"[{c.ci_low:+.1%}, {c.ci_high:+.1%}]"
        verdict = f"**{c.verdict}**" if c.verdict in ("regression", "improvement") else c.verdict
        lines.append(f"| {c.optimization} | {c.batch_size} | {c.base_median_ms:.3f} | {c.new_median_ms:.3f} | "
                     f"{c.change:+.1%} | {ci} | {c.base_throughput:.1f} → {c.new_throughput:.1f} | {verdict} |")
    return "\n".join(lines) + "\n"


def summary_line(changes: list[Change]) -> str:
    flagged = [c for c in changes if c.flagged]
    if not flagged:
        return f"densebench compare: no regression in {len(changes)} comparisons"
    worst = max(flagged, key=lambda c: c.change)
    return (f"densebench compare: {len(flagged)} regression(s); worst {worst.optimization} at batch "
            f"{worst.batch_size}: {worst.change:+.1%} median round time "
            f"(CI {worst.ci_low:+.1%} to {worst.ci_high:+.1%})")

