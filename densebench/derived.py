"""The run-level fields derived from a run's records, computed in this one place.

``best``, ``offline``, ``server`` (summary.recommendations), ``setup_s``, ``skipped``,
``never_ran`` and ``complete`` are functions of the outcomes, the saved benchmarks and the
configurations the run planned. A finished run (roles/base.py), a journal recovered after a
kill (journal.py, ``densebench recover``) and a file loaded for a report (report.py) all get
them from :func:`fill`, so a recovered or merged run is as complete as a finished one, and a run
that was cut short says so and names what never ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import summary
from .measure import Measurement
from .records import TIMED_STATUSES, Status

_SKIPS = (Status.SKIPPED, Status.OOM)


def _config(optimization: Any, batch_size: Any) -> tuple[str, int | None]:
    return str(optimization), None if batch_size is None else int(batch_size)


def outcomes_of(outcomes: Iterable[dict[str, Any]], benchmarks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcomes, plus one for each saved benchmark that has none (a kill between the benchmark's
    journal line and its outcome's): rebuilt from the benchmark's own ``extra_info``."""
    out = list(outcomes)
    have = {_config(o.get("optimization"), o.get("batch_size")) for o in out}
    for bench in benchmarks:
        info = bench.get("extra_info") or {}
        if info.get("scenario"):  # a serving scenario: densebench.scenarios, not an outcome
            continue
        if info.get("optimization") is None or info.get("batch_size") is None or "parity" not in info:
            continue
        if _config(info["optimization"], info["batch_size"]) not in have:
            out.append(Measurement(info).outcome().to_json())
    return out


def planned(info: dict[str, Any]) -> list[tuple[str, int]]:
    """The configurations the run meant to measure: as collected when known, else the settings' product."""
    if info.get("planned") is not None:  # [] when only serving scenarios were collected
        return [_config(c["optimization"], c["batch_size"]) for c in info["planned"]]
    settings = info.get("settings") or {}
    return [(str(o), int(b)) for o in settings.get("optimizations") or () for b in settings.get("batch_sizes") or ()]


def _never_ran(info: dict[str, Any], outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = {_config(o["optimization"], o.get("batch_size")) for o in outcomes}
    whole = {o for o, b in done if b is None}  # an outcome about every batch size of an optimization
    return [{"optimization": o, "batch_size": b} for o, b in dict.fromkeys(planned(info))
            if (o, b) not in done and o not in whole]


def fill(info: dict[str, Any], benchmarks: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """Set the derived fields of a run record (the top-level ``densebench`` object, as JSON) in place.

    ``complete`` stays False when it was False already (a journal without its end marker); otherwise
    it is whether every planned configuration has an outcome. Returns ``info``.
    """
    outcomes = outcomes_of([o for o in info.get("outcomes") or [] if isinstance(o, dict) and o.get("optimization")],
                           benchmarks)
    info["outcomes"] = outcomes
    timed = [o for o in outcomes if o.get("status") in TIMED_STATUSES]
    build = sum(o.get("build_s") or 0.0 for o in timed)
    warm = sum(o.get("warmup_s") or 0.0 for o in timed)
    info["setup_s"] = {"total": build + warm, "build": build, "warmup": warm}
    budget = (info.get("settings") or {}).get("latency_budget_ms")
    info.update(summary.recommendations(outcomes, budget))
    info["skipped"] = [o for o in outcomes if o.get("status") in _SKIPS]
    info["never_ran"] = _never_ran(info, outcomes)
    info["complete"] = info.get("complete") is not False and not info["never_ran"]
    return info


def incompleteness(info: dict[str, Any]) -> list[str]:
    """Sentences for a report: empty for a complete run; else that it was cut short and what never ran."""
    if info.get("complete") is not False and not info.get("never_ran"):
        return []
    how = ("recovered from a journal without its end marker (the run crashed or was killed)"
           if info.get("recovered_from") else "the run ended before every planned configuration ran")
    lines = [f"incomplete run: {how}."]
    missing = info.get("never_ran") or []
    if missing:
        lines.append("never ran: " + ", ".join(f"{c['optimization']} at batch {c['batch_size']}" for c in missing)
                     + ".")
    return lines
