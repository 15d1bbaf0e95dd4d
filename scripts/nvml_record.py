#!/usr/bin/env python3
"""Record what NVML returns around a timed window on a real GPU, for tests/test_nvml_replay.py.

Runs DenseNet-121-sized work on the GPU (random weights, channels_last + fp16) for --seconds,
reading exactly what densebench.nvml.GpuWindow reads at the start and at the end (energy
counter, clock-event reasons with both the new and the pre-R535 call, temperature, memory,
this process's entry in the compute-process list) and NVML's sample buffers since the start.
The JSON it writes is a recording that the replay test runs through the telemetry code:

    python scripts/nvml_record.py -o tests/data/nvml/h200.json --seconds 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def point(nvml, handle, errors: dict[str, str]) -> dict:
    """One side of the window, in the recording's format; a call that fails goes to ``errors``."""
    out = {"t_us": int(time.time() * 1e6)}
    calls = {"energy_mj": ("nvmlDeviceGetTotalEnergyConsumption",
                           lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle)),
             "clocks_event_reasons": ("nvmlDeviceGetCurrentClocksEventReasons",
                                      lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)),
             "clocks_throttle_reasons": ("nvmlDeviceGetCurrentClocksThrottleReasons",
                                         lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)),
             "temp_c": ("nvmlDeviceGetTemperature",
                        lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
             "device_used": ("nvmlDeviceGetMemoryInfo", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used),
             "processes": ("nvmlDeviceGetComputeRunningProcesses", lambda: [
                 [p.pid, p.usedGpuMemory] for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)])}
    for key, (name, fn) in calls.items():
        try:
            out[key] = fn()
        except nvml.NVMLError as exc:
            errors[name] = exc.value
            out[key] = None
    return out


def main() -> int:
    import torch

    from densebench.model import build_model
    from densebench.nvml import SAMPLE_TYPES, Nvml

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    device = torch.device("cuda", 0)
    nvml, handle, reason = Nvml.handle(device)
    if handle is None:
        print(f"nvml_record: no NVML handle: {reason}", file=sys.stderr)
        return 2
    model = build_model("random", seed=0)[0].to(device).half().to(memory_format=torch.channels_last).eval()
    x = torch.rand(args.batch_size, 3, 224, 224, device=device).half().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        errors: dict[str, str] = {}
        start = point(nvml, handle, errors)
        calls, end_at = 0, time.perf_counter() + args.seconds
        while time.perf_counter() < end_at:
            model(x)
            calls += 1
        torch.cuda.synchronize()
        end = point(nvml, handle, errors)
    samples = {}
    for _, const, _ in SAMPLE_TYPES:
        try:
            value_type, raw = nvml.nvmlDeviceGetSamples(handle, getattr(nvml, const), start["t_us"])
        except nvml.NVMLError as exc:
            errors[f"nvmlDeviceGetSamples({const})"] = exc.value
            continue
        member = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")[value_type]
        samples[const] = [value_type, [[s.timeStamp, getattr(s.sampleValue, member)] for s in raw]]
    doc = {"about": f"Recorded by scripts/nvml_record.py on {torch.cuda.get_device_name(device)}, torch "
                    f"{torch.__version__}, {args.seconds} s of channels_last+fp16 DenseNet-121 at batch "
                    f"{args.batch_size}.",
           "device": torch.cuda.get_device_name(device), "driver": nvml.nvmlSystemGetDriverVersion(),
           "pid": os.getpid(), "images": calls * args.batch_size, "points": [start, end], "samples": samples,
           "errors": {k: v for k, v in errors.items() if not k.startswith("nvmlDeviceGetSamples")},
           "sample_errors": {k: v for k, v in errors.items() if k.startswith("nvmlDeviceGetSamples")}}
    Path(args.output).write_text(json.dumps(doc, indent=1, default=str))
    print(f"nvml_record: {args.output}: {calls} calls, {sum(len(v[1]) for v in samples.values())} samples, "
          f"errors {errors or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
