"""``densebench ab``: A/B between two sides that differ in one thing, measured in the same window.

A side is a Python interpreter (``python=``, e.g. another venv), a checkout of the code
(``checkout=``, put first on ``PYTHONPATH``) and densebench settings (``image_size=235``, any
``--densebench-*`` key, plus ``optimization=`` and ``batch_size=``). Each side runs in one
long-lived worker (:mod:`densebench.ab_worker`) that builds once and then times rounds on request;
this parent asks for one round at a time in ABBA order, so load from other jobs hits both sides of
each pair alike, and decides on the median of the paired ratios B/A with a bootstrap CI
(:mod:`densebench.paired`). Verdict: ``regression`` (exit 1) only when the whole CI lies above
``1 + threshold``; ``improvement`` when wholly below ``1 - threshold``; otherwise no change shown.

Refused (exit 2, saying what differs): sides on different devices, or whose settings, weights or
dataset differ in anything that was not varied on purpose (``--a``/``--b``).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from . import __version__, noise, paired
from . import _pytest_benchmark as pb
from .errors import ABError
from .settings import OPTIONS_BY_KEY

WORKER = Path(__file__).with_name("ab_worker.py")
SIDE_KEYS = ("python", "checkout", "optimization", "batch_size", "threads")
DEFAULTS = {"optimization": "baseline", "batch_size": "1", "threads": "auto"}
# Settings that may differ without changing what is measured (each side writes its own output).
IGNORED = ("output", "journal", "optimizations", "batch_sizes")


@dataclass
class SideSpec:
    """One side: interpreter, checkout, and the settings given for it (raw strings)."""

    name: str
    python: str = sys.executable
    checkout: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)
    optimization: str = "baseline"
    batch_size: int = 1
    threads: str = "auto"  # torch intra-op threads in the worker: "auto", "all" or a count (ab_worker.threads_for)


def parse_pairs(items: list[str], where: str) -> dict[str, str]:
    """``["image_size=235", ...]`` -> dict; raises ABError naming a bad item and the allowed keys."""
    out: dict[str, str] = {}
    allowed = (*SIDE_KEYS, *OPTIONS_BY_KEY)
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_").removeprefix("densebench_")
        if not sep or key not in allowed:
            raise ABError(f"{where} {item!r}: expected KEY=VALUE with KEY one of {', '.join(allowed)}")
        out[key] = value.strip()
    return out


def make_sides(common: dict[str, str], a: dict[str, str], b: dict[str, str]) -> tuple[SideSpec, SideSpec]:
    """The two sides: ``common`` for both, then each side's own keys on top."""
    sides = []
    for name, own in (("a", a), ("b", b)):
        raw = {**DEFAULTS, **common, **own}
        checkout = Path(raw.pop("checkout")).resolve() if raw.get("checkout") else None
        if checkout is not None and not (checkout / "densebench").is_dir():
            raise ABError(f"side {name}: checkout {checkout} has no densebench/ package")
        batch_size = _positive(raw.pop("batch_size"), f"side {name}: batch_size")
        threads = raw.pop("threads").strip().lower()
        if threads not in ("auto", "all"):
            threads = str(_positive(threads, f"side {name}: threads (auto, all or a count)"))
        sides.append(SideSpec(name, raw.pop("python", sys.executable), checkout, raw, raw.pop("optimization"),
                              batch_size, threads))
    return sides[0], sides[1]


def _positive(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ABError(f"{what} must be a positive integer, got {text!r}")
    return value


class Worker:
    """A running ab_worker: request/reply over its pipes; its stderr goes to ``log``."""

    def __init__(self, spec: SideSpec, output: Path, log: IO[str]):
        self.spec = spec
        paths = [str(spec.checkout)] if spec.checkout else []
        # absolute: the worker starts in the side's checkout, where a relative entry names another folder
        paths += [str(Path(p).absolute()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        paths.append(str(Path(__file__).resolve().parent.parent))  # this densebench, when the side has none
        # Idle OpenMP threads must not spin-wait while the other side runs its round (GNU OpenMP spins
        # after each parallel region by default): that would charge one side's idling to the other.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONPATH": os.pathsep.join(paths),
               "PYTHONIOENCODING": "utf-8"}  # the JSON-line pipes are UTF-8 whatever the locale
        self.output = output / spec.name
        try:
            self.proc = subprocess.Popen([spec.python, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, encoding="utf-8", env=env, cwd=spec.checkout or Path.cwd())
        except OSError as exc:
            raise ABError(f"side {spec.name}: cannot start {spec.python}: {exc}") from None

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise ABError(f"side {self.spec.name}: the worker ({self.spec.python}) exited with status "
                          f"{self.proc.wait()}; see its log")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ABError(f"side {self.spec.name}: {answer.get('error')}")
        return answer

    def setup(self) -> dict[str, Any]:
        settings = {**self.spec.settings, "output": str(self.output)}
        return self.ask({"cmd": "setup", "settings": settings, "optimization": self.spec.optimization,
                         "batch_size": self.spec.batch_size, "threads": self.spec.threads})["info"]

    def rounds(self, n: int) -> list[float]:
        return [float(t) for t in self.ask({"cmd": "rounds", "n": n})["times"]]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@contextmanager
def workers(a: SideSpec, b: SideSpec, output: Path) -> Iterator[tuple[Worker, Worker]]:
    """Both workers started, each built and warmed up; stopped on exit."""
    output.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        started = []
        for spec in (a, b):
            log = stack.enter_context((output / f"worker-{spec.name}.log").open("w", encoding="utf-8"))
            worker = Worker(spec, output, log)
            stack.callback(worker.close)
            started.append(worker)
        yield started[0], started[1]


def differences(info_a: dict[str, Any], info_b: dict[str, Any], varied: set[str]) -> list[str]:
    """What differs between the sides besides what was varied on purpose, one line each."""
    out = []
    if info_a["device_name"] != info_b["device_name"] or info_a["device"] != info_b["device"]:
        out.append(f"device: {info_a['device']} ({info_a['device_name']}) vs {info_b['device']} "
                   f"({info_b['device_name']})")
    sa, sb = info_a["settings"], info_b["settings"]
    for key in sorted(set(sa) & set(sb)):
        if key not in varied and key not in IGNORED and sa[key] != sb[key]:
            out.append(f"{key}: {sa[key]!r} vs {sb[key]!r}")
    for key in ("weights", "dataset", "optimization", "batch_size", "threads"):
        if key not in varied and info_a.get(key) != info_b.get(key):
            out.append(f"{key}: {info_a[key]!r} vs {info_b[key]!r}")
    if "weights" not in varied and "seed" not in varied and info_a["model_digest"] != info_b["model_digest"]:
        out.append(f"model weights digest: {info_a['model_digest']} vs {info_b['model_digest']}")
    return out


def package_changes(info_a: dict[str, Any], info_b: dict[str, Any]) -> list[str]:
    """Installed packages that differ between the two interpreters ('name: 1.0 -> 2.0', 'name: only in B')."""
    pa, pb_ = info_a["packages"], info_b["packages"]
    out = []
    for name in sorted(set(pa) | set(pb_), key=str.lower):
        if pa.get(name) != pb_.get(name):
            out.append(f"{name}: {pa.get(name, 'absent')} (A) vs {pb_.get(name, 'absent')} (B)")
    return out


def measure_pairs(wa: Worker, wb: Worker, pairs: int, per_turn: int, device: Any, max_pairs: int | None = None,
                  enough: Callable[[list[float], list[float]], bool] | None = None,
                  ) -> tuple[list[float], list[float], dict[str, list[float]], dict]:
    """``pairs`` ABBA-interleaved turns of ``per_turn`` rounds, then more up to ``max_pairs`` while
    ``enough`` says no (:func:`paired.interleave`); (A's and B's fastest round per turn, every round of
    each side {"a": [...], "b": [...]}, interference seen in the window)."""
    every: dict[str, list[float]] = {"a": [], "b": []}

    def recorded(worker: Worker, side: str) -> Callable[[int], list[float]]:
        def run(k: int) -> list[float]:
            times = worker.rounds(k)
            every[side] += times
            return times

        return run

    with noise.Interference(device) as seen:
        a, b = paired.interleave(recorded(wa, "a"), recorded(wb, "b"), pairs, per_turn, max_pairs=max_pairs,
                                 enough=enough)
    return a, b, every, seen.result()


def side_json(info: dict[str, Any], spec: SideSpec, times: list[float], interference: dict[str, Any]) -> dict:
    """A pytest-benchmark-compatible JSON document for one side's rounds (seconds)."""
    bs = info["batch_size"]
    stats = {**pb.stats_json(times), "data": times, "iterations": 1}
    name = f"test_inference[{info['optimization']}-bs{bs}]"
    extra = {"optimization": info["optimization"], "batch_size": bs, "image_size": info["settings"]["image_size"],
             "device": info["device"], "device_name": info["device_name"], "precision": info["precision"],
             "throughput_samples_per_s": bs / stats["median"], "build_s": info["build_s"],
             "ab_side": {"name": spec.name, "python": info["python"], "prefix": info["prefix"],
                         "checkout": str(spec.checkout) if spec.checkout else None,
                         "densebench": info["densebench"], "settings": spec.settings,
                         "threads": info.get("threads")},
             "noise": {"cv": paired.cv(times), **interference}}
    return {"machine_info": {"node": os.uname().nodename, **info["machine_info"]}, "commit_info": {},
            "benchmarks": [{"group": f"batch_size={bs}", "name": name, "fullname": f"densebench ab::{name}",
                            "params": {"optimization": info["optimization"], "batch_size": bs},
                            "param": f"{info['optimization']}-bs{bs}", "extra_info": extra,
                            "options": {"timer": "perf_counter", "min_rounds": len(times), "warmup": True},
                            "stats": stats}],
            "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(), "version": pb.version(),
            "densebench": {"version": __version__, "ab": True}}


def verdict(result: paired.PairedRatio, threshold: float) -> str:
    """'regression' (B slower: the CI lies wholly above 1 + threshold), 'improvement', or 'no change shown'."""
    beyond = result.beyond(threshold)
    return {"above": "regression", "below": "improvement"}.get(beyond or "", "no change shown")


def run(a: SideSpec, b: SideSpec, output: Path, pairs: int, threshold: float, seed: int,
        say: Callable[[str], None] = print, per_turn: int = 2, max_pairs: int | None = None,
        ) -> tuple[dict[str, Any], int]:
    """Measure A and B interleaved; write a.json, b.json and ab.json under ``output``; (verdict doc, exit).

    ``pairs`` pairs run first; while the CI still reaches over an edge of ``[1 - threshold, 1 + threshold]``
    (the verdict could still change), more follow in blocks of :data:`paired.BLOCK`, up to ``max_pairs``."""
    varied = {k for k in set(a.settings) | set(b.settings) if a.settings.get(k) != b.settings.get(k)}
    varied |= {k for k in ("optimization", "batch_size", "threads") if getattr(a, k) != getattr(b, k)}
    with workers(a, b, output) as (wa, wb):
        say("densebench ab: building both sides (once)")
        info_a, info_b = wa.setup(), wb.setup()
        problems = differences(info_a, info_b, varied)
        if problems:
            raise ABError("the sides differ in more than what was varied; refusing to compare:\n  "
                          + "\n  ".join(problems))
        more = f", up to {max_pairs} until decided" if max_pairs and max_pairs > pairs else ""
        say(f"densebench ab: {pairs} pairs of turns{more} ({per_turn} rounds each, the fastest counts), "
            "ABBA-interleaved")
        device = SimpleNamespace(type=info_a["device"].split(":")[0])
        paired.load_block_bootstrap()
        ta, tb, every, seen = measure_pairs(wa, wb, pairs, per_turn, device, max_pairs,
                                            paired.until_decided(threshold, seed))
    result = paired.paired_ratio(tb, ta, seed=seed)
    doc = {"ratio_b_over_a": result.to_json(), "threshold": threshold, "verdict": verdict(result, threshold),
           "half_width": result.half_width, "decided": result.decided(threshold),
           "varied": sorted(varied),
           "packages_differ": package_changes(info_a, info_b),
           "interference": seen, "cv": {"a": paired.cv(every["a"]), "b": paired.cv(every["b"])},
           "files": {"a": str(output / "a.json"), "b": str(output / "b.json")}}
    for spec, info, times in ((a, info_a, every["a"]), (b, info_b, every["b"])):
        (output / f"{spec.name}.json").write_text(json.dumps(side_json(info, spec, times, seen), indent=2),
                                                    encoding="utf-8")
    (output / "ab.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc, 1 if doc["verdict"] == "regression" else 0


def _blocks(ratio: dict[str, Any]) -> str:
    """', autocorrelated: CI over bootstrap blocks of k pairs' when the bootstrap resampled blocks, else ''."""
    block = paired.PairedRatio.from_json(ratio).block  # one reading of ci_block (absent or null: 1)
    return f", autocorrelated: CI over bootstrap blocks of {block} pairs" if block > 1 else ""


def lines(doc: dict[str, Any]) -> list[str]:
    """The verdict in words, and a warning when the noise exceeds the threshold gated on."""
    r, threshold = doc["ratio_b_over_a"], doc["threshold"]
    out = [f"densebench ab: B/A time ratio {r['ratio']:.3f} (95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f}, "
           f"{r['pairs']} pairs{_blocks(r)}; median of paired ratios): {doc['verdict']} at a {threshold:.0%} threshold"]
    if not doc.get("decided", True):
        out.append(f"undecided: after {r['pairs']} pairs the CI still reaches over 1 +- {threshold:.0%}; the "
                   "difference, if any, is near the threshold (--max-pairs runs more)")
    if doc["varied"]:
        out.append("varied: " + ", ".join(doc["varied"]))
    changed = doc["packages_differ"]
    if changed:
        out.append(f"packages differ ({len(changed)}, all in ab.json): " + "; ".join(changed[:10]))
    warn = noise.warning("the paired ratio's CI half-width", doc["half_width"], threshold, doc["interference"])
    if warn:
        out.append(warn)
    return out
