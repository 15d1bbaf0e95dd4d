"""Power study of the regression gate: false alarms and detections, sequential vs paired (not a test).

Starts three long-lived ``densebench ab`` workers (each builds DenseNet-121 once): A at 224 px, a
second process with the same code and settings (A'), and C at 235 px (+10% FLOPs: 235^2/224^2 =
1.10). A background process switches between busy (one core spinning) and idle every 0.3-2 s
(seeded). Then, N times:

* same code, A vs A': a *false alarm* when the gate's decision is not "no change shown";
* +10% workload, A vs C: a *detection* when it says "regression";

each with both methods, on ROUNDS rounds per side:

* sequential: all of A's rounds, then all of B's; ratio of medians, bootstrap CI per side
  (what comparing two separately measured runs does);
* paired: ABBA-interleaved single rounds; median of paired ratios, bootstrap CI over pairs.

Both decide the same way: regression only when the whole 95% CI lies above 1 + THRESHOLD.

    PYTHONPATH=. python scripts/gate_power.py --n 20 --rounds 30 --batch-size 1
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from densebench import ab, paired

LOAD = """
import os, random, sys, time
rng = random.Random(int(sys.argv[1]))
parent = os.getppid()
while os.getppid() == parent:  # ends with the study, however it ends
    end = time.monotonic() + rng.uniform(0.3, 2.0)
    while time.monotonic() < end:
        pass
    time.sleep(rng.uniform(0.3, 2.0))
"""

COMMON = {"device": "cpu", "weights": "random", "dataset": "synthetic", "eval_samples": "2",
          "calibration_samples": "0", "warmup": "3"}


def decide(result: paired.PairedRatio, threshold: float) -> str:
    return ab.verdict(result, threshold)


def compare(first: ab.Worker, second: ab.Worker, rounds: int, method: str) -> paired.PairedRatio:
    if method == "paired":
        a, b = paired.interleave(lambda: first.rounds(1)[0], lambda: second.rounds(1)[0], rounds)
        return paired.paired_ratio(b, a)
    a = first.rounds(rounds)
    b = second.rounds(rounds)
    return paired.sequential_ratio(b, a)


def study(n: int, rounds: int, batch_size: int, threshold: float, out: Path) -> dict[tuple[str, str], list]:
    results: dict[tuple[str, str], list] = {(k, m): [] for k in ("same", "+10%") for m in ("sequential", "paired")}
    with ExitStack() as stack:
        specs = [ab.SideSpec(name, settings={**COMMON, "image_size": size}, batch_size=batch_size)
                 for name, size in (("a", "224"), ("a2", "224"), ("c", "235"))]
        logs = [stack.enter_context((out / f"worker-{s.name}.log").open("w")) for s in specs]
        workers = [ab.Worker(s, out, log) for s, log in zip(specs, logs, strict=True)]
        for w in workers:
            stack.callback(w.close)
        for w in workers:
            w.setup()
        load = subprocess.Popen([sys.executable, "-c", LOAD, "14"])
        stack.callback(load.kill)
        a, a2, c = workers
        rng = random.Random(0)
        for i in range(n):
            jobs = [(k, m) for k in ("same", "+10%") for m in ("sequential", "paired")]
            rng.shuffle(jobs)  # no method always runs first after the load changes
            for kind, method in jobs:
                result = compare(a, a2 if kind == "same" else c, rounds, method)
                results[(kind, method)].append(result)
                print(f"{i + 1:2d} {kind:5s} {method:10s} ratio {result.ratio:.3f} "
                      f"CI [{result.ci_low:.3f}, {result.ci_high:.3f}] -> {decide(result, threshold)}", flush=True)
    return results


def table(results: dict[tuple[str, str], list], threshold: float) -> list[str]:
    lines = ["| method | same code: false alarms | same code: ratio range | +10% workload: detected | "
             "+10%: ratio range | median CI half-width |", "|---|---|---|---|---|---|"]
    for method in ("sequential", "paired"):
        same, more = results[("same", method)], results[("+10%", method)]
        alarms = sum(decide(r, threshold) != "no change shown" for r in same)
        found = sum(decide(r, threshold) == "regression" for r in more)
        widths = sorted(r.half_width for r in same + more)
        lines.append(f"| {method} | {alarms} of {len(same)} | {min(r.ratio for r in same):.3f}-"
                     f"{max(r.ratio for r in same):.3f} | {found} of {len(more)} | "
                     f"{min(r.ratio for r in more):.3f}-{max(r.ratio for r in more):.3f} | "
                     f"{widths[len(widths) // 2]:.1%} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="comparisons of each kind (default 20)")
    parser.add_argument("--rounds", type=int, default=30, help="rounds per side per comparison (default 30)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.05)
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        results = study(args.n, args.rounds, args.batch_size, args.threshold, Path(tmp))
    print(f"\ngate power: {args.n} comparisons per kind, {args.rounds} rounds per side, batch {args.batch_size}, "
          f"224 vs 235 px, {args.threshold:.0%} threshold, on/off background load; {time.monotonic() - start:.0f} s")
    print("\n".join(table(results, args.threshold)))


if __name__ == "__main__":
    main()
