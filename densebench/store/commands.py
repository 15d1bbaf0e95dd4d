"""The store's command line: ``densebench store ingest FILE...``, ``densebench history`` and
``densebench dashboard -o DIR``. Each takes ``--densebench-store URL`` (default: the
``DENSEBENCH_STORE`` environment variable, else ``auto``: ``results/densebench.sqlite``).

Exit status: 0 done (history: no flagged regression), 1 a flagged regression with
``--fail-on-regression``, 2 bad input (an unreadable file, a bad URL, a store that cannot be
opened). A file that cannot be ingested is named and the others are still ingested.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ReportError, SettingsError, StoreError
from ..settings import OPTIONS_BY_KEY, parse_store, redact_url

STORE = OPTIONS_BY_KEY["store"]


def store_url(text: str | None) -> str:
    """The store URL from ``--densebench-store``, else the environment, else auto. Raises SettingsError."""
    raw = text or os.environ.get(STORE.env) or "auto"
    errors: list[str] = []
    value = parse_store(errors, STORE.flag, raw)
    if errors or value is None:
        raise SettingsError(errors[0] if errors else f"{STORE.flag}: 'off' names no store (allowed: auto, "
                            "sqlite:///PATH, postgresql://USER@HOST/DB)")
    if value == "auto":
        value = f"sqlite:///{Path(OPTIONS_BY_KEY['output'].default).resolve() / 'densebench.sqlite'}"
    return value


def _fraction(text: str) -> float:
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction like 0.05 or 5%")
    return value


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a confidence (allowed: a number between 0 and 1, "
                                         "e.g. 0.99)")
    return value


def _min_runs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of runs (allowed: an integer >= 1)")
    return int(text)


def _metrics(text: str) -> tuple[str, ...]:
    from .schema import METRICS  # optional: the store extra (sqlalchemy)

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {', '.join(unknown) if unknown else repr(text)} (allowed: "
                                         f"{', '.join(METRICS)})")
    return names


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``store``, ``history`` and ``dashboard`` to densebench's sub-commands."""
    store_help = f"results store URL (default: ${STORE.env}, else auto = results/densebench.sqlite)"
    store = sub.add_parser("store", help="the results database: ingest results files")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    ingest = store_sub.add_parser("ingest", help="add results JSON, autosaves (.benchmarks/) or journals to the store")
    ingest.add_argument("files", nargs="+", help="results JSON, journal-*.jsonl, or directories of them")
    ingest.add_argument("--label", help="machine label (default: the run's --densebench-machine-label)")
    history = sub.add_parser("history", help="series over runs and change points per machine (exit 1 on regression "
                                             "with --fail-on-regression)")
    history.add_argument("--metrics", type=_metrics, default=None,
                         help="comma list of metrics (default: throughput, p99 latency, peak memory, energy and CPU "
                              "time per image)")
    history.add_argument("--machine", help="only this machine (a key prefix or a label)")
    history.add_argument("--threshold", type=_fraction, default=0.05,
                         help="smallest step that is flagged, e.g. 0.05 or 5%% (default 5%%)")
    history.add_argument("--confidence", type=_confidence, default=0.99,
                         help="smallest confidence flagged (default 0.99)")
    history.add_argument("--min-runs", type=_min_runs, default=3,
                         help="fewest runs on each side of a change (default 3)")
    history.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a regression is flagged")
    dash = sub.add_parser("dashboard", help="static HTML: one page per machine, trends, change points, ranking")
    dash.add_argument("-o", "--output", required=True, help="directory to write (index.html and one page per machine)")
    dash.add_argument("--metrics", type=_metrics, default=None, help="metrics to plot (default as for history)")
    for parser in (ingest, history, dash):
        parser.add_argument(STORE.flag, dest="store", metavar="URL", help=store_help)


def _fail(command: str, exc: Exception) -> int:
    print(f"densebench {command}: {exc}", file=sys.stderr)
    return 2


def cmd_store(args: argparse.Namespace) -> int:
    from . import ingest, schema  # optional: the store extra (sqlalchemy)

    try:
        url = store_url(args.store)
        engine = schema.open_store(url)
    except (SettingsError, StoreError) as exc:
        return _fail("store ingest", exc)
    failed = done_count = 0
    for given in args.files:
        try:
            docs = ingest.documents([Path(given)])
        except ReportError as exc:
            print(f"densebench store ingest: {exc}", file=sys.stderr)
            failed += 1
            continue
        for path, doc in docs:
            try:
                done = ingest.ingest(engine, doc, path, args.label)
            except (ReportError, StoreError) as exc:
                print(f"densebench store ingest: {path}: {exc}", file=sys.stderr)
                failed += 1
                continue
            done_count += 1
            what = f"{done.benchmarks} benchmark(s) stored" if done.inserted else "already in the store: skipped"
            print(f"{path}: run {done.run_uid[:12]} on machine {done.machine_key[:12]}: {what}")
    print(f"densebench store ingest: {done_count} of {done_count + failed} file(s) in {redact_url(url)}")
    return 2 if failed else 0


def cmd_history(args: argparse.Namespace) -> int:
    from . import history, schema  # optional: the store extra (sqlalchemy, ruptures)

    try:
        engine = schema.open_store(store_url(args.store))
    except (SettingsError, StoreError) as exc:
        return _fail("history", exc)
    series = history.load_series(engine, args.metrics or history.DEFAULT_METRICS, args.machine)
    if not series:
        print("densebench history: no runs in the store" + (f" for machine {args.machine!r}" if args.machine else ""))
        return 0
    history.analyse(engine, series, args.threshold, args.confidence, args.min_runs)
    print("\n".join(history.report_lines(series, args.threshold, args.confidence)))
    regressed = any(c.regression for s in series for c in s.changes)
    return 1 if regressed and args.fail_on_regression else 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from . import dashboard, history, schema  # optional: the store extra (sqlalchemy, ruptures, matplotlib)

    try:
        engine = schema.open_store(store_url(args.store))
        pages = dashboard.write(engine, Path(args.output), args.metrics or history.DEFAULT_METRICS)
    except (SettingsError, StoreError, ReportError) as exc:
        return _fail("dashboard", exc)
    print(f"densebench dashboard: {len(pages) - 1} machine page(s); open {pages[0]}")
    return 0


HANDLERS = {"store": cmd_store, "history": cmd_history, "dashboard": cmd_dashboard}
