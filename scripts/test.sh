#!/usr/bin/env bash
# The project's own checks: linters and the test suite, on CPU, in a local virtual environment.
#   scripts/test.sh [extra pytest arguments]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
"$repo/scripts/bootstrap.sh" "$repo/.venv" "test,onnxruntime,openvino,int8,report,store"
"$repo/scripts/lint.sh"
"$repo/.venv/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
