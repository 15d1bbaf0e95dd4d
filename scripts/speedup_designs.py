"""Which round design gives the in-run paired speedup the narrowest CI per minute (a study, not a test).

Builds the baseline and each named optimization in this process (as an isolated child of
``densebench run`` does), then measures the candidate's speedup over the baseline with each design
in blocks of 10 pairs, the designs taking turns block by block (order reversed every other block),
so every design sees the same window of machine load:

* ``turns``: the design before this study: ABBA-ordered pairs of turns, a turn being 2 single
  forward passes (the fastest counts);
* ``bracket2`` / ``bracket1``: :func:`densebench.paired.bracket`: triplets A-B-A / B-A-B, the middle
  turn against the mean of the two around it; the faster side's round is ``k`` forward passes timed
  together, ``k`` = round(baseline time / candidate time), so both sides' rounds last about as long;
  a turn is 2 rounds (the fastest counts) or 1.

Prints, per optimization and design, the median of the per-pair speedups and its 95% bootstrap CI
(``paired.paired_ratio``'s: since 2026-12-06 13:30 over bootstrap blocks of autocorrelated pairs too;
docs/speedup-designs-2vcpu.txt was recorded before that, with the plain bootstrap),
the CI half-width, the standard deviation of the log per-pair speedups, the seconds the design used,
and half-width x sqrt(minutes) (lower = a narrower CI for the same time; the CI narrows as
1/sqrt(pairs)).

    PYTHONPATH=. python scripts/speedup_designs.py int8 openvino_int8 jit --blocks 6
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import time
from typing import Any

import numpy as np

from densebench import paired, timing
from densebench.optimizations import build_runner
from densebench.resources import Resources
from densebench.settings import Settings

DESIGNS = ("turns", "bracket2", "bracket1")


def side(runner: Any, batch: Any, device: Any) -> tuple[Any, Any]:
    with runner.activated():
        step = timing.make_step(runner, runner.prepare(batch), device)
        for _ in range(3):
            step()
    return runner, step


def measure(base: tuple[Any, Any], cand: tuple[Any, Any], blocks: int) -> tuple[int, dict[str, Any]]:
    single = [paired._timed_rounds(*base), paired._timed_rounds(*cand)]
    t_base, t_cand = (min(run(3)) for run in single)
    k = max(1, round(t_base / t_cand))
    even = [single[0], paired._timed_rounds(*cand, iterations=k)]
    got: dict[str, Any] = {d: {"a": [], "b": [], "s": 0.0} for d in DESIGNS}
    gc.collect()
    gc.disable()
    for block in range(blocks):
        for design in DESIGNS if block % 2 == 0 else DESIGNS[::-1]:
            start = time.perf_counter()
            if design == "turns":
                a, b = paired.interleave(*single, 10, per_turn=2)
            else:
                a, b = paired.bracket(*even, 10, per_turn=2 if design == "bracket2" else 1)
            got[design]["a"] += a
            got[design]["b"] += b
            got[design]["s"] += time.perf_counter() - start
    gc.enable()
    return k, got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("optimizations", nargs="+")
    parser.add_argument("--blocks", type=int, default=6, help="blocks of 10 pairs per design (default 6)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json", help="write every pair's times here")
    args = parser.parse_args()
    settings = Settings.from_mapping({"device": "cpu", "image_size": str(args.image_size), "offline": "true"})
    res = Resources(settings)
    res.prepare()
    batch = res.data.batch(args.batch_size)
    base = side(build_runner("baseline", res.model, batch, res.context()), batch, res.device)
    print("optimization    k  design    speedup [95% CI]         half-width  sd(log)  seconds  hw*sqrt(min)")
    out = {}
    for name in args.optimizations:
        k, got = measure(base, side(build_runner(name, res.model, batch, res.context()), batch, res.device),
                         args.blocks)
        for design, g in got.items():
            r = paired.paired_ratio(g["a"], g["b"])
            sd = float(np.std(np.log(np.asarray(g["a"]) / np.asarray(g["b"]))))
            print(f"{name:14s} {k:2d}  {design:9s} {r.ratio:6.3f} [{r.ci_low:6.3f}-{r.ci_high:6.3f}]"
                  f"  {100 * r.half_width:8.1f}%  {100 * sd:6.1f}%  {g['s']:7.0f}"
                  f"  {100 * r.half_width * math.sqrt(g['s'] / 60):8.2f}", flush=True)
        out[name] = {"k": k, **got}
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(out, f)


if __name__ == "__main__":
    main()
