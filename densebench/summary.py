"""Derived facts from measured results: best per batch size, speedups, what was skipped.

Used by the terminal summary at the end of a pytest run and by ``densebench report``.
Every statement is computed from the records given; nothing here is canned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import noise
from .paired import PairedRatio
from .records import PROBLEM_STATUSES, TIMED_STATUSES, Status
from .scenarios import scenario_key


@dataclass(frozen=True)
class Row:
    optimization: str
    batch_size: int
    throughput: float  # samples/s
    p99_ms: float | None
    peak_memory_mb: float | None
    parity_passed: bool
    precision: str | None = None
    label: str = ""  # machine/run label when several runs are merged
    paired: dict[str, Any] | None = None  # extra_info.speedup: the paired speedup over baseline with its CI


def rows_from_outcomes(outcomes: Iterable[dict[str, Any]]) -> list[Row]:
    rows = []
    for o in outcomes:
        if o.get("status") not in TIMED_STATUSES or not o.get("throughput_samples_per_s"):
            continue
        rows.append(Row(o["optimization"], int(o["batch_size"]), float(o["throughput_samples_per_s"]),
                        (o.get("latency_ms") or {}).get("p99"), o.get("peak_memory_mb"),
                        o.get("status") == Status.MEASURED, o.get("precision"), paired=o.get("speedup")))
    return rows


def by_batch(rows: Iterable[Row]) -> dict[tuple[str, int], list[Row]]:
    groups: dict[tuple[str, int], list[Row]] = defaultdict(list)
    for r in rows:
        groups[(r.label, r.batch_size)].append(r)
    return dict(sorted(groups.items()))


def sequential_speedup(row: Row, group: list[Row]) -> float | None:
    """Throughput over the baseline's, each timed in its own window (load between them distorts it)."""
    base = next((r for r in group if r.optimization == "baseline"), None)
    return row.throughput / base.throughput if base else None


def speedup(row: Row, group: list[Row]) -> float | None:
    """The paired speedup (baseline and this interleaved in one window) when measured, else the sequential one."""
    if row.paired:
        return float(row.paired["ratio"])
    return 1.0 if row.optimization == "baseline" else sequential_speedup(row, group)


def speedup_text(row: Row, group: list[Row]) -> str:
    """'2.31x [2.25-2.37]' (paired, with its CI), '2.31x (sequential)' without pairs, '—' without a baseline."""
    if row.paired:
        p = row.paired
        return f"{p['ratio']:.2f}x [{p['ci_low']:.2f}-{p['ci_high']:.2f}]"
    sp = speedup(row, group)
    if sp is None:
        return "—"
    return f"{sp:.2f}x" if row.optimization == "baseline" else f"{sp:.2f}x (sequential)"


def best(group: list[Row]) -> Row | None:
    """The fastest row whose parity passed."""
    ok = [r for r in group if r.parity_passed]
    return max(ok, key=lambda r: r.throughput) if ok else None


def best_under_budget(rows: Iterable[Row], budget_ms: float) -> Row | None:
    """Highest-throughput (optimization, batch size) whose p99 latency fits the budget."""
    fit = [r for r in rows if r.parity_passed and r.p99_ms is not None and r.p99_ms <= budget_ms]
    return max(fit, key=lambda r: r.throughput) if fit else None


def paired_target_line(outcomes: Iterable[dict[str, Any]], target: float, shown: int = 4) -> str | None:
    """One line naming the paired speedups whose 95% CI half-width (relative to the ratio) is still above
    ``target`` (0.03 = +-3%, ``--densebench-paired-target-ci``), widest first, with the pairs each took and,
    where the bootstrap resampled blocks of autocorrelated pairs, their length;
    None when every one reached it or ``target`` is 0 (a fixed count of pairs, no target)."""
    measured = [(PairedRatio.from_json(o["speedup"]), o) for o in outcomes if o.get("speedup")]
    wide = sorted((m for m in measured if m[0].half_width > target), key=lambda m: -m[0].half_width)
    if target <= 0 or not wide:
        return None
    named = ", ".join(f"{o['optimization']} at batch {o['batch_size']} +-{r.half_width:.1%} after {r.pairs} pairs"
                      + (f" (autocorrelated pairs: bootstrap blocks of {r.block})" if r.block > 1 else "")
                      for r, o in wide[:shown])
    more = f" and {len(wide) - shown} more" if len(wide) > shown else ""
    return (f"densebench: paired speedups: {len(wide)} of {len(measured)} did not reach the "
            f"+-{target * 100:g}% CI target: {named}{more}; more pairs (--densebench-paired-max-rounds) or a "
            "quieter machine may narrow them; each CI is in extra_info.speedup")


def terminal_lines(outcomes: list[dict[str, Any]], latency_budget_ms: float | None = None,
                   noise_gate: noise.Gate = noise.DEFAULT_GATE, paired_target: float = 0.0) -> list[str]:
    """The run in a few lines: best per batch size, the latency budget's answer, one line on noise beyond
    ``noise_gate`` (per-benchmark detail stays in the JSON), one on paired speedups whose CI is still wider
    than ``paired_target`` (:func:`paired_target_line`), and what was skipped or failed."""
    rows = rows_from_outcomes(outcomes)
    lines = []
    for (_, bs), group in by_batch(rows).items():
        top = best(group)
        if top is None:
            lines.append(f"batch {bs}: no optimization passed parity")
            continue
        sp = speedup_text(top, group)
        text = f"batch {bs}: best {top.optimization} {top.throughput:.1f} img/s"
        text += f" ({sp} baseline)" if sp != "—" else " (baseline not measured)"
        if top.p99_ms is not None:
            text += f", p99 {top.p99_ms:.2f} ms"
        if top.peak_memory_mb is not None:
            text += f", peak memory {top.peak_memory_mb:.0f} MB"
        lines.append(text)
    if latency_budget_ms is not None and rows:  # a run of serving scenarios alone has no batch rows
        fit = best_under_budget(rows, latency_budget_ms)
        peak = best(rows)
        if fit:
            lines.append(f"latency budget {latency_budget_ms:g} ms (p99): {fit.optimization} at batch {fit.batch_size}"
                         f" gives {fit.throughput:.1f} img/s (p99 {fit.p99_ms:.2f} ms)")
        else:
            lines.append(f"latency budget {latency_budget_ms:g} ms (p99): no measured configuration fits")
        if peak:
            lines.append(f"peak throughput (no budget): {peak.optimization} at batch {peak.batch_size}, "
                         f"{peak.throughput:.1f} img/s")
    lines += [line for line in (noise.run_warning(outcomes, noise_gate), paired_target_line(outcomes, paired_target))
              if line]
    seen: set[tuple[str, str]] = set()
    for o in outcomes:
        if o["status"] in PROBLEM_STATUSES:
            key = (o["optimization"], o.get("reason") or "")
            if o["status"] == Status.SKIPPED and key in seen:
                continue
            seen.add(key)
            reason = o.get("reason") or ""
            if reason.startswith("out of memory:"):  # already names the optimization and batch size
                lines.append(f"{o['status']}: {reason}")
                continue
            where = f" at batch {o['batch_size']}" if o.get("batch_size") and o["status"] != Status.SKIPPED else ""
            lines.append(f"{o['status']}: {o['optimization']}{where}: {reason}")
    return lines


def recommendations(outcomes: list[dict[str, Any]], latency_budget_ms: float | None) -> dict[str, Any]:
    """The run-level answers: fastest passing configuration per batch size ('best'), peak throughput
    over every batch size ('offline') and, with a budget, the best configuration whose p99 fits ('server')."""
    rows = rows_from_outcomes(outcomes)
    best_rows = []
    for (_, bs), group in by_batch(rows).items():
        top = best(group)
        if top is not None:
            best_rows.append({"batch_size": bs, "optimization": top.optimization,
                              "throughput_samples_per_s": top.throughput, "p99_ms": top.p99_ms,
                              "speedup_vs_baseline": speedup(top, group)})
    peak = best(rows)  # the fastest passing configuration at any batch size
    out: dict[str, Any] = {"best": best_rows, "offline": None, "server": None}
    if peak is not None:
        out["offline"] = {"optimization": peak.optimization, "batch_size": peak.batch_size,
                          "throughput_samples_per_s": peak.throughput, "p99_ms": peak.p99_ms}
    if latency_budget_ms is not None and rows:  # a run of serving scenarios alone has no batch rows
        fit = best_under_budget(rows, latency_budget_ms)
        out["server"] = {"latency_budget_ms": latency_budget_ms, "fits": fit is not None}
        if fit is not None:
            out["server"].update({"optimization": fit.optimization, "batch_size": fit.batch_size,
                                  "throughput_samples_per_s": fit.throughput, "p99_ms": fit.p99_ms})
    return out


def scenario_lines(scenarios: list[dict[str, Any]]) -> list[str]:
    """One line per serving scenario outcome (``densebench.scenarios``): the server answer (highest rate LoadGen
    confirmed VALID within the p99 budget), offline and singlestream throughput, or why there is none."""
    lines = []
    for s in scenarios:
        name = scenario_key(s["optimization"], s["scenario"])
        if s.get("status") not in TIMED_STATUSES:
            lines.append(f"{name}: {s.get('status')}: {s.get('reason')}")
            continue
        where = f"max batch {s.get('max_batch')}" + (f", {s['in_flight']} in flight" if s.get("in_flight") else "")
        if s["scenario"] == "server":
            rate = s.get("highest_valid_qps")
            text = (f"{name}: {rate:.1f} queries/s sustained within p99 {s.get('latency_budget_ms'):g} ms "
                    f"(LoadGen VALID; p99 {s.get('p99_ms') or float('nan'):.1f} ms, {where})" if rate else
                    f"{name}: no rate confirmed VALID within p99 {s.get('latency_budget_ms'):g} ms ({where}"
                    + "".join(f"; {reason}" for reason in (s.get("invalid_reasons") or [])[:2]) + ")")
        else:
            p99 = s.get("p99_ms")
            text = (f"{name}: {s.get('achieved_qps') or 0:.1f} samples/s ({where}"
                    + (f", p99 {p99:.1f} ms" if p99 is not None else "")
                    + (")" if s.get("valid") else ", LoadGen: INVALID)"))
        if s.get("status") == Status.PARITY_FAILED:
            text += f" -- accuracy FAILED: {s.get('reason')}"
        lines.append(text)
    return lines
