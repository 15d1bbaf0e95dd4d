"""Saved pytest-benchmark JSON -> report.md + report.html + PNG plots.

``densebench report a.json [b.json ...] -o DIR``. Several files (runs, machines, GPUs)
are merged and labelled by device and run; numbers from different devices are never
put in one ranking. Every sentence in the report is computed from the data.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import derived, storage, summary
from .errors import ReportError
from .records import UNTIMED_STATUSES, Status
from .scenarios import scenario_key
from .telemetry import peak_memory_mb


@dataclass(frozen=True, eq=False)  # one instance per loaded file: identity is the run
class Run:
    label: str
    path: str
    device_name: str
    node: str
    datetime: str
    torch: str | None
    densebench: dict[str, Any]


@dataclass(frozen=True)
class Record:
    run: Run
    optimization: str
    batch_size: int
    throughput: float
    p50_ms: float | None
    p99_ms: float | None
    peak_memory_mb: float | None
    energy_per_image_j: float | None
    precision: str | None
    parity_passed: bool
    setup_s: float | None
    speedup: dict[str, Any] | None = None  # extra_info.speedup (paired, with CI)
    scenario: dict[str, Any] | None = None  # extra_info.scenario: a serving scenario's benchmark (LoadGen)

    @property
    def key(self) -> str:
        """The optimization, with the scenario for a serving scenario's benchmark: ``openvino_int8[server]``."""
        return self.optimization if self.scenario is None else scenario_key(self.optimization, self.scenario["name"])

    def row(self) -> summary.Row:
        return summary.Row(self.optimization, self.batch_size, self.throughput, self.p99_ms, self.peak_memory_mb,
                           self.parity_passed, self.precision, self.run.label, self.speedup)


def load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding=storage.ENCODING))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text, so not a JSON file densebench or pytest-benchmark wrote "
                          f"({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise ReportError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return doc


def _energy(info: dict[str, Any]) -> float | None:
    for ns in ("gpu", "cpu"):
        value = (info.get(ns) or {}).get("energy_per_image_j")
        if value is not None:
            return float(value)
    return None


def _run_info(doc: dict[str, Any]) -> dict[str, Any]:
    """The file's ``densebench`` object with its derived fields computed from the file's own records
    (a file written by an older version, recovered or edited gets the same as a finished run)."""
    dense = doc.get("densebench")
    return derived.fill(dict(dense), doc["benchmarks"]) if isinstance(dense, dict) else {}


def records_from(doc: dict[str, Any], path: Path, label: str | None = None) -> list[Record]:
    benches = [b for b in doc["benchmarks"] if (b.get("extra_info") or {}).get("optimization")]
    if not benches:
        raise ReportError(f"{path}: has no densebench benchmarks (no extra_info.optimization)")
    first = benches[0]["extra_info"]
    machine = doc.get("machine_info") or {}
    libs = machine.get("libraries") or {}
    run = Run(label=label or first.get("device_name") or "unknown device", path=str(path),
              device_name=first.get("device_name") or "unknown device", node=machine.get("node") or "?",
              datetime=str(doc.get("datetime") or "")[:19], torch=libs.get("torch"),
              densebench=_run_info(doc))
    out = []
    for bench in benches:
        info = bench["extra_info"]
        lat = info.get("latency_ms") or {}
        throughput = info.get("throughput_samples_per_s")
        if throughput is None and bench.get("stats", {}).get("median") and not info.get("scenario"):
            throughput = info["batch_size"] / bench["stats"]["median"]
        if throughput is None:
            continue
        scenario = info.get("scenario")
        if scenario:  # LoadGen's own latency (scheduled issue to completion), not densebench's clock
            lat = scenario.get("latency_ms") or {}
        out.append(Record(run, info["optimization"], int(info["batch_size"]), float(throughput), lat.get("p50"),
                          lat.get("p99"), peak_memory_mb(info), _energy(info), info.get("precision"),
                          bool((info.get("parity") or {}).get("passed", True)), info.get("setup_s"),
                          info.get("speedup"), scenario))
    return out


def batch_records(records: list[Record]) -> list[Record]:
    """The batch benchmarks (fixed batches timed back to back): what rankings and batch plots are about."""
    return [r for r in records if r.scenario is None]


def scenario_records(records: list[Record]) -> list[Record]:
    """The serving scenarios' benchmarks (offline, server, singlestream under LoadGen)."""
    return [r for r in records if r.scenario is not None]


def load_all(paths: list[Path]) -> list[Record]:
    """Records of every file, labelled so different devices and runs never mix."""
    per_file = [(Path(p), records_from(load(Path(p)), Path(p))) for p in paths]
    devices = defaultdict(set)
    for _, recs in per_file:
        for r in recs:
            devices[r.run.device_name].add(r.run.path)
    records: list[Record] = []
    for path, recs in per_file:
        if recs and len(per_file) > 1:  # label by device, and by run when one device has several
            run = recs[0].run
            label = run.device_name
            if len(devices[run.device_name]) > 1:
                label += f" · {run.node} · {path.stem}"
            run = replace(run, label=label)  # still one Run per file
            recs = [replace(r, run=run) for r in recs]
        records += recs
    if not records:
        raise ReportError("no measured benchmarks in " + ", ".join(map(str, paths)))
    return records


# ---------------------------------------------------------------- insights


def _fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    if value is None:
        width = "".join(c for c in spec.split(".", maxsplit=1)[0] if c.isdigit())
        return "—".rjust(int(width)) if width else "—"
    return f"{value:{spec}}{unit}"


def _shared_process_memory(dense: dict[str, Any]) -> str | None:
    """A caveat when CPU peak-RSS figures come from one process that loaded runtime after runtime."""
    trace = dense.get("memory_trace") or []
    if len(trace) < 2 or any("cuda_allocated_mb" in t for t in trace):
        return None  # on CUDA the figure is the device's peak allocation, per optimization
    first, top = trace[0]["rss_mb"], max(t["rss_mb"] for t in trace)
    if top <= first * 1.10:
        return None
    return (f"caution: peak memory here is the RSS of one process that ran every optimization in turn; it "
            f"rose from {first:.0f} MB (after {trace[0]['after_releasing']}) to {top:.0f} MB as runtimes "
            "loaded, so later optimizations' figures include earlier ones' libraries. "
            "`--densebench-isolate` (the default of `densebench run`) measures each in its own process.")


def _batch_insights(rows: list[summary.Row], prefix: str) -> list[str]:
    """Per batch size: the fastest optimization that passed parity, and those slower than baseline."""
    lines: list[str] = []
    for (_, bs), group in summary.by_batch(rows).items():
        top = summary.best(group)
        if top is None:
            lines.append(f"{prefix}at batch {bs} no optimization passed parity.")
            continue
        sp = summary.speedup_text(top, group)
        text = f"{prefix}fastest at batch {bs}: **{top.optimization}**, {top.throughput:.1f} img/s"
        text += f" ({sp} baseline)" if sp != "—" else ""
        text += f", p99 {top.p99_ms:.1f} ms." if top.p99_ms is not None else "."
        lines.append(text)
        speedups = [(r.optimization, summary.speedup(r, group)) for r in group if r.optimization != "baseline"]
        slower = [(o, x) for o, x in speedups if x is not None and x < 1]
        if slower:
            lines.append(f"{prefix}slower than baseline at batch {bs}: "
                         + ", ".join(f"{o} ({x:.2f}x)" for o, x in sorted(slower, key=lambda t: t[1])) + ".")
    return lines


def _memory_insights(recs: list[Record], prefix: str) -> list[str]:
    """Most img/s per GB of peak memory among parity passes, and the shared-process RSS caveat."""
    per_mb = [r for r in recs if r.parity_passed and r.peak_memory_mb]
    if not per_mb:
        return []
    eff = max(per_mb, key=lambda r: r.throughput / r.peak_memory_mb)
    lines = [f"{prefix}most throughput per GB of peak memory: **{eff.optimization}** at batch "
             f"{eff.batch_size} ({1024 * eff.throughput / eff.peak_memory_mb:.1f} img/s per GB, "
             f"{eff.peak_memory_mb:.0f} MB peak)."]
    shared = _shared_process_memory(recs[0].run.densebench)
    if shared:
        lines.append(prefix + shared)
    return lines


def _energy_insights(recs: list[Record], prefix: str) -> list[str]:
    """Least energy per image (mJ/img) among parity passes; nothing when energy was not measured."""
    energy = [r for r in recs if r.parity_passed and r.energy_per_image_j is not None]
    if not energy:
        return []
    low = min(energy, key=lambda r: r.energy_per_image_j)
    return [f"{prefix}least energy per image: **{low.optimization}** at batch {low.batch_size} "
            f"({1000 * low.energy_per_image_j:.2f} mJ/img)."]


def _latency_insights(recs: list[Record], rows: list[summary.Row], prefix: str,
                      latency_budget_ms: float | None) -> list[str]:
    """Best configuration under the p99 budget (given, else the run's settings); lowest p99 without one."""
    budget = latency_budget_ms or recs[0].run.densebench.get("settings", {}).get("latency_budget_ms")
    if budget:
        fit = summary.best_under_budget(rows, float(budget))
        if fit:
            return [f"{prefix}best under a {float(budget):g} ms p99 budget: **{fit.optimization}** at "
                    f"batch {fit.batch_size}, {fit.throughput:.1f} img/s (p99 {fit.p99_ms:.1f} ms)."]
        return [f"{prefix}nothing measured fits a {float(budget):g} ms p99 budget."]
    timed = [r for r in rows if r.parity_passed and r.p99_ms is not None]
    if not timed:
        return []
    quick = min(timed, key=lambda r: r.p99_ms)
    return [f"{prefix}lowest p99 latency: **{quick.optimization}** at batch {quick.batch_size} "
            f"({quick.p99_ms:.1f} ms, {quick.throughput:.1f} img/s); pass --latency-budget-ms "
            "for the best configuration under a budget."]


def _exclusion_insights(recs: list[Record], prefix: str) -> list[str]:
    """What is not in the rankings: parity failures, then skipped/failed/oom/crashed/timeout outcomes."""
    lines: list[str] = []
    failed = sorted({(r.optimization, r.batch_size) for r in recs if not r.parity_passed})
    if failed:
        lines.append(f"{prefix}parity failed (excluded from rankings): "
                     + ", ".join(f"{o}@{b}" for o, b in failed) + ".")
    for run in dict.fromkeys(r.run for r in recs):
        lines += [prefix + line for line in derived.incompleteness(run.densebench)]
    outcomes = recs[0].run.densebench.get("outcomes", [])
    other = {(o["optimization"], o["status"], o.get("reason")) for o in outcomes
             if o["status"] in UNTIMED_STATUSES}  # parity failures: listed above, from the records
    for opt, status, reason in sorted(other, key=lambda t: (t[1], t[0])):
        lines.append(f"{prefix}{status}: {opt} — {reason}")
    return lines


def insights(records: list[Record], latency_budget_ms: float | None) -> list[str]:
    """Findings sentences, per run label (prefixed with it when several runs are merged)."""
    lines: list[str] = []
    by_label: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_label[r.run.label].append(r)
    for label, every in by_label.items():
        prefix = f"{label}: " if len(by_label) > 1 else ""
        recs = batch_records(every)
        if recs:  # a run of serving scenarios alone has no batch benchmarks
            rows = [r.row() for r in recs]
            lines += _batch_insights(rows, prefix)
            lines += _memory_insights(recs, prefix)
            lines += _energy_insights(recs, prefix)
            lines += _latency_insights(recs, rows, prefix, latency_budget_ms)
            lines += _exclusion_insights(recs, prefix)
        lines += _scenario_insights(scenario_records(every), prefix)
    return lines


def _scenario_insights(recs: list[Record], prefix: str) -> list[str]:
    """The server answer (highest rate LoadGen confirmed VALID within the p99 budget) and the offline peak."""
    lines = []
    server = [r for r in recs if r.scenario["name"] == "server"]
    confirmed = [(r, (r.scenario.get("server_search") or {}).get("highest_valid_qps")) for r in server]
    ranked = sorted(((r, q) for r, q in confirmed if q), key=lambda rq: -rq[1])
    if ranked:
        best, rate = ranked[0]
        budget = best.scenario.get("latency_budget_ms")
        others = ", ".join(f"{r.optimization} {q:.1f}/s" for r, q in ranked[1:4])
        max_batch = (best.scenario.get("batcher") or {}).get("max_batch")
        lines.append(f"{prefix}server (Poisson arrivals, p99 within {budget:g} ms, LoadGen VALID): "
                     f"**{best.optimization}** sustains {rate:.1f} queries/s (max batch {max_batch})"
                     + (f"; then {others}" if others else ""))
    for r, _ in [(r, q) for r, q in confirmed if not q]:
        lines.append(f"{prefix}server: {r.optimization} had no rate confirmed VALID within "
                     f"{r.scenario.get('latency_budget_ms'):g} ms p99 ("
                     + "; ".join((r.scenario.get("server_search") or {}).get("reasons") or ["no reason recorded"])
                     + ")")
    offline = sorted((r for r in recs if r.scenario["name"] == "offline"), key=lambda r: -r.throughput)
    if offline:
        top = offline[0]
        batcher = top.scenario.get("batcher") or {}
        lines.append(f"{prefix}offline (every sample at once): **{top.optimization}** {top.throughput:.1f} samples/s "
                     f"(max batch {batcher.get('max_batch')}, {batcher.get('in_flight')} in flight, "
                     f"{batcher.get('executor')}" + ("" if top.scenario.get("valid") else "; LoadGen: INVALID") + ")")
    failed = [r for r in recs if not r.parity_passed]
    lines += [f"{prefix}{r.key}: LoadGen's accuracy mode FAILED parity: the served answers differ from the "
              "baseline's" for r in failed]
    return lines


# ---------------------------------------------------------------- plots


def _label_axes(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # Outside the axes: with a dozen optimizations an inside legend hides data points.
    if ax.get_legend_handles_labels()[0]:  # nothing labelled (e.g. a recovered run with no plotted series): none
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _per_opt(recs: list[Record]) -> dict[str, list[Record]]:
    """Records grouped by optimization, each group in ascending batch size."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in sorted(recs, key=lambda r: r.batch_size):
        groups[r.optimization].append(r)
    return groups


@dataclass
class _Figures:
    """What every plot shares: pyplot, one panel per run label, one colour and marker per
    optimization (the same in every plot), and the PNGs written so far into ``out``."""

    plt: Any
    records: list[Record]
    out: Path
    labels: list[str] = field(init=False)
    color: dict[str, Any] = field(init=False)
    marker: dict[str, str] = field(init=False)
    made: dict[str, Path] = field(default_factory=dict)  # shared when several figure sets write one report

    def __post_init__(self) -> None:
        self.labels = list(dict.fromkeys(r.run.label for r in self.records))
        palette = self.plt.get_cmap("tab20").colors
        opts_all = list(dict.fromkeys(r.optimization for r in self.records))
        self.color = {o: palette[i % len(palette)] for i, o in enumerate(opts_all)}
        self.marker = {o: "os^Dvp*hX<>"[i % 11] for i, o in enumerate(opts_all)}

    def grid(self, title: str) -> tuple[Any, list[Any]]:
        """A figure with one 7x5-inch panel per run label, side by side."""
        fig, axes = self.plt.subplots(1, len(self.labels), figsize=(7 * len(self.labels), 5), squeeze=False)
        fig.suptitle(title)
        return fig, list(axes[0])

    def save(self, fig: Any, name: str) -> None:
        """Write ``out/<name>.png`` (110 dpi) and close the figure."""
        fig.tight_layout()
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        self.plt.close(fig)
        self.made[name] = path


def _plot_throughput(f: _Figures, records: list[Record]) -> None:
    """images/s vs batch size (log2 axis, measured sizes as ticks); dotted where parity failed."""
    fig, axes = f.grid("Throughput vs batch size (higher is better)")
    for ax, label in zip(axes, f.labels, strict=True):
        for opt, recs in _per_opt([r for r in records if r.run.label == label]).items():
            style = "-" if all(r.parity_passed for r in recs) else ":"
            ax.plot([r.batch_size for r in recs], [r.throughput for r in recs], style, marker=f.marker[opt],
                    color=f.color[opt], label=opt)
        ax.set_xscale("log", base=2)
        sizes = sorted({r.batch_size for r in records if r.run.label == label})
        ax.set_xticks(sizes, [str(b) for b in sizes])  # the measured batch sizes, not powers of two
        ax.minorticks_off()
        _label_axes(ax, label, "batch size", "images / s")
    f.save(fig, "throughput")


def _plot_latency(f: _Figures, records: list[Record]) -> None:
    """ms per batch (log axis): p50 as a bar per optimization and batch size, p99 as a black tick."""
    fig, axes = f.grid("Latency per batch: p50 (bar) and p99 (tick)")
    for ax, label in zip(axes, f.labels, strict=True):
        recs = [r for r in records if r.run.label == label and r.p50_ms is not None]
        opts = list(dict.fromkeys(r.optimization for r in recs))
        sizes = sorted({r.batch_size for r in recs})
        width = 0.8 / max(1, len(sizes))
        for i, bs in enumerate(sizes):
            xs, p50, p99 = [], [], []
            for j, opt in enumerate(opts):
                hit = [r for r in recs if r.optimization == opt and r.batch_size == bs]
                if hit:
                    xs.append(j + i * width)
                    p50.append(hit[0].p50_ms)
                    p99.append(hit[0].p99_ms)
            ax.bar(xs, p50, width=width, label=f"batch {bs}")
            ax.scatter(xs, p99, marker="_", s=200, color="black")
        ax.set_xticks([j + width * (len(sizes) - 1) / 2 for j in range(len(opts))])
        ax.set_xticklabels(opts, rotation=45, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms per batch (log)")
        ax.set_title(label)
        ax.legend(fontsize=7)
    f.save(fig, "latency")


def _speedup_cell(recs: list[Record], optimization: str, batch_size: int,
                  base: dict[int, float]) -> tuple[float, str]:
    """(speedup, cell text): the paired speedup with its 95% CI where measured ("1.66x" over
    "[1.61-1.70]"), else throughput / baseline throughput; (nan, "—") where either is missing."""
    for r in recs:
        if r.optimization == optimization and r.batch_size == batch_size and batch_size in base:
            sp = r.speedup or {}
            if sp.get("ratio"):
                return sp["ratio"], f"{sp['ratio']:.2f}x\n[{sp['ci_low']:.2f}-{sp['ci_high']:.2f}]"
            value = r.throughput / base[batch_size]
            return value, f"{value:.2f}x"
    return float("nan"), "—"


def _plot_speedup(f: _Figures, records: list[Record]) -> None:
    """Heatmap of the speedup over the baseline (paired, with its 95% CI, where measured; else
    throughput / baseline throughput), optimization x batch size, per run label ("—" where either was
    not measured); colours centred on 1.0x."""
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = f.grid("Speedup over baseline (same device, same batch size)")
    for ax, label in zip(axes, f.labels, strict=True):
        recs = [r for r in records if r.run.label == label]
        opts = list(dict.fromkeys(r.optimization for r in recs))
        sizes = sorted({r.batch_size for r in recs})
        base = {r.batch_size: r.throughput for r in recs if r.optimization == "baseline"}
        cells = [[_speedup_cell(recs, o, bs, base) for bs in sizes] for o in opts]
        matrix = [[v for v, _ in row] for row in cells]
        finite = [v for row in matrix for v in row if not math.isnan(v)]
        vmax = max([2.0, *finite])
        vmin = min([0.5, *finite])
        im = ax.imshow(matrix, cmap="RdYlGn", norm=TwoSlopeNorm(vcenter=1.0, vmin=vmin, vmax=vmax), aspect="auto")
        for i, row in enumerate(cells):
            for j, (_, text) in enumerate(row):
                ax.text(j, i, text, ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([f"bs {b}" for b in sizes])
        ax.set_yticks(range(len(opts)))
        ax.set_yticklabels(opts, fontsize=8)
        ax.set_title(label + ("" if base else " (no baseline measured)"))
        fig.colorbar(im, ax=ax, shrink=0.8)
    f.save(fig, "speedup")


def _plot_memory_tradeoff(f: _Figures, records: list[Record]) -> None:
    """images/s vs peak memory in MB (inclusive device memory on GPU, process RSS on CPU), points labelled by batch."""
    fig, axes = f.grid("Peak memory vs throughput (up and left is better)")
    for ax, label in zip(axes, f.labels, strict=True):
        recs = [r for r in records if r.run.label == label and r.peak_memory_mb]
        for opt, group in _per_opt(recs).items():
            ax.scatter([r.peak_memory_mb for r in group], [r.throughput for r in group], label=opt,
                       color=f.color[opt], marker=f.marker[opt])
            for r in group:
                ax.annotate(f"bs{r.batch_size}", (r.peak_memory_mb, r.throughput), fontsize=6,
                            textcoords="offset points", xytext=(3, 3))
        _label_axes(ax, label, "peak memory, MB (device incl. non-torch on GPU, process RSS on CPU)", "images / s")
    f.save(fig, "memory_tradeoff")


def _plot_energy(f: _Figures, records: list[Record]) -> None:
    """mJ per image, one horizontal bar per optimization@batch; no figure when no energy was measured."""
    energy = [r for r in records if r.energy_per_image_j is not None]
    if not energy:
        return
    fig, axes = f.grid("Energy per image (lower is better)")
    for ax, label in zip(axes, f.labels, strict=True):
        recs = [r for r in energy if r.run.label == label]
        names = [f"{r.optimization}@{r.batch_size}" for r in recs]
        ax.barh(names, [1000 * r.energy_per_image_j for r in recs])
        ax.set_xlabel("mJ per image")
        ax.set_title(label)
        ax.tick_params(axis="y", labelsize=7)
    f.save(fig, "energy")


def plots(records: list[Record], out: Path) -> dict[str, Path]:
    """Write the PNG plots into ``out``; return their paths by name (``energy`` only when measured)."""
    import matplotlib  # optional: the report extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = batch_records(records)
    if batch:
        figures = _Figures(plt, batch, out)
        for plot in (_plot_throughput, _plot_latency, _plot_speedup, _plot_memory_tradeoff, _plot_energy):
            plot(figures, batch)
    served = [r for r in scenario_records(records) if (r.scenario.get("server_search") or {}).get("points")]
    if served:
        figures = _Figures(plt, served, out, made=figures.made if batch else {})
        _plot_server_curve(figures, served)
    return figures.made if batch or served else {}


def _setting_label(setting: dict[str, Any]) -> str:
    """'async x2, max 8' / 'sync, max 1': a server search setting in a legend."""
    how = f"async x{setting.get('in_flight')}" if (setting.get("in_flight") or 1) > 1 else "sync"
    return f"{how}, max {setting.get('max_batch')}"


def _plot_server_curve(f: _Figures, records: list[Record]) -> None:
    """p99 latency vs achieved rate of every server test, one line per optimization x batcher setting (colour:
    optimization; line style: setting); filled markers: LoadGen VALID; the dashed line is the budget."""
    from matplotlib import ticker  # optional: the report extra

    fig, axes = f.grid("Server: p99 latency vs achieved rate (Poisson arrivals, MLPerf LoadGen)")
    styles = ("-", "--", "-.", ":")
    for ax, label in zip(axes, f.labels, strict=True):
        budgets = set()
        for r in (r for r in records if r.run.label == label):
            search = r.scenario["server_search"]
            budgets.add(search.get("latency_budget_ms"))
            groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for p in search["points"]:
                if p.get("achieved_qps") and p.get("p99_ms"):
                    groups[_setting_label(p.get("batcher") or {})].append(p)
            for i, (setting, points) in enumerate(sorted(groups.items())):
                points.sort(key=lambda p: p["achieved_qps"])
                color, marker = f.color[r.optimization], f.marker[r.optimization]
                ax.plot([p["achieved_qps"] for p in points], [p["p99_ms"] for p in points], styles[i % 4],
                        color=color, label=f"{r.optimization} ({setting})")
                for p in points:
                    ax.plot(p["achieved_qps"], p["p99_ms"], marker, color=color,
                            fillstyle="full" if p.get("valid") else "none")
        for budget in sorted(b for b in budgets if b):
            ax.axhline(budget, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        _label_axes(ax, label, "achieved rate (queries / s)", "p99 latency (ms, log)")
    f.save(fig, "server_curve")


# ---------------------------------------------------------------- documents


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")  # a markdown link, [text](url)


@dataclass
class Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, kind: str, content: Any) -> None:
        self.blocks.append((kind, content))

    def markdown(self) -> str:
        out = []
        for kind, content in self.blocks:
            if kind in ("h1", "h2", "h3"):
                out.append("#" * int(kind[1]) + " " + content)
            elif kind == "p":
                out.append(content)
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in content))
            elif kind == "table":
                head, rows = content
                out.append("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
                           + "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows))
            elif kind == "img":
                out.append(f"![{content[1]}]({content[0]})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        def inline(text: str) -> str:
            parts = _LINK.sub(r'<a href="\2">\1</a>', html.escape(text)).split("**")
            return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

        body = []
        for kind, content in self.blocks:
            if kind in ("h1", "h2", "h3"):
                body.append(f"<{kind}>{html.escape(content)}</{kind}>")
            elif kind == "p":
                body.append(f"<p>{inline(content)}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in content) + "</ul>")
            elif kind == "table":
                head, rows = content
                body.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                            + "</tr></thead><tbody>"
                            + "".join("<tr>" + "".join(f"<td>{inline(str(c))}</td>" for c in row) + "</tr>"
                                      for row in rows) + "</tbody></table>")
            elif kind == "img":
                body.append(f'<figure><img src="{html.escape(content[0])}" alt="{html.escape(content[1])}">'
                            f"<figcaption>{html.escape(content[1])}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
                 "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
                 "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
                 "figure{margin:1.5em 0}figcaption{color:#666;font-size:0.9em}")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                f"</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def build(paths: list[Path], out: Path, latency_budget_ms: float | None = None) -> dict[str, Path]:
    """Write report.md, report.html and the plots for the JSON files into ``out``; return their paths."""
    return write(load_all(paths), out, latency_budget_ms)


def write(records: list[Record], out: Path, latency_budget_ms: float | None = None) -> dict[str, Path]:
    """Write report.md, report.html and the plots for loaded records into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    images = plots(records, out)
    doc = Doc()
    doc.add("h1", "densebench report: DenseNet-121 inference")
    runs = list(dict.fromkeys(r.run for r in records))
    doc.add("table", (["label", "device", "machine", "date (UTC)", "torch", "weights", "dataset", "file"],
                      [[r.label, r.device_name, r.node, r.datetime, r.torch or "—",
                        (r.densebench.get("weights") or {}).get("source", "—"),
                        (r.densebench.get("dataset") or {}).get("source", "—"), Path(r.path).name]
                       for r in runs]))
    for run in runs:
        if missing := derived.incompleteness(run.densebench):
            doc.add("p", f"**{run.label}** ({Path(run.path).name}): " + " ".join(missing))
    doc.add("h2", "Findings")
    doc.add("ul", insights(records, latency_budget_ms))
    for name, caption in (("throughput", "Throughput vs batch size (dotted: parity failed)"),
                          ("speedup", "Speedup over baseline"),
                          ("latency", "Latency p50 and p99 per batch"),
                          ("memory_tradeoff", "Peak memory vs throughput"),
                          ("energy", "Energy per image"),
                          ("server_curve", "Server scenario: p99 latency vs achieved rate of every test of the "
                                           "search, per optimization and batcher setting; filled: LoadGen VALID; "
                                           "dashed: the p99 budget")):
        if name in images:
            doc.add("img", (images[name].name, caption))
    if "energy" not in images and batch_records(records):
        doc.add("p", "Energy per image: not measured on these machines (no NVML energy counter or readable RAPL).")
    _scenario_section(doc, runs, scenario_records(records))
    doc.add("h2", "Rankings")
    for run in runs:
        rows = [r for r in batch_records(records) if r.run == run]
        for bs in sorted({r.batch_size for r in rows}):
            group = sorted((r for r in rows if r.batch_size == bs), key=lambda r: -r.throughput)
            base = next((r.throughput for r in group if r.optimization == "baseline"), None)
            ranked = [r.row() for r in group]
            doc.add("h3", f"{run.label} — batch size {bs}")
            doc.add("table", (["#", "optimization", "precision", "img/s", "speedup [95% CI]", "sequential",
                               "p50 ms", "p99 ms", "peak MB", "mJ/img", "setup s", "parity"],
                              [[i + 1, r.optimization, r.precision or "—", f"{r.throughput:.1f}",
                                summary.speedup_text(ranked[i], ranked) if r.speedup else "—",
                                f"{r.throughput / base:.2f}x" if base else "—", _fmt(r.p50_ms, ".2f"),
                                _fmt(r.p99_ms, ".2f"), _fmt(r.peak_memory_mb, ".0f"),
                                _fmt(None if r.energy_per_image_j is None else 1000 * r.energy_per_image_j, ".2f"),
                                _fmt(r.setup_s, ".1f"), "pass" if r.parity_passed else "**FAIL**"]
                               for i, r in enumerate(group)]))
    md = storage.write_text(out / "report.md", doc.markdown())
    page = storage.write_text(out / "report.html", doc.html("densebench report"))
    return {"markdown": md, "html": page, **images}


def _scenario_section(doc: Doc, runs: list[Run], records: list[Record]) -> None:
    """One table per run of its serving scenarios: LoadGen's verdict, rates, latency, the batcher, accuracy;
    then the scenarios that were not measured, with the reason."""
    unmeasured = [(run, o) for run in runs for o in run.densebench.get("scenarios") or []
                  if o.get("status") not in ("measured", "parity_failed")]
    if not records and not unmeasured:
        return
    doc.add("h2", "Serving scenarios (MLPerf LoadGen)")
    doc.add("p", "Each optimization behind densebench's dynamic batcher, driven by MLPerf LoadGen. Server: the "
                 "highest Poisson arrival rate LoadGen confirmed VALID with p99 within the budget. Latency: LoadGen's, "
                 "from a query's scheduled issue to its completion. Accuracy: LoadGen's accuracy mode, every sample's "
                 "served logits against the baseline's (parity).")
    for run in runs:
        rows = sorted((r for r in records if r.run == run), key=lambda r: (r.scenario["name"], -r.throughput))
        if not rows:
            continue
        doc.add("h3", f"{run.label} — serving scenarios")
        doc.add("table", (["scenario", "optimization", "LoadGen", "samples/s", "highest valid rate /s", "p99 budget ms",
                           "p50 ms", "p99 ms", "max batch", "in flight", "executor", "accuracy"],
                          [[r.scenario["name"], r.optimization, "VALID" if r.scenario.get("valid") else
                            "INVALID: " + "; ".join(r.scenario.get("invalid_reasons") or []),
                            f"{r.throughput:.1f}",
                            _fmt((r.scenario.get("server_search") or {}).get("highest_valid_qps")),
                            _fmt(r.scenario.get("latency_budget_ms"), "g"), _fmt(r.p50_ms, ".1f"),
                            _fmt(r.p99_ms, ".1f"), (r.scenario.get("batcher") or {}).get("max_batch", "—"),
                            (r.scenario.get("batcher") or {}).get("in_flight", "—"),
                            (r.scenario.get("batcher") or {}).get("executor", "—"),
                            "pass" if r.parity_passed else "**FAIL**"] for r in rows]))
    if unmeasured:
        doc.add("ul", [f"{run.label}: {scenario_key(o['optimization'], o['scenario'])}: {o['status']}: "
                       f"{o.get('reason')}" for run, o in unmeasured])


def table_lines(path: Path) -> list[str]:
    """A plain-text table of every benchmark in one result file, then what was not measured and why."""
    doc = load(Path(path))
    head = (f"{'optimization':32s} {'bs':>4s} {'precision':9s} {'img/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
            f"{'peak MB':>8s} {'mJ/img':>7s} {'GPU %':>5s} {'W':>5s} {'xcheck':>6s} parity")
    lines = [head]
    benches = [b for b in doc["benchmarks"] if (b.get("extra_info") or {}).get("optimization")]
    for b in sorted(benches, key=lambda b: (b["extra_info"]["batch_size"],
                                            -(b["extra_info"].get("throughput_samples_per_s") or 0))):
        e = b["extra_info"]
        gpu, lat, check = e.get("gpu") or {}, e.get("latency_ms") or {}, e.get("crosscheck") or {}
        energy = _energy(e)
        mj = None if energy is None else 1000 * energy
        parity = e.get("parity") or {}
        name = scenario_key(e["optimization"], e["scenario"].get("name")) if e.get("scenario") else e["optimization"]
        lines.append(
            f"{name:32s} {e['batch_size']:4d} {e.get('precision') or '—':9s} "
            f"{_fmt(e.get('throughput_samples_per_s'), '9.1f')} {_fmt(lat.get('p50'), '8.2f')} "
            f"{_fmt(lat.get('p99'), '8.2f')} {_fmt(peak_memory_mb(e), '8.0f')} "
            f"{_fmt(mj, '7.2f')} {_fmt(gpu.get('utilization_mean_pct'), '5.0f')} "
            f"{_fmt(gpu.get('power_mean_w'), '5.0f')} {_fmt(check.get('ratio'), '6.3f')} "
            + ("pass" if parity.get("passed", True) else "FAIL: " + "; ".join(parity.get("failures", []))))
    dense = _run_info(doc)
    lines += derived.incompleteness(dense)
    for o in dense.get("outcomes", []):
        if o["status"] != Status.MEASURED:
            lines.append(f"{o['status']}: {o['optimization']} at batch {o.get('batch_size')}: {o.get('reason')}")
    for r in dense.get("best", []):
        sp = r.get("speedup_vs_baseline")
        lines.append(f"best at batch {r['batch_size']}: {r['optimization']} {r['throughput_samples_per_s']:.1f} img/s"
                     + (f" ({sp:.2f}x baseline)" if sp else ""))
    if dense.get("setup_s"):
        lines.append(f"setup: {dense['setup_s']}")
    return lines
