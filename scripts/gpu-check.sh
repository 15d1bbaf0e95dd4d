#!/usr/bin/env bash
# GPU check: the densebench suite on CUDA from a checkout, with the machine's own python3
# (no install, no network). Writes the pytest-benchmark JSON, a report and the log under $OUT.
#
#   OUT=/tmp/gpu-check scripts/gpu-check.sh
#
# Steps (each under its own time limit, so one slow step cannot eat the others' time):
#   1. the suite over the CUDA optimizations at batch sizes 1, 32, 256, image size 224, telemetry
#      and TensorBoard on; its journal is recovered if the step runs out of time;
#   2. one profiled configuration (torch.profiler trace + top kernels);
#   3. the CUDA tests (tests/test_cuda.py): events vs host timing, no host copies, NVML, memory;
#   4. the telemetry sampler's overhead on GPU round times;
#   5. one pinned xdist worker (-n 1) against the same configuration in a single process;
#   6. the report (densebench report) of step 1.
# Environment knobs (for trying the script on a CPU): PYTHON, DEVICE, IMAGE_SIZE, BATCH_SIZES,
# OPTIMIZATIONS, SUITE_TIMEOUT, MAX_TIME.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-results/gpu-check}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
IMAGE_SIZE=${IMAGE_SIZE:-224}
BATCH_SIZES=${BATCH_SIZES:-1,32,256}
# Every optimization that can run on CUDA here, plus the recommended stacks; the ones that cannot
# (CPU-only, or missing packages) are listed so their skip reasons are recorded; the compiled ones
# come last (each batch size compiles). compile_max is left out: max-autotune takes minutes per
# batch size, more than this check's device time allows.
OPTIMIZATIONS=${OPTIMIZATIONS:-baseline,tf32,amp,channels_last,channels_last+amp,fp16,channels_last+fp16,bf16,cudagraphs,channels_last+fp16+cudagraphs,jit,onnxruntime,tensorrt,tensorrt+fp16,tensorrt_int8,int8,openvino,openvino_int8,channels_last+amp+compile,compile}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-300}
MAX_TIME=${MAX_TIME:-0.3}
WORK=$(mktemp -d)
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
export PYTHONUNBUFFERED=1 DENSEBENCH_OFFLINE=1 DENSEBENCH_WEIGHTS=random DENSEBENCH_DATASET=synthetic
exec > >(tee "$LOG") 2>&1

step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
common=(-p no:cacheprovider --densebench-device "$DEVICE" --densebench-image-size "$IMAGE_SIZE"
        --benchmark-max-time "$MAX_TIME")

step "machine"
nvidia-smi 2>/dev/null | head -15 || echo "no nvidia-smi"
"$PY" -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
"$PY" -m densebench.cli env > "$WORK/env.txt" 2>&1; cat "$WORK/env.txt"

step "1. suite: $OPTIMIZATIONS at batch sizes $BATCH_SIZES"
timeout --signal=KILL "$SUITE_TIMEOUT" "$PY" -m pytest benchmarks "${common[@]}" \
    --densebench-optimizations "$OPTIMIZATIONS" --densebench-batch-sizes "$BATCH_SIZES" \
    --densebench-output "$WORK/run" --densebench-journal "$WORK/journal.jsonl" --densebench-tensorboard \
    --densebench-latency-budget-ms 10 --benchmark-json "$OUT/results.json" -rs -q
status=$?
echo "suite exit status: $status"
if [ ! -s "$OUT/results.json" ] && [ -s "$WORK/journal.jsonl" ]; then
    echo "the suite did not finish: recovering its journal"
    "$PY" -m densebench.cli recover "$WORK/journal.jsonl" -o "$OUT/results.json"
fi

step "2. one profiled configuration"
timeout --signal=KILL 60 "$PY" -m pytest benchmarks "${common[@]}" --densebench-optimizations channels_last+fp16 \
    --densebench-batch-sizes 32 --densebench-profile --densebench-output "$WORK/profile" \
    --benchmark-json "$WORK/profile.json" -q
"$PY" - "$WORK/profile.json" <<'EOF' || true
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    p = b["extra_info"].get("profile") or {}
    print("trace:", p.get("chrome_trace"))
    for k in (p.get("top_kernels") or [])[:8]:
        print(f"  {k['self_device_ms_per_round']:8.3f} ms/round  {k['calls_per_round']:6.1f} calls  {k['name'][:90]}")
EOF

step "3. CUDA tests"
timeout --signal=KILL 90 "$PY" -m pytest tests/test_cuda.py -p no:cacheprovider -q -rA 2>&1 | tail -15

step "4. telemetry sampler overhead on GPU"
timeout --signal=KILL 60 "$PY" scripts/telemetry_overhead.py --device "$DEVICE" --optimization channels_last+fp16 \
    --image-size "$IMAGE_SIZE" --batch-size 32 --blocks 10 --rounds 30 --interval-ms 20 | tee "$WORK/overhead.json"

step "5. one pinned xdist worker vs a single process (same configuration)"
pinned=(benchmarks "${common[@]}" --densebench-optimizations baseline,channels_last+fp16 --densebench-batch-sizes 32)
timeout --signal=KILL 60 "$PY" -m pytest "${pinned[@]}" -n 1 --benchmark-json "$WORK/xdist.json" -q 2>&1 | tail -4
timeout --signal=KILL 60 "$PY" -m pytest "${pinned[@]}" --benchmark-json "$WORK/single.json" -q 2>&1 | tail -2
"$PY" - "$WORK/xdist.json" "$WORK/single.json" <<'EOF' || true
import json, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
by = [{b["param"]: b for b in r["benchmarks"]} for r in runs]
for param in sorted(by[0]):
    a, b = by[0][param], by[1].get(param)
    worker = a["extra_info"].get("worker", {})
    line = f"{param}: xdist {a['extra_info']['throughput_samples_per_s']:.1f} img/s on {worker.get('device')}"
    if b:
        line += f", single {b['extra_info']['throughput_samples_per_s']:.1f} img/s, ratio {a['stats']['median'] / b['stats']['median']:.3f}"
    print(line)
EOF

step "6. report"
"$PY" -m densebench.cli report "$OUT/results.json" -o "$WORK/report" --latency-budget-ms 10 | tail -3
tar -czf "$OUT/report.tar.gz" -C "$WORK" report
cp "$WORK/report/report.md" "$OUT/report.md" 2>/dev/null
tar -czf "$OUT/extras.tar.gz" -C "$WORK" env.txt overhead.json xdist.json single.json profile.json journal.jsonl \
    run/tensorboard profile/profiles 2>/dev/null
ls -la "$OUT"

step "summary"
"$PY" -m densebench.cli show "$OUT/results.json" || true
echo "gpu-check: done"
