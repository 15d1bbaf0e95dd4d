#!/usr/bin/env python3
"""Measure what the telemetry sampler costs the timed region.

Interleaves blocks of timed forward passes with the sampler on and off (alternating
order, so drift hits both alike) and reports the median round time of each and the
difference in percent, next to the sampler's own busy time.

    python scripts/telemetry_overhead.py --device cpu --image-size 224 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    import torch

    from densebench import telemetry, timing
    from densebench.model import build_model
    from densebench.optimizations import BuildContext, build_runner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--optimization", default="baseline")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per block")
    parser.add_argument("--interval-ms", type=float, default=20.0)
    args = parser.parse_args()

    device = torch.device(args.device)
    model, _ = build_model("random")
    batch = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    runner = build_runner(args.optimization, model, batch, BuildContext(device=device))
    x = runner.prepare(batch)
    step = timing.make_step(runner, x, device)
    rounds: dict[bool, list[float]] = {True: [], False: []}
    busy: list[float] = []
    with runner.activated():
        for _ in range(3):
            step()
        for block in range(args.blocks):
            for sampler_on in ((True, False) if block % 2 == 0 else (False, True)):
                monitor = telemetry.Monitor(device, interval_s=args.interval_ms / 1000) if sampler_on else None
                if monitor:
                    monitor.__enter__()
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    step()
                    rounds[sampler_on].append(time.perf_counter() - t)
                if monitor:
                    monitor.__exit__(None, None, None)
                    busy.append(monitor.busy_s / monitor.elapsed_s)
    on, off = statistics.median(rounds[True]), statistics.median(rounds[False])
    result = {"device": str(device), "optimization": args.optimization, "image_size": args.image_size,
              "batch_size": args.batch_size, "interval_ms": args.interval_ms, "rounds_each": len(rounds[True]),
              "median_ms_sampler_on": on * 1e3, "median_ms_sampler_off": off * 1e3,
              "overhead_pct": 100 * (on - off) / off, "sampler_busy_pct": 100 * statistics.fmean(busy)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
