#!/usr/bin/env bash
# Create or reuse a virtual environment with densebench (editable) and the given extras.
#   scripts/bootstrap.sh [VENV_DIR] [EXTRAS]      e.g. scripts/bootstrap.sh .venv test,onnxruntime
# Reinstalls only when pyproject.toml or the extras changed. PYTHON picks the interpreter.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-$repo/.venv}
extras=${2:-test}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    echo "bootstrap: creating virtual environment $venv" >&2
    "$python" -m venv "$venv"
fi
stamp="$venv/.densebench-install"
want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: installing densebench[$extras] into $venv (torch comes from your pip index)" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" >&2 || true
    # onnxruntime and onnxruntime-gpu install the same module: keep only the one these extras ask for.
    case ",$extras," in
        *,gpu,*|*,onnxruntime-gpu,*) other=onnxruntime ;;
        *,onnxruntime,*) other=onnxruntime-gpu ;;
        *) other="" ;;
    esac
    if [ -n "$other" ] && "$venv/bin/python" -m pip show --quiet "$other" >/dev/null 2>&1; then
        echo "bootstrap: removing $other (it clashes with the onnxruntime these extras install)" >&2
        "$venv/bin/python" -m pip uninstall --quiet --yes "$other" >&2
    fi
    "$venv/bin/python" -m pip install --quiet -e "$repo[$extras]" 2>&1 | grep -v "is ignored" >&2 || true
    "$venv/bin/python" -c "import densebench, torch, torchvision, pytest_benchmark" \
        || { echo "bootstrap: installation failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
