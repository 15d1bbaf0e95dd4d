"""``densebench`` command line: run | report | show | compare | recover | env | list | data | store | history |
dashboard.

``densebench run`` is the suite with sensible defaults: it runs pytest on the benchmark
suite (``./benchmarks`` in a checkout, else the copy inside the package), autosaves with
pytest-benchmark and writes ``<output>/results.json``. Other arguments go to pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from . import ab, compare, data, doctor, journal, storage
from .errors import ABError, ReportError
from .optimizations import plan_for, techniques, unavailable_reason
from .report import build, insights, load_all, table_lines, write
from .settings import OPTIONS_BY_KEY, absolute_path, fraction_or_percent, override_default
from .store import commands as store_commands
from .telemetry import machine_info


def suite_path() -> tuple[Path, Path]:
    """(what to collect, rootdir): ./benchmarks in a checkout, else the packaged suite."""
    local = Path.cwd() / "benchmarks" / "test_inference.py"
    if local.is_file():
        return local.parent, Path.cwd()
    package = Path(__file__).resolve().parent
    return package / "suite", package.parent


def _default_isolation(extra: list[str]) -> bool:
    """``densebench run`` isolates optimizations by default, except with xdist workers."""
    return not any(a.startswith(("-n", "--numprocesses", "--dist")) for a in extra)


def _default_scenarios(extra: list[str]) -> None:
    """On the CPU, ``densebench run`` adds LoadGen's offline and server scenarios to the batch benchmarks (when
    LoadGen is installed and the user chose no scenarios): each optimization is also served behind the dynamic
    batcher. Only the default changes: --densebench-scenarios, its environment variable or ini key still decide."""
    import importlib.util

    if any(a.startswith("--densebench-scenarios") for a in extra) or os.environ.get("DENSEBENCH_SCENARIOS"):
        return  # the user chose
    if importlib.util.find_spec("mlperf_loadgen") is None:
        print("densebench run: serving scenarios off (MLPerf LoadGen is not installed: pip install "
              "'densebench[serving]')", flush=True)
        return
    device = next((a.split("=", 1)[1] for a in extra if a.startswith("--densebench-device=")), None)
    if device is None and "--densebench-device" in extra[:-1]:
        device = extra[extra.index("--densebench-device") + 1]
    device = (device or os.environ.get("DENSEBENCH_DEVICE") or "auto").strip().lower()
    if device.startswith("cuda") or (device == "auto" and _cuda_available()):
        return
    override_default("scenarios", "batch,offline,server")
    print("densebench run: on the CPU, each optimization is also served under MLPerf LoadGen (offline and server "
          "scenarios; --densebench-scenarios=batch for the batch benchmarks alone)", flush=True)


def _cuda_available() -> bool:
    import torch  # heavy: pytest imports it next anyway

    return bool(torch.cuda.is_available())


def _storage_args(output: Path, extra: list[str]) -> list[str]:
    """pytest-benchmark's autosave storage: ./.benchmarks as usual, or <output>/.benchmarks when the
    working directory cannot be written (a container's root-owned WORKDIR). An explicit
    --benchmark-storage wins."""
    if any(a.startswith("--benchmark-storage") for a in extra) or os.access(Path.cwd(), os.W_OK | os.X_OK):
        return []
    storage = (output / ".benchmarks").resolve()
    print(f"densebench run: {Path.cwd()} is not writable; autosave goes to {storage}", flush=True)
    return [f"--benchmark-storage=file://{storage}"]


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    output = absolute_path(args.output)  # pytest and its children may run in another directory
    output.mkdir(parents=True, exist_ok=True)
    suite, rootdir = suite_path()
    pytest_args = [str(suite), f"--rootdir={rootdir}", "-p", "densebench.plugin", "-p", "no:cacheprovider",
                   f"--densebench-output={output}", f"--benchmark-json={output / 'results.json'}",
                   "--benchmark-autosave", *_storage_args(output, extra), "-rs",
                   # the CLI imported densebench before pytest could rewrite its asserts; nothing to rewrite
                   "-W", "ignore::pytest.PytestAssertRewriteWarning", *extra]
    print("densebench run: pytest " + " ".join(pytest_args), flush=True)
    if _default_isolation(extra):
        # One process per optimization: a crashing backend costs only itself, and on CPU each
        # optimization's peak RSS is its own, not inflated by runtimes loaded before it. Only the
        # default changes: --densebench-isolate, DENSEBENCH_ISOLATE or the ini key still decide.
        override_default("isolate", "true")
        print("densebench run: each optimization in its own process (--densebench-isolate=false to share one)",
              flush=True)
    _default_scenarios(extra)
    code = int(pytest.main(pytest_args))
    results = output / "results.json"
    if results.is_file():
        try:
            records = load_all([results])  # parsed once: the file holds every raw round
        except ReportError as exc:
            print(f"densebench: no report: {exc}")
            return code
        print("densebench: " + "\n  ".join(["findings:", *insights(records, None)[:12]]))
        written = storage.guarded("report", output, f"the results are in {results}; 'densebench report {results} "
                                  "-o DIR' writes the report elsewhere", lambda: write(records, output))
        print(f"densebench: JSON {results}" + (f"\n            report {written['html']} (and report.md, plots)"
                                                if written else ""))
    return code


def cmd_report(args: argparse.Namespace) -> int:
    try:
        written = build([Path(p) for p in args.results], Path(args.output), args.latency_budget_ms)
    except ReportError as exc:
        print(f"densebench report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the results were read; the report could not be written there
        print(storage.describe("report", args.output, exc, "nothing was written; choose another directory "
                               "with -o"), file=sys.stderr)
        return 2
    for kind, path in written.items():
        print(f"{kind:16s} {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        changes = compare.compare(Path(args.base), Path(args.new), args.threshold, args.confidence,
                                  args.resamples, args.seed, args.allow_different_devices,
                                  args.allow_different_settings)
    except ReportError as exc:
        print(f"densebench compare: {exc}", file=sys.stderr)
        return 2
    text = compare.markdown(changes, Path(args.base), Path(args.new), args.threshold, args.confidence)
    if args.markdown:
        storage.guarded("markdown table", args.markdown, "the table is printed below",
                        lambda: storage.write_text(Path(args.markdown), text))
    print(text)
    print(compare.summary_line(changes))
    return 1 if any(c.flagged for c in changes) else 0


def cmd_ab(args: argparse.Namespace) -> int:
    if args.pairs < 2 or args.rounds_per_turn < 1:
        print(f"densebench ab: --pairs {args.pairs} / --rounds-per-turn {args.rounds_per_turn}: allowed are "
              "--pairs >= 2 (a confidence interval needs at least two pairs) and --rounds-per-turn >= 1",
              file=sys.stderr)
        return 2
    try:
        a, b = ab.make_sides(ab.parse_pairs(args.set, "--set"), ab.parse_pairs(args.a, "--a"),
                             ab.parse_pairs(args.b, "--b"))
        doc, code = ab.run(a, b, Path(args.output), args.pairs, args.threshold, args.seed,
                           per_turn=args.rounds_per_turn, max_pairs=args.max_pairs)
    except ABError as exc:
        print(f"densebench ab: {exc}", file=sys.stderr)
        return 2
    print("\n".join(ab.lines(doc)))
    print(f"densebench ab: wrote {doc['files']['a']}, {doc['files']['b']} and {Path(args.output) / 'ab.json'}")
    return code


def cmd_show(args: argparse.Namespace) -> int:
    try:
        print("\n".join(table_lines(Path(args.result))))
    except ReportError as exc:
        print(f"densebench show: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    out = Path(args.output)
    try:
        doc = journal.recover(Path(args.journal), out)
    except (OSError, ValueError) as exc:
        print(f"densebench recover: {exc}", file=sys.stderr)
        return 2
    dense = doc["densebench"]
    state = "complete" if dense["complete"] else "interrupted (no end marker: the run crashed or was killed)"
    print(f"densebench recover: {len(doc['benchmarks'])} benchmark(s) and {len(dense['outcomes'])} outcome(s) "
          f"from {args.journal}, {state} -> {out}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    import torch  # heavy, optional

    info: dict[str, Any] = machine_info()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    info["optimizations"] = {
        name: {device: unavailable_reason(plan_for(name), device) or "available" for device in devices}
        for name in techniques()
    }
    checks = doctor.all_checks()
    info["checks"] = doctor.as_json(checks)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"CPU: {info['cpu_model']} ({info['logical_cpus']} logical CPUs, torch threads {info['torch_threads']})")
    for gpu in info["gpus"]:
        print(f"GPU {gpu['index']}: {gpu['name']} ({gpu['memory_total_mb']:.0f} MiB, "
              f"compute capability {gpu['compute_capability']})")
    if not info["gpus"]:
        print(f"GPU: none ({info.get('gpu_reason')})")
    print(f"driver {info.get('driver_version')}, CUDA runtime {info.get('cuda_runtime')}, cuDNN {info.get('cudnn')}")
    print("libraries: " + ", ".join(f"{k} {v}" for k, v in info["libraries"].items() if v))
    for name, per_device in info["optimizations"].items():
        print(f"  {name:14s} " + "; ".join(f"{d}: {why}" for d, why in per_device.items()))
    for section, items in checks.items():
        print(f"checks ({section}):")
        print("\n".join(c.line() for c in items))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for name, tech in techniques().items():
        print(f"{name:14s} {tech.kind:8s} {tech.summary}")
    print("Stack techniques with '+', e.g. channels_last+amp+compile; 'all' runs every one, 'best' adds "
          "recommended stacks.")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).expanduser()
    try:
        if args.archive:
            archive = Path(args.archive)
            if data.md5_of(archive) != data.TINY_IMAGENET_MD5 and not args.skip_md5:
                raise data.DataError(f"{archive} is not the official tiny-imagenet-200.zip (MD5 mismatch); "
                                     "pass --skip-md5 to use it anyway")
            root = data.extract_tiny_imagenet(archive, data_dir / data.TINY_IMAGENET_DIR)
        else:
            root = data.prepare_tiny_imagenet(data_dir, download_ok=True)
        pairs = data.val_annotations(root)
    except data.DataError as exc:
        print(f"densebench data: {exc}", file=sys.stderr)
        return 2
    print(f"Tiny ImageNet-200 ready at {root}: {len(pairs)} validation images")
    return 0


def _fraction(text: str) -> float:
    value = fraction_or_percent(text)
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction like 0.05 or 5%")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densebench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmark suite (extra arguments go to pytest)")
    output = OPTIONS_BY_KEY["output"].default
    run.add_argument("--output", "-o", default=output, help=f"output directory (default: {output})")
    report = sub.add_parser("report", help="report.md, report.html and plots from saved JSON")
    report.add_argument("results", nargs="+", help="pytest-benchmark JSON files written by densebench")
    report.add_argument("-o", "--output", default="report", help="output directory (default: report)")
    report.add_argument("--latency-budget-ms", type=float, help=OPTIONS_BY_KEY["latency_budget_ms"].help)
    show = sub.add_parser("show", help="a plain-text table of one result file")
    show.add_argument("result", help="pytest-benchmark JSON written by densebench")
    comp = sub.add_parser("compare", help="significant performance changes between two runs (exit 1 on a regression, a "
                          "missing configuration or a new parity failure)")
    comp.add_argument("base", help="baseline JSON")
    comp.add_argument("new", help="new JSON")
    comp.add_argument("--threshold", type=_fraction, default=0.05,
                      help="smallest change that counts, e.g. 0.05 or 5%% (default 5%%)")
    comp.add_argument("--confidence", type=float, default=0.95, help="bootstrap interval (default 0.95)")
    comp.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    comp.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    comp.add_argument("--markdown", help="also write the markdown table here (for a PR comment)")
    comp.add_argument("--allow-different-devices", action="store_true",
                      help="compare runs from different devices anyway")
    comp.add_argument("--allow-different-settings", action="store_true",
                      help="compare runs made with different image size, weights, dataset or parity settings anyway")
    abp = sub.add_parser("ab", help="A/B of two sides (venvs, checkouts, settings), rounds interleaved; exit 1 "
                                    "when B is slower beyond the threshold")
    abp.add_argument("--a", action="append", default=[], metavar="KEY=VALUE",
                     help="side A: python=, checkout=, optimization=, batch_size=, threads= (auto: cores - 1 on the "
                          "CPU; all; or a count) or a setting (image_size=224)")
    abp.add_argument("--b", action="append", default=[], metavar="KEY=VALUE", help="side B, as --a")
    abp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for both sides")
    abp.add_argument("--pairs", type=int, default=30, help="pairs of turns, ABBA order (default 30)")
    abp.add_argument("--max-pairs", type=int, default=90,
                     help="while the CI still reaches over an edge of 1 +- threshold, more pairs (steps of 10) "
                          "up to this many (default 90; at or below --pairs: a fixed count)")
    abp.add_argument("--rounds-per-turn", type=int, default=2,
                     help="rounds per side per turn, the fastest counts (default 2)")
    abp.add_argument("--threshold", type=_fraction, default=0.05, help="e.g. 5%% (default 5%%)")
    abp.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    abp.add_argument("-o", "--output", default="ab", help="directory for a.json, b.json, ab.json (default: ab)")
    rec = sub.add_parser("recover", help="turn a results journal (e.g. of a crashed run) into pytest-benchmark JSON")
    rec.add_argument("journal", help="journal-*.jsonl from OUTPUT/journals")
    rec.add_argument("-o", "--output", required=True, help="the JSON file to write (atomically)")
    env = sub.add_parser("env", help="doctor: machine, driver vs torch's CUDA build, container toolkit, MIG, GPU "
                                     "backends and their precision, CPU vector extensions; which optimizations can run")
    env.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("list", help="list the optimizations")
    data = sub.add_parser("data", help="download, verify and extract Tiny ImageNet-200")
    data_dir = OPTIONS_BY_KEY["data_dir"].default
    data.add_argument("--data-dir", default=data_dir, help=f"where to put it (default: {data_dir})")
    data.add_argument("--archive", help="use an already downloaded tiny-imagenet-200.zip")
    data.add_argument("--skip-md5", action="store_true", help="accept an archive whose MD5 differs")
    store_commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {"run": lambda a: cmd_run(a, extra), "report": cmd_report, "compare": cmd_compare,
                "recover": cmd_recover, "ab": cmd_ab, "show": cmd_show, "env": cmd_env, "list": cmd_list,
                "data": cmd_data, **store_commands.HANDLERS}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
