#!/usr/bin/env bash
# The project's own checks: linters and the test suite, on CPU, in a local virtual environment.
#   scripts/test.sh [extra pytest arguments]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# The store tests start a real PostgreSQL server (Debian's postgresql package; its pg_ctl is not on
# PATH). Installed here when missing and running as root (CI, containers); otherwise those tests skip,
# except with CI=true, where they fail.
if ! command -v pg_ctl >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing PostgreSQL (apt-get install postgresql) for the results store tests" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "test.sh: no PostgreSQL server (pg_ctl); the store's PostgreSQL tests will skip (fail with CI=true)" >&2
    fi
fi
"$repo/scripts/bootstrap.sh" "$repo/.venv" "test,onnxruntime,openvino,int8,report,store,serving"
"$repo/scripts/lint.sh"
"$repo/.venv/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
