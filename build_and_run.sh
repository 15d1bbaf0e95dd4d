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
extras="onnxruntime,openvino,int8,report,xdist"
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
  --docker MODE            auto (default): run in the Docker image when a Docker engine and an NVIDIA GPU
                           are present (and --gpu-enabled is not false), else in a local venv;
                           true: require Docker; false: always the local virtual environment
  --venv DIR               virtual environment to create or reuse (default: ./.venv)
  -h, --help               this help

Everything after -- goes to pytest (e.g. -- --benchmark-max-time=2).
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
nvidia=false
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then nvidia=true; fi
use_docker=false
case "$docker_mode" in
    true) have_engine || die "--docker true, but no Docker engine answers here ('docker info' fails)"
          use_docker=true ;;
    auto) if [ "$gpu_enabled" != false ] && [ "$nvidia" = true ] && have_engine; then use_docker=true; fi ;;
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
    "$repo/scripts/bootstrap.sh" "$venv" "$extras"
    python="$venv/bin/python"
    has_gpu=$("$python" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
    case "$gpu_enabled" in
        true) [ "$has_gpu" = 1 ] || die "--gpu-enabled true, but torch sees no CUDA GPU here" ; device=cuda ;;
        false) device=cpu ;;
        auto) if [ "$has_gpu" = 1 ]; then device=cuda; else device=cpu; fi ;;
    esac
    where="local venv $venv"
fi
if [ -z "$batch_sizes" ]; then
    if [ "$device" = cuda ]; then batch_sizes=1,32,256; else batch_sizes=1,8; fi
fi

args=(--densebench-device "$device" --densebench-batch-sizes "$batch_sizes"
      --densebench-optimizations "${optimizations:-best}")
[ -n "$image_size" ] && args+=(--densebench-image-size "$image_size")
[ -n "$workers" ] && args+=(-n "$workers")

echo "build_and_run.sh: $where, device=$device batch_sizes=$batch_sizes optimizations=${optimizations:-best} output=$output_dir"
if [ "$use_docker" = true ]; then
    docker build -f "$repo/docker/Dockerfile" --build-arg "VARIANT=$variant" -t "densebench:$variant" "$repo"
    run=(docker run --rm "${gpu_flags[@]}" --shm-size 8g --user "$(id -u):$(id -g)" -e HOME=/tmp
         -v "$output_dir:/results" -v densebench-cache:/cache "densebench:$variant")
else
    cd "$repo"
    run=("$python" -m densebench.cli run --output "$output_dir")
fi
set +e
"${run[@]}" "${args[@]}" "${pytest_extra[@]}"
status=$?
set -e
echo "build_and_run.sh: JSON: $output_dir/results.json  report: $output_dir/report.html"
exit $status
