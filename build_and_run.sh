#!/usr/bin/env bash
# densebench main job: install what is missing, run the DenseNet-121 benchmark suite, write JSON.
# Run with --help for the flags.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
output_dir="$repo/results"
gpu_enabled=auto
optimizations=""
batch_sizes=""
image_size=""
venv="$repo/.venv"
workers=""
docker_mode=auto
extras_cpu="onnxruntime,openvino,int8,report,xdist,serving"
# GPU backends: onnxruntime-gpu (CUDA provider), torch-tensorrt, nvidia-modelopt (see pyproject.toml)
extras_gpu="gpu,report,xdist,serving"
pytest_extra=()

usage() {
    cat <<EOF
usage: ./build_and_run.sh [options] [-- extra pytest arguments]

Runs the densebench suite and writes the pytest-benchmark JSON (results.json) into the
output directory, with traces, caches and the results journal beside it.

  --output-dir DIR         where results go (default: ./results)
  --gpu-enabled MODE       true: require a CUDA GPU; false: CPU only; auto (default): GPU if one is visible
  --optimizations LIST     comma list of optimizations or stacks, 'all' or 'best'
                           (default: best — the candidates worth trying on this device)
  --batch-sizes LIST       comma list of batch sizes (default: 1,8 on CPU, 1,32,256 on GPU)
  --image-size N           input size in pixels (default: 224)
  --workers N|auto         pytest-xdist workers, each pinned to its own GPU (auto: one per GPU) or to
                           its own slice of CPU cores; results still land in one JSON (default: 1)
  --docker MODE            auto (default): run in the Docker image when a Docker engine, an NVIDIA GPU and
                           the NVIDIA Container Toolkit are present (and --gpu-enabled is not false), else
                           in a local venv; true: require Docker; false: always the local virtual environment
  --venv DIR               virtual environment to create or reuse (default: ./.venv)
  -h, --help               this help

Everything after -- goes to pytest (e.g. -- --benchmark-max-time=2). pytest-benchmark's autosave
storage is OUTPUT/.benchmarks unless you pass --benchmark-storage.
With a GPU the venv gets densebench[gpu] (onnxruntime-gpu, torch-tensorrt, nvidia-modelopt); before
benchmarking, the NVIDIA driver is checked against the CUDA build of torch (python -m densebench.doctor).
Environment: DENSEBENCH_* variables set any other option (see README).
EOF
}

die() { echo "build_and_run.sh: $*" >&2; echo "run ./build_and_run.sh --help for the flags" >&2; exit 2; }

need_value() { [ $# -ge 2 ] && [ -n "$2" ] && [ "${2#--}" = "$2" ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --output-dir) need_value "$@"; output_dir=$2; shift 2 ;;
        --output-dir=*) output_dir=${1#*=}; shift ;;
        --gpu-enabled) need_value "$@"; gpu_enabled=$2; shift 2 ;;
        --gpu-enabled=*) gpu_enabled=${1#*=}; shift ;;
        --optimizations) need_value "$@"; optimizations=$2; shift 2 ;;
        --optimizations=*) optimizations=${1#*=}; shift ;;
        --batch-sizes) need_value "$@"; batch_sizes=$2; shift 2 ;;
        --batch-sizes=*) batch_sizes=${1#*=}; shift ;;
        --image-size) need_value "$@"; image_size=$2; shift 2 ;;
        --image-size=*) image_size=${1#*=}; shift ;;
        --workers) need_value "$@"; workers=$2; shift 2 ;;
        --workers=*) workers=${1#*=}; shift ;;
        --docker) need_value "$@"; docker_mode=$2; shift 2 ;;
        --docker=*) docker_mode=${1#*=}; shift ;;
        --venv) need_value "$@"; venv=$2; shift 2 ;;
        --venv=*) venv=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; pytest_extra=("$@"); break ;;
        *) die "unknown argument '$1'" ;;
    esac
done

case "$gpu_enabled" in
    true|false|auto) ;;
    *) die "--gpu-enabled must be true, false or auto (got '$gpu_enabled')" ;;
esac
case "$docker_mode" in
    true|false|auto) ;;
    *) die "--docker must be true, false or auto (got '$docker_mode')" ;;
esac
if [ -n "$batch_sizes" ] && ! [[ "$batch_sizes" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    die "--batch-sizes must be a comma list of positive integers (got '$batch_sizes')"
fi
if [ -n "$workers" ] && ! [[ "$workers" =~ ^([0-9]+|auto)$ ]]; then
    die "--workers must be a positive integer or auto (got '$workers')"
fi
if [ -n "$image_size" ] && ! [[ "$image_size" =~ ^[0-9]+$ ]]; then
    die "--image-size must be a positive integer (got '$image_size')"
fi
mkdir -p "$output_dir" 2>/dev/null || die "cannot create the output directory '$output_dir'"
[ -w "$output_dir" ] || die "the output directory '$output_dir' is not writable"
output_dir=$(cd "$output_dir" && pwd)

have_engine() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
# docker run --gpus needs the NVIDIA Container Toolkit: its CLI/hook on PATH or an 'nvidia' runtime in the daemon.
have_toolkit() {
    command -v nvidia-ctk >/dev/null 2>&1 || command -v nvidia-container-cli >/dev/null 2>&1 \
        || command -v nvidia-container-runtime-hook >/dev/null 2>&1 \
        || docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia
}
no_toolkit="the NVIDIA Container Toolkit is not installed (no nvidia-ctk, nvidia-container-cli or 'nvidia' Docker runtime), so 'docker run --gpus' would fail; install nvidia-container-toolkit and run 'sudo nvidia-ctk runtime configure --runtime=docker'"
nvidia=false
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then nvidia=true; fi
use_docker=false
case "$docker_mode" in
    true) have_engine || die "--docker true, but no Docker engine answers here ('docker info' fails)"
          if [ "$gpu_enabled" != false ] && [ "$nvidia" = true ] && ! have_toolkit; then
              die "--docker true with the GPU, but $no_toolkit (or pass --gpu-enabled false for the CPU image)"
          fi
          use_docker=true ;;
    auto) if [ "$gpu_enabled" != false ] && [ "$nvidia" = true ] && have_engine; then
              if have_toolkit; then
                  use_docker=true
              else
                  echo "build_and_run.sh: Docker is here, but $no_toolkit. Using a local venv instead." >&2
              fi
          fi ;;
esac

if [ "$use_docker" = true ]; then
    if [ "$gpu_enabled" != false ] && [ "$nvidia" = true ]; then
        variant=gpu device=cuda gpu_flags=(--gpus all)
    else
        [ "$gpu_enabled" = true ] && die "--gpu-enabled true, but no NVIDIA GPU is visible (nvidia-smi -L fails)"
        variant=cpu device=cpu gpu_flags=()
    fi
    where="Docker image densebench:$variant"
else
    extras=$extras_cpu
    if [ "$gpu_enabled" != false ] && [ "$nvidia" = true ]; then extras=$extras_gpu; fi
    "$repo/scripts/bootstrap.sh" "$venv" "$extras"
    python="$venv/bin/python"
    device=cpu
    if [ "$gpu_enabled" != false ]; then
        # Names the driver, torch's CUDA build and what to install when they do not fit (exit 3).
        if why=$("$python" -m densebench.doctor --require-gpu 2>&1); then
            device=cuda
        elif [ "$gpu_enabled" = true ]; then
            die "--gpu-enabled true, but densebench cannot use an NVIDIA GPU here: $why"
        elif [ "$nvidia" = true ]; then
            echo "build_and_run.sh: an NVIDIA GPU is present but unusable, so the CPU is benchmarked: $why" >&2
        fi
    fi
    where="local venv $venv"
fi
if [ -z "$batch_sizes" ]; then
    if [ "$device" = cuda ]; then batch_sizes=1,32,256; else batch_sizes=1,8; fi
fi

args=(--densebench-device "$device" --densebench-batch-sizes "$batch_sizes"
      --densebench-optimizations "${optimizations:-best}")
[ -n "$image_size" ] && args+=(--densebench-image-size "$image_size")
[ -n "$workers" ] && args+=(-n "$workers")
storage_given=false
for a in "${pytest_extra[@]}"; do case "$a" in --benchmark-storage*) storage_given=true ;; esac; done

echo "build_and_run.sh: $where, device=$device batch_sizes=$batch_sizes optimizations=${optimizations:-best} output=$output_dir"
if [ "$use_docker" = true ]; then
    # The image's user has this UID, so the cache volume (one per UID, filled from the image's /cache on
    # first use) and /results are writable by the process.
    docker build -f "$repo/docker/Dockerfile" --build-arg "VARIANT=$variant" --build-arg "UID=$(id -u)" \
        -t "densebench:$variant-$(id -u)" "$repo"
    run=(docker run --rm "${gpu_flags[@]}" --shm-size 8g --user "$(id -u):$(id -g)"
         -v "$output_dir:/results" -v "densebench-cache-$(id -u):/cache" "densebench:$variant-$(id -u)")
    [ "$storage_given" = true ] || args+=(--benchmark-storage=file:///results/.benchmarks)
else
    cd "$repo"
    run=("$python" -m densebench.cli run --output "$output_dir")
    [ "$storage_given" = true ] || args+=("--benchmark-storage=file://$output_dir/.benchmarks")
fi
set +e
"${run[@]}" "${args[@]}" "${pytest_extra[@]}"
status=$?
set -e
echo "build_and_run.sh: JSON: $output_dir/results.json  report: $output_dir/report.html"
exit $status
