"""Which statistic gives the in-run speedup a narrow, honest CI on a noisy machine (a study, not a test).

Builds the baseline and each named optimization in this process (as an isolated child of
``densebench run`` does) and records ``--pairs`` pairs of ABBA-interleaved turns of 2 forward passes
each (``densebench run``'s design, :func:`densebench.paired.interleave`), keeping every round's time and
when it ran. With ``--load`` a background process switches between busy (one core spinning) and idle
every 0.3-2 s, as in scripts/gate_power.py. Then, per optimization and statistic:

* ``median``: :func:`densebench.paired.paired_ratio`, the median of the per-pair ratios (the speedup's
  statistic in ``densebench run``), its CI from a bootstrap over blocks of consecutive pairs whose length
  is estimated from the pairs (:func:`densebench.paired.block_length`; 1 = the plain bootstrap);
* ``median-iid``: the same median, its CI from the plain bootstrap (every pair on its own: the run's CI
  until 2026-12-06 13:30);
* ``median-b5``: the same median, its CI from a circular block bootstrap over runs of a fixed 5 pairs
  (:func:`block_median`), like the run's the wider of that and the plain interval;
* ``hd0.1`` ... ``hd0.3``: :func:`densebench.paired.quantile_ratio`, the ratio of the two sides'
  Harrell-Davis quantiles of their turn times (the alternative measured);

it prints the estimate and CI half-width on all pairs, and, replaying ``densebench run``'s sequential
stopping (20 pairs, then blocks of 10 while the CI is wider than +-3%, up to ``--limit``, default 60)
from every 5th pair on: how often it reached +-3%, the mean pairs it took, and how often the window's 95% CI held the
estimate from all pairs (``held``: calibration, lowered by the machine's drift over the whole run too).

    PYTHONPATH=. python scripts/speedup_estimators.py openvino jit --pairs 120 --json raw.json
    PYTHONPATH=. python scripts/speedup_estimators.py --from docs/speedup-estimators/quiet.json.gz
    PYTHONPATH=. python scripts/speedup_estimators.py --from results/results.json  # a densebench run's turns

The recorded turns behind docs/speedup-estimators-2vcpu.txt are in docs/speedup-estimators/ (gzip'd JSON).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from gate_power import LOAD
from speedup_designs import side

from densebench import paired
from densebench.optimizations import build_runner
from densebench.resources import Resources
from densebench.settings import Settings

TARGET, FIRST, LIMIT, STEP = 0.03, 20, 60, 5  # LIMIT: the run's default cap when the study was made (now 120)


def block_median(base: list[float], cand: list[float], block: int = 5) -> paired.PairedRatio:
    """The run's median of paired ratios, its CI from a circular block bootstrap over runs of ``block``
    consecutive pairs (wrapping at the end), a fixed choice instead of ``paired.block_length``'s estimate;
    like the run's, the wider of that interval and the plain bootstrap's (``paired.paired_ratio``)."""
    return paired.paired_ratio(base, cand, block=block)


STATISTICS: dict[str, Callable[[list[float], list[float]], paired.PairedRatio]] = {
    "median": paired.paired_ratio,
    "median-iid": lambda base, cand: paired.paired_ratio(base, cand, block=1),
    "median-b5": block_median,
    **{f"hd{q:g}": (lambda base, cand, q=q: paired.quantile_ratio(base, cand, q)) for q in (0.1, 0.15, 0.2, 0.3)},
}


def record(names: list[str], pairs: int, batch_size: int, image_size: int) -> dict[str, Any]:
    """{optimization: [[side, start (s since the epoch), [round seconds, ...]], ...] turn by turn}."""
    settings = Settings.from_mapping({"device": "cpu", "image_size": str(image_size), "offline": "true"})
    res = Resources(settings)
    res.prepare()
    batch = res.data.batch(batch_size)

    def logged(built: tuple[Any, Any], log: list[Any], tag: str) -> Callable[[int], list[float]]:
        rounds = paired._timed_rounds(*built)

        def run(k: int) -> list[float]:
            start = time.time()
            times = rounds(k)
            log.append([tag, start, times])
            return times
        return run

    baseline = side(build_runner("baseline", res.model, batch, res.context()), batch, res.device)
    out: dict[str, Any] = {}
    for name in names:
        log: list[Any] = []
        candidate = side(build_runner(name, res.model, batch, res.context()), batch, res.device)
        gc.collect()
        gc.disable()
        paired.interleave(logged(baseline, log, "a"), logged(candidate, log, "b"), pairs, per_turn=2)
        gc.enable()
        out[name] = log
        print(f"recorded {name}: {pairs} pairs", file=sys.stderr, flush=True)
    return out


def turns(log: list[Any]) -> tuple[list[float], list[float]]:
    """Per pair, the baseline's and the candidate's turn times (the fastest round of each turn)."""
    base, cand = [], []
    for first, second in zip(log[0::2], log[1::2], strict=True):
        got = {first[0]: min(first[2]), second[0]: min(second[2])}
        base.append(got["a"])
        cand.append(got["b"])
    return base, cand


def load(path: str) -> dict[str, tuple[list[float], list[float]]]:
    """Turns by optimization from a recording (--json) or from a densebench run's results JSON, whose
    extra_info.speedup keeps every pair's turn times."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    if "benchmarks" not in data:
        return {name: turns(log) for name, log in data.items()}
    out = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if (sp := info.get("speedup")) and sp.get("baseline_turns_ms"):
            out[f"{info['optimization']} bs{info['batch_size']}"] = (sp["baseline_turns_ms"], sp["candidate_turns_ms"])
    return out


def served(times: list[float]) -> Callable[[int], list[float]]:
    """A side for ``paired.interleave`` that hands out recorded turn times in order, ``k`` at a time."""
    turn = iter(times)
    return lambda k: [next(turn) for _ in range(k)]


def replay(base: list[float], cand: list[float], stat: Callable[..., paired.PairedRatio], limit: int = LIMIT) -> str:
    """Run ``paired.interleave``'s own sequential stopping (up to ``limit`` pairs) on recorded turns from
    every STEP-th pair."""
    whole = stat(base, cand)
    reached, used, held, starts = 0, [], 0, range(0, len(base) - limit + 1, STEP)
    if not starts:
        return f"{whole.ratio:7.3f} +-{100 * whole.half_width:4.1f}%  (fewer than {limit} pairs: no window to replay)"
    for s in starts:
        a, b = paired.interleave(served(base[s:]), served(cand[s:]), FIRST, max_pairs=limit,
                                 enough=lambda a, b: stat(a, b).half_width <= TARGET)
        r = stat(a, b)
        reached += r.half_width <= TARGET
        used.append(len(a))
        held += r.ci_low <= whole.ratio <= r.ci_high
    return (f"{whole.ratio:7.3f} +-{100 * whole.half_width:4.1f}%  {reached:2d}/{len(starts):<2d}"
            f"  {np.mean(used):5.1f}  {held:2d}/{len(starts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("optimizations", nargs="*")
    parser.add_argument("--pairs", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--load", action="store_true", help="an on/off background load while recording")
    parser.add_argument("--limit", type=int, default=LIMIT, help="most pairs the replayed stopping may run")
    parser.add_argument("--json", help="write every turn's rounds here")
    parser.add_argument("--from", dest="source",
                        help="analyse turns recorded before (--json; .gz too) or a densebench run's results JSON")
    args = parser.parse_args()
    if args.source:
        data = load(args.source)
    else:
        background = subprocess.Popen([sys.executable, "-c", LOAD, "7"]) if args.load else None
        try:
            data = record(args.optimizations, args.pairs, args.batch_size, args.image_size)
        finally:
            if background:
                background.kill()
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(data, f)
        data = {name: turns(log) for name, log in data.items()}
    print(f"replaying {FIRST} pairs + blocks of {paired.BLOCK} up to {args.limit} to +-{TARGET:.0%}, "
          f"from every {STEP}th pair")
    print("optimization       pairs statistic   speedup  CI hw  reached pairs  held")
    for name, (base, cand) in data.items():
        ratios = np.asarray(base) / np.asarray(cand)
        print(f"{name:18s} {len(base):5d} lag-1 autocorrelation of the per-pair ratios: "
              f"{np.corrcoef(ratios[:-1], ratios[1:])[0, 1]:.2f}")
        for label, stat in STATISTICS.items():
            print(f"{name:18s} {len(base):5d} {label:10s} {replay(base, cand, stat, args.limit)}", flush=True)


if __name__ == "__main__":
    main()
