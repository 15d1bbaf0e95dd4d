"""Power study of the regression gate: false alarms and detections, sequential vs paired (not a test).

Starts three long-lived ``densebench ab`` workers (each builds DenseNet-121 once): A at 224 px, a
second process with the same code and settings (A'), and C at a larger size (``--larger``, default
240 px). Why not 235 px: 235^2/224^2 = 1.10, but DenseNet-121's strided layers floor the sizes, so
235 px is +7.0% FLOPs (torch.utils.flop_counter: 6.064 vs 5.668 GFLOP) and measured +4.5% time at
batch 1 here, not a 10% change; 240 px is +14.3% FLOPs and measured +10-14% time. A background
process switches between busy (one core spinning) and idle every 0.3-2 s (seeded). Then, N times:

* same code, A vs A': a *false alarm* when the gate's decision is not "no change shown";
* larger workload, A vs C: a *detection* when it says "regression";

each with both methods, on PAIRS x PER_TURN rounds per side:

* sequential: all of A's rounds, then all of B's; ratio of medians, bootstrap CI per side
  (what comparing two separately measured runs does);
* paired: ABBA-interleaved turns of PER_TURN rounds, each turn's fastest; median of paired ratios,
  bootstrap CI over pairs (over blocks of consecutive pairs where they are autocorrelated:
  ``paired.block_length``); after PAIRS pairs, steps of 10 more while the CI still reaches over
  1 +- THRESHOLD, up to MAX_PAIRS (``densebench ab``'s method and defaults).

Both decide the same way: regression only when the whole 95% CI lies above 1 + THRESHOLD.
``--threads`` sets torch's intra-op threads in each worker as ``densebench ab``'s ``threads=`` does (default
auto: cores - 1, leaving one core to the load; ``all``: one per core).

    PYTHONPATH=. python scripts/gate_power.py --n 20 --pairs 30 --per-turn 2 --batch-size 1
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


def compare(first: ab.Worker, second: ab.Worker, pairs: int, per_turn: int, method: str, max_pairs: int,
            threshold: float) -> paired.PairedRatio:
    if method == "paired":
        a, b = paired.interleave(first.rounds, second.rounds, pairs, per_turn, max_pairs=max_pairs,
                                 enough=paired.until_decided(threshold))
        return paired.paired_ratio(b, a)
    a = first.rounds(pairs * per_turn)
    b = second.rounds(pairs * per_turn)
    return paired.sequential_ratio(b, a)


def study(n: int, pairs: int, per_turn: int, batch_size: int, larger: str, threshold: float,
          out: Path, max_pairs: int, threads: str) -> dict[tuple[str, str], list]:
    results: dict[tuple[str, str], list] = {(k, m): [] for k in ("same", "larger") for m in ("sequential", "paired")}
    with ExitStack() as stack:
        specs = [ab.SideSpec(name, settings={**COMMON, "image_size": size}, batch_size=batch_size, threads=threads)
                 for name, size in (("a", "224"), ("a2", "224"), ("c", larger))]
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
            jobs = [(k, m) for k in ("same", "larger") for m in ("sequential", "paired")]
            rng.shuffle(jobs)  # no method always runs first after the load changes
            for kind, method in jobs:
                result = compare(a, a2 if kind == "same" else c, pairs, per_turn, method, max_pairs, threshold)
                results[(kind, method)].append(result)
                print(f"{i + 1:2d} {kind:5s} {method:10s} {result.pairs:3d} pairs ratio {result.ratio:.3f} "
                      f"CI [{result.ci_low:.3f}, {result.ci_high:.3f}] -> {decide(result, threshold)}", flush=True)
    return results


def table(results: dict[tuple[str, str], list], threshold: float) -> list[str]:
    lines = ["| method | same code: false alarms | same code: ratio range | larger workload: detected | "
             "larger: ratio range | median CI half-width | pairs (mean) |", "|---|---|---|---|---|---|---|"]
    for method in ("sequential", "paired"):
        same, more = results[("same", method)], results[("larger", method)]
        alarms = sum(decide(r, threshold) != "no change shown" for r in same)
        found = sum(decide(r, threshold) == "regression" for r in more)
        widths = sorted(r.half_width for r in same + more)
        lines.append(f"| {method} | {alarms} of {len(same)} | {min(r.ratio for r in same):.3f}-"
                     f"{max(r.ratio for r in same):.3f} | {found} of {len(more)} | "
                     f"{min(r.ratio for r in more):.3f}-{max(r.ratio for r in more):.3f} | "
                     f"{widths[len(widths) // 2]:.1%} | {sum(r.pairs for r in same + more) / len(same + more):.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="comparisons of each kind (default 20)")
    parser.add_argument("--pairs", type=int, default=30, help="pairs of turns per comparison (default 30)")
    parser.add_argument("--per-turn", type=int, default=2, help="rounds per side per turn (default 2)")
    parser.add_argument("--max-pairs", type=int, default=90,
                        help="paired: more pairs until decided, up to this many (densebench ab's default 90)")
    parser.add_argument("--threads", default="auto",
                        help="torch intra-op threads per worker, as densebench ab's threads=: auto (default: "
                             "cores - 1), all (torch's default, one per core) or a count")
    parser.add_argument("--larger", default="240", help="image size of the larger workload (default 240)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.05)
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        results = study(args.n, args.pairs, args.per_turn, args.batch_size, args.larger, args.threshold, Path(tmp),
                        args.max_pairs, args.threads)
    threads = {"auto": "threads=auto (cores - 1) per worker", "all": "threads=all (torch's default)"}.get(
        args.threads, f"{args.threads} thread(s) per worker")
    print(f"\ngate power: {args.n} comparisons per kind; sequential {args.pairs * args.per_turn} rounds per side, "
          f"paired {args.pairs}-{args.max_pairs} pairs x {args.per_turn} rounds (more until decided); {threads}; "
          f"batch {args.batch_size}, 224 vs {args.larger} px, "
          f"{args.threshold:.0%} threshold, on/off background load; {time.monotonic() - start:.0f} s")
    print("\n".join(table(results, args.threshold)))


if __name__ == "__main__":
    main()
