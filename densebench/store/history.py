"""``densebench history``: per machine, optimization, batch size and metric, the series over runs and
its change points (see changepoints.py), each with the runs before and after, the step, its
confidence and what changed between those two runs (settings, library versions, commit).

Machines with different keys are never mixed: a series belongs to one machine key.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from . import changepoints, schema

DEFAULT_METRICS = ("throughput_samples_per_s", "latency_p99_ms", "peak_memory_mb", "energy_per_image_j",
                   "cpu_ms_per_image")


@dataclass(frozen=True)
class Point:
    """One run's value of a series."""

    run_id: int
    run_name: str | None
    started_at: datetime.datetime
    value: float
    image_size: int | None
    precision: str | None
    git_commit: str | None
    torch_version: str | None
    densebench_version: str | None
    source: str | None


@dataclass(frozen=True)
class Machine:
    key: str
    label: str
    cpu_model: str | None
    logical_cpus: int | None
    gpus: list[dict[str, Any]]
    driver_version: str | None
    node: str | None

    @property
    def title(self) -> str:
        gpus = ", ".join(str(g.get("name")) for g in self.gpus) or "no GPU"
        label = f"{self.label} · " if self.label else ""
        return f"{label}{self.cpu_model} ({self.logical_cpus} CPUs) · {gpus} · {self.key[:12]}"


@dataclass(frozen=True)
class ChangePoint:
    """A change point of one series, between run ``before`` (last of the old segment) and ``after``."""

    step: changepoints.Step
    before: Point
    after: Point
    changed: dict[str, tuple[Any, Any]]  # what differs between the two runs: name -> (before, after)
    flagged: bool  # confident and at least the threshold
    regression: bool  # flagged, and the worse way for this metric
    # What changed between consecutive runs near the change point (run number -> differences), for a
    # change that noise placed a run or two away from its cause.
    nearby: dict[int, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    def described(self, arrow: str = "->") -> str:
        """What changed, in words: at the change point, else near it, else 'nothing recorded'."""
        def words(diff: dict[str, tuple[Any, Any]]) -> str:
            return "; ".join(f"{k} {a} {arrow} {b}" for k, (a, b) in diff.items())

        if self.changed:
            return words(self.changed)
        near = [f"before run {number}: {words(diff)}" for number, diff in self.nearby.items()]
        return ("nothing recorded here; nearby " + ", ".join(near)) if near else "nothing recorded"


@dataclass
class Series:
    machine: Machine
    optimization: str
    batch_size: int
    metric: str
    points: list[Point] = field(default_factory=list)
    changes: list[ChangePoint] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.optimization} bs{self.batch_size} {self.metric}"


def machines(engine: Engine) -> dict[int, Machine]:
    m = schema.machines
    with engine.connect() as conn:
        rows = conn.execute(select(m)).mappings().all()
    return {r["id"]: Machine(r["key"], r["label"], r["cpu_model"], r["logical_cpus"], r["gpus"] or [],
                             r["driver_version"], r["node"]) for r in rows}


def load_series(engine: Engine, metrics: tuple[str, ...] = DEFAULT_METRICS, machine: str | None = None) -> list[Series]:
    """Every series of the store for ``metrics``, points oldest first; ``machine``: a key prefix or label."""
    r, b, c, m = schema.runs, schema.benchmarks, schema.configurations, schema.metrics
    query = (select(r.c.machine_id, r.c.id, r.c.name, r.c.started_at, r.c.git_commit, r.c.torch_version,
                    r.c.densebench_version, r.c.source, b.c.image_size, b.c.precision, c.c.optimization,
                    c.c.batch_size, m.c.name.label("metric"), m.c.value)
             .join(b, b.c.run_id == r.c.id).join(c, c.c.id == b.c.configuration_id)
             .join(m, m.c.benchmark_id == b.c.id).where(m.c.name.in_(metrics))
             .order_by(r.c.machine_id, c.c.optimization, c.c.batch_size, m.c.name, r.c.started_at, r.c.id))
    known = machines(engine)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    grouped: dict[tuple[int, str, int, str], Series] = {}
    for row in rows:
        mach = known[row["machine_id"]]
        if machine and not (mach.key.startswith(machine) or mach.label == machine):
            continue
        key = (row["machine_id"], row["optimization"], row["batch_size"], row["metric"])
        if key not in grouped:
            grouped[key] = Series(mach, row["optimization"], row["batch_size"], row["metric"])
        grouped[key].points.append(Point(row["id"], row["name"], row["started_at"], row["value"], row["image_size"],
                                         row["precision"], row["git_commit"], row["torch_version"],
                                         row["densebench_version"], row["source"]))
    return list(grouped.values())


def run_context(engine: Engine, run_ids: set[int]) -> dict[int, dict[str, Any]]:
    """Per run: its settings and library versions (what a change point's 'changed' compares)."""
    r = schema.runs
    with engine.connect() as conn:
        rows = conn.execute(select(r.c.id, r.c.settings, r.c.libraries).where(r.c.id.in_(run_ids))).mappings().all()
    return {row["id"]: {"settings": row["settings"] or {}, "libraries": row["libraries"] or {}} for row in rows}


_IGNORED_SETTINGS = {"output", "journal", "store", "data_dir"}  # where files go, not what was measured


def differences(before: Point, after: Point, context: dict[int, dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """What differs between two runs: image size, precision, commit, and every setting and library version."""
    out: dict[str, tuple[Any, Any]] = {}
    for name in ("image_size", "precision", "git_commit", "densebench_version"):
        a, b = getattr(before, name), getattr(after, name)
        if a != b:
            out[name] = (a, b)
    ca, cb = context.get(before.run_id, {}), context.get(after.run_id, {})
    for kind in ("settings", "libraries"):
        da, db = ca.get(kind, {}), cb.get(kind, {})
        for key in sorted(set(da) | set(db)):
            if key in _IGNORED_SETTINGS or f"{kind}.{key}" in out or key in out:
                continue
            if da.get(key) != db.get(key):
                out[key if kind == "libraries" else f"setting {key}"] = (da.get(key), db.get(key))
    return out


def analyse(engine: Engine, series: list[Series], threshold: float = 0.05, confidence: float = 0.99,
            min_runs: int = 3, seed: int = 0) -> list[Series]:
    """Fill each series' change points (in place; returned for convenience).

    ``threshold``: the smallest relative step that is flagged; ``confidence``: the smallest
    permutation confidence that is flagged; ``min_runs``: the fewest runs a segment may have."""
    found: list[tuple[Series, changepoints.Step]] = []
    for s in series:
        values = [p.value for p in s.points]
        if min(values, default=0) <= 0:
            continue  # the log scale needs positive values (a 0 W energy reading, say)
        found += [(s, step) for step in changepoints.steps(values, min_runs, seed=seed)]
    near = {(id(s), st.index): _neighbours(len(s.points), st.index, min_runs) for s, st in found}
    context = run_context(engine, {s.points[k].run_id for s, st in found
                                   for j in (st.index, *near[(id(s), st.index)]) for k in (j - 1, j)})
    for s, step in found:
        before, after = s.points[step.index - 1], s.points[step.index]
        flagged = step.confidence >= confidence and abs(step.change) >= threshold
        worse = (step.change < 0) == schema.METRICS[s.metric].higher_is_better
        nearby = {k + 1: diff for k in near[(id(s), step.index)] if k > 0 and k != step.index
                  and (diff := differences(s.points[k - 1], s.points[k], context))}
        s.changes.append(ChangePoint(step, before, after, differences(before, after, context), flagged,
                                     flagged and worse, nearby))
    return series


def _neighbours(n: int, index: int, min_runs: int) -> range:
    """Run indices whose boundary with the run before is within ``min_runs - 1`` of a change at ``index``."""
    return range(max(1, index - min_runs + 1), min(n, index + min_runs))


def _run_label(p: Point) -> str:
    return f"{p.run_name or p.run_id} ({p.started_at:%Y-%m-%d %H:%M})"


def change_lines(change: ChangePoint, metric: str) -> list[str]:
    st = change.step
    unit = schema.METRICS[metric].unit
    verdict = "REGRESSION" if change.regression else ("improvement" if change.flagged else "not flagged")
    changed = change.described()
    return [f"    change point at run {st.index + 1}: {st.change:+.1%} ({st.median_before:.4g} -> "
            f"{st.median_after:.4g} {unit}, medians of {st.before[1] - st.before[0]} and "
            f"{st.after[1] - st.after[0]} runs), "
            f"confidence {st.confidence:.3f}, noise {st.sigma:.1%}/run: {verdict}",
            f"      between {_run_label(change.before)} and {_run_label(change.after)}; changed: {changed}"]


def report_lines(series: list[Series], threshold: float, confidence: float) -> list[str]:
    """The text ``densebench history`` prints: per machine, each series and its change points."""
    by_machine: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        by_machine[s.machine.key].append(s)
    lines = []
    for group in by_machine.values():
        lines.append(f"machine {group[0].machine.title}")
        for s in group:
            unit = schema.METRICS[s.metric].unit
            values = ", ".join(f"{p.value:.4g}" for p in s.points[-8:])
            more = "..., " if len(s.points) > 8 else ""
            lines.append(f"  {s.name}: {len(s.points)} point(s) [{more}{values}] {unit}")
            for change in s.changes:
                lines += change_lines(change, s.metric)
    regressions = sum(c.regression for s in series for c in s.changes)
    lines.append(f"{len(series)} series, {sum(len(s.changes) for s in series)} change point(s), "
                 f"{regressions} regression(s) (flagged: step >= {threshold:.0%} and confidence >= {confidence})")
    return lines
