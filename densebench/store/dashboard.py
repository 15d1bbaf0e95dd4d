"""``densebench dashboard -o DIR``: static HTML from the store, one page per machine.

``DIR/index.html`` lists the machines; ``DIR/machine-<key>.html`` has, for that machine, the
latest ranking (its newest run, fastest first per batch size), one trend plot per batch size
and metric (a line per optimization over the runs, change points marked: red a flagged
regression, green a flagged improvement, grey not flagged; dashed lines the segment medians)
and the runs, each linked to its report when a ``report.html`` sits beside its JSON, else to
the JSON. Plots are matplotlib PNGs (the ``report`` extra); pages are report.Doc's HTML.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from ..report import Doc
from . import history, schema

_COLOURS = {"regression": "#c62828", "improvement": "#2e7d32", "not flagged": "#616161"}


def _kind(change: history.ChangePoint) -> str:
    return "regression" if change.regression else ("improvement" if change.flagged else "not flagged")


def _plot(plt: Any, group: list[history.Series], run_index: dict[int, int], path: Path) -> None:
    """One trend plot: every optimization's series of one batch size and metric, change points marked."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for s in sorted(group, key=lambda s: s.optimization):
        xs = [run_index[p.run_id] for p in s.points]
        line, = ax.plot(xs, [p.value for p in s.points], marker="o", markersize=3, linewidth=1.2, label=s.optimization)
        for change in s.changes:
            st = change.step
            x = (run_index[change.before.run_id] + run_index[change.after.run_id]) / 2
            colour = _COLOURS[_kind(change)]
            ax.axvline(x, color=colour, linestyle="-", linewidth=1.5, alpha=0.8)
            for (lo, hi), level in ((st.before, st.median_before), (st.after, st.median_after)):
                ax.hlines(level, xs[lo], xs[hi - 1], colors=line.get_color(), linestyles="dashed", linewidth=1)
            ax.annotate(f"{st.change:+.1%}\n(conf {st.confidence:.3f})", (x, st.median_after), fontsize=7,
                        color=colour, xytext=(4, 4), textcoords="offset points")
    _mark_changes(ax, group[0].points, run_index)
    metric = schema.METRICS[group[0].metric]
    ax.set_xlabel("run number (oldest first, as densebench history numbers them)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"{group[0].metric} ({metric.unit})", fontsize=8)
    ax.set_title(f"batch size {group[0].batch_size}: {group[0].metric} "
                 f"({'higher' if metric.higher_is_better else 'lower'} is better)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


_MARKED = ("image_size", "precision", "torch_version", "git_commit")  # changes drawn on the trend plots


def _mark_changes(ax: Any, points: list[history.Point], run_index: dict[int, int]) -> None:
    """A dotted line and a label where the image size, precision, torch or commit changed between runs."""
    for prev, point in itertools.pairwise(points):
        diff = [f"{name.replace('_version', '')} {_commit(str(getattr(prev, name)))}→"
                f"{_commit(str(getattr(point, name)))}" for name in _MARKED
                if getattr(prev, name) != getattr(point, name)]
        if diff:
            x = run_index[point.run_id] - 0.5
            ax.axvline(x, color="black", linestyle=":", linewidth=1)
            ax.annotate("\n".join(diff), (x, 1), xycoords=("data", "axes fraction"), fontsize=7, ha="right",
                        va="top", xytext=(-3, -3), textcoords="offset points")


def _commit(commit: str | None) -> str:
    """A git commit id shortened; pytest-benchmark's 'unversioned' (no git) and the like as they are."""
    return commit[:10] if commit and re.fullmatch(r"[0-9a-f]{40}", commit) else commit or "-"


def _report_link(source: str | None) -> str:
    if not source:
        return "-"
    json_path = Path(source)
    report = json_path.parent / "report.html"
    target = report if report.is_file() else json_path
    return f"[{target.name}]({target.as_uri()})" if target.is_absolute() else target.name


def _ranking(doc: Doc, series: list[history.Series]) -> None:
    """The newest run's throughput per batch size, fastest first."""
    throughput = [s for s in series if s.metric == "throughput_samples_per_s" and s.points]
    if not throughput:
        return
    newest = max(p.started_at for s in throughput for p in s.points)
    latest = [(s, s.points[-1]) for s in throughput if s.points[-1].started_at == newest]
    doc.add("h2", f"Latest ranking (run {latest[0][1].run_name or latest[0][1].run_id}, {newest:%Y-%m-%d %H:%M} UTC)")
    rows = []
    for s, p in sorted(latest, key=lambda sp: (sp[0].batch_size, -sp[1].value)):
        rows.append([s.optimization, s.batch_size, f"{p.value:.2f}", p.precision or "-", p.image_size or "-",
                     len(s.points)])
    doc.add("table", (["optimization", "batch size", "throughput (images/s)", "precision", "image size", "runs"],
                      rows))


def _runs_table(doc: Doc, series: list[history.Series]) -> None:
    runs: dict[int, history.Point] = {}
    for s in series:
        for p in s.points:
            runs.setdefault(p.run_id, p)
    doc.add("h2", f"Runs ({len(runs)})")
    rows = [[p.started_at.strftime("%Y-%m-%d %H:%M"), p.run_name or p.run_id, _commit(p.git_commit),
             p.torch_version or "-", p.image_size or "-", _report_link(p.source)]
            for p in sorted(runs.values(), key=lambda p: (p.started_at, p.run_id), reverse=True)]
    doc.add("table", (["when (UTC)", "run", "commit", "torch", "image size", "report"], rows))


def _changes(doc: Doc, series: list[history.Series]) -> None:
    found = [(s, c) for s in series for c in s.changes]
    doc.add("h2", f"Change points ({len(found)})")
    if not found:
        doc.add("p", "None found: every series is one segment at this noise.")
        return
    rows = [[s.name, _kind(c).upper() if c.regression else _kind(c), f"{c.step.change:+.1%}",
             f"{c.step.confidence:.3f}", c.before.run_name or c.before.run_id, c.after.run_name or c.after.run_id,
             c.described("→")] for s, c in found]
    doc.add("table", (["series", "verdict", "step", "confidence", "last run before", "first run after", "changed"],
                      rows))


def machine_page(plt: Any, machine: history.Machine, series: list[history.Series], out: Path) -> Path:
    """Write one machine's page and its plots into ``out``; returns the page's path."""
    slug = f"machine-{machine.key[:12]}"
    doc = Doc()
    doc.add("h1", f"densebench history: {machine.title}")
    doc.add("p", f"Machine key {machine.key} (CPU model and core count, GPU names and UUIDs, driver "
                 f"{machine.driver_version or 'none'}, label {machine.label or 'none'}); first seen as host "
                 f"{machine.node}. "
                 "[All machines](index.html)")
    _ranking(doc, series)
    _changes(doc, series)
    doc.add("h2", "Trends")
    started = {p.run_id: p.started_at for s in series for p in s.points}
    # numbered from 1, as `densebench history` numbers them ("change point at run 7")
    run_index = {run_id: i for i, run_id in enumerate(sorted(started, key=lambda r: (started[r], r)), 1)}
    groups: dict[tuple[str, int], list[history.Series]] = defaultdict(list)
    for s in series:
        groups[(s.metric, s.batch_size)].append(s)
    order = {name: i for i, name in enumerate(schema.METRICS)}  # throughput first, as history lists them
    for (metric, batch), group in sorted(groups.items(), key=lambda kv: (kv[0][1], order[kv[0][0]])):
        name = f"{slug}-{metric}-bs{batch}.png"
        _plot(plt, group, run_index, out / name)
        doc.add("img", (name, f"{metric} at batch size {batch}, one point per run"))
    _runs_table(doc, series)
    page = out / f"{slug}.html"
    page.write_text(doc.html(f"densebench history: {machine.title}"), encoding="utf-8")
    return page


def write(engine: Engine, out: Path, metrics: tuple[str, ...] = history.DEFAULT_METRICS) -> list[Path]:
    """Write the dashboard into ``out``: [index.html, one page per machine]."""
    import matplotlib  # optional: the report extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    series = history.analyse(engine, history.load_series(engine, metrics))
    by_machine: dict[str, list[history.Series]] = defaultdict(list)
    for s in series:
        by_machine[s.machine.key].append(s)
    pages = [machine_page(plt, group[0].machine, group, out) for group in by_machine.values()]
    index = Doc()
    index.add("h1", "densebench history")
    rows = []
    for page, group in zip(pages, by_machine.values(), strict=True):
        regressions = sum(c.regression for s in group for c in s.changes)
        runs = len({p.run_id for s in group for p in s.points})
        rows.append([f"[{group[0].machine.title}]({page.name})", runs, len(group), regressions])
    index.add("table", (["machine", "runs", "series", "flagged regressions"], rows))
    if not rows:
        index.add("p", "The store has no runs yet: `densebench store ingest FILE...` or run with --densebench-store.")
    (out / "index.html").write_text(index.html("densebench history"), encoding="utf-8")
    return [out / "index.html", *pages]
