#!/usr/bin/env bash
# GPU check: densebench on CUDA from a checkout, with the machine's own python3 (no install, no
# network), in under 5 minutes. Everything it writes goes under $OUT.
#
#   OUT=/tmp/gpu-check scripts/gpu-check.sh
#
# Made for the lent device machine as it is: torch 2.11 (not the 2.14 pyproject asks for: close enough
# to run; the version is recorded in $OUT/versions.json and in every result), no torch-tensorrt, no
# openvino, the CPU build of onnxruntime, no network, 15 minutes of device time in all. So the
# TensorRT and ONNX Runtime CUDA paths are listed to record their skip reasons, not measured.
#
# Steps (each under its own time limit, so one slow step cannot eat the others' time):
#   1. versions and the doctor (densebench env): driver vs torch's CUDA build, NVML, MIG, backends;
#   2. the suite, each optimization in its own process (--densebench-isolate), at batch sizes
#      1, 32, 256, image size 224; its journal is recovered if the step runs out of time;
#   3. NVML recorded around 2 s of GPU work (scripts/nvml_record.py): a real recording for the replay
#      test (copy it to tests/data/nvml/), then the replay test and the CUDA tests;
#   4. one pinned xdist worker (-n 1): its CPU affinity should be the GPU's NUMA node;
#   5. the report of step 2.
# Environment knobs (for trying the script on a CPU): PYTHON, DEVICE, IMAGE_SIZE, BATCH_SIZES,
# OPTIMIZATIONS, SUITE_TIMEOUT, MAX_TIME.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-results/gpu-check}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
IMAGE_SIZE=${IMAGE_SIZE:-224}
BATCH_SIZES=${BATCH_SIZES:-1,32,256}
# What can run there, strict FP32 first; onnxruntime and tensorrt are listed so their skip reasons
# (CPU-only onnxruntime build, no torch-tensorrt) are recorded; the compiled stack last. Each one
# costs a child process (~10 s of start-up), so the list is short enough for the 5-minute budget.
OPTIMIZATIONS=${OPTIMIZATIONS:-baseline,tf32,channels_last+amp,fp16,channels_last+fp16,channels_last+fp16+cudagraphs,onnxruntime,tensorrt,channels_last+amp+compile}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-170}
MAX_TIME=${MAX_TIME:-1.0}  # at least NVML's ~1 s power averaging period, so power belongs to the window
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK="$OUT/work"
mkdir -p "$WORK"
LOG="$OUT/gpu-check.log"
export PYTHONUNBUFFERED=1 DENSEBENCH_OFFLINE=1 DENSEBENCH_WEIGHTS=random DENSEBENCH_DATASET=synthetic
export TMPDIR="$WORK/tmp" XDG_CACHE_HOME="$WORK/cache" TORCHINDUCTOR_CACHE_DIR="$WORK/cache/inductor"
mkdir -p "$TMPDIR"
exec > >(tee "$LOG") 2>&1

step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
common=(-p no:cacheprovider --densebench-device "$DEVICE" --densebench-image-size "$IMAGE_SIZE"
        --benchmark-max-time "$MAX_TIME" --benchmark-storage "file://$WORK/benchmarks")

step "1. versions and doctor"
nvidia-smi 2>/dev/null | head -15 || echo "no nvidia-smi"
"$PY" - "$OUT/versions.json" <<'EOF'
import json, sys, importlib.metadata as md
import torch
info = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
for dist in ("torchvision", "nvidia-ml-py", "onnxruntime", "onnxruntime-gpu", "torch-tensorrt", "openvino",
             "pytest", "pytest-benchmark", "pytest-xdist"):
    try:
        info[dist] = md.version(dist)
    except md.PackageNotFoundError:
        info[dist] = None
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info))
EOF
timeout --signal=KILL 60 "$PY" -m densebench.cli env > "$OUT/env.txt" 2>&1; cat "$OUT/env.txt"

step "2. suite, isolated: $OPTIMIZATIONS at batch sizes $BATCH_SIZES"
timeout --signal=KILL "$SUITE_TIMEOUT" "$PY" -m pytest benchmarks "${common[@]}" \
    --densebench-optimizations "$OPTIMIZATIONS" --densebench-batch-sizes "$BATCH_SIZES" \
    --densebench-isolate true --densebench-timeout 120 \
    --densebench-output "$WORK/run" --densebench-journal "$WORK/journal.jsonl" \
    --densebench-latency-budget-ms 10 --benchmark-json "$OUT/results.json" -rs -q
status=$?
echo "suite exit status: $status"
if [ ! -s "$OUT/results.json" ] && [ -s "$WORK/journal.jsonl" ]; then
    echo "the suite did not finish: recovering its journal"
    "$PY" -m densebench.cli recover "$WORK/journal.jsonl" -o "$OUT/results.json"
fi

step "3. NVML recording, replay and CUDA tests"
timeout --signal=KILL 60 "$PY" scripts/nvml_record.py -o "$OUT/nvml-recording.json" --seconds 2
if [ -s "$OUT/nvml-recording.json" ]; then
    mkdir -p "$WORK/replay"
    cp "$OUT/nvml-recording.json" "$WORK/replay/"
fi
timeout --signal=KILL 90 "$PY" -m pytest tests/test_cuda.py tests/test_nvml_replay.py -p no:cacheprovider -q -rA \
    2>&1 | tail -25
if [ -s "$OUT/nvml-recording.json" ]; then  # the replay test again, over the real recording
    NVML_RECORDINGS="$WORK/replay" timeout --signal=KILL 60 "$PY" -m pytest tests/test_nvml_replay.py \
        -p no:cacheprovider -q -k "nvml-recording" 2>&1 | tail -5
fi

step "4. one pinned xdist worker (-n 1): CPU affinity from the GPU's NUMA node"
timeout --signal=KILL 60 "$PY" -m pytest benchmarks "${common[@]}" -n 1 --densebench-optimizations channels_last+fp16 \
    --densebench-batch-sizes 32 --densebench-output "$WORK/xdist" --benchmark-json "$WORK/xdist.json" -q 2>&1 | tail -4
"$PY" - "$WORK/xdist.json" <<'EOF' || true
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    w = b["extra_info"].get("worker") or {}
    print(f"{b['param']}: {b['extra_info']['throughput_samples_per_s']:.1f} img/s on {w.get('device')}, "
          f"CPUs {w.get('cpus')}")
EOF

step "5. report"
timeout --signal=KILL 60 "$PY" -m densebench.cli report "$OUT/results.json" -o "$OUT/report" \
    --latency-budget-ms 10 | tail -3
"$PY" -m densebench.cli show "$OUT/results.json" || true
rm -rf "$TMPDIR"
du -sh "$OUT" "$WORK" 2>/dev/null
echo "gpu-check: done"
