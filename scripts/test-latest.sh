#!/usr/bin/env bash
# The whole suite against the newest releases pyproject.toml allows, in a throwaway venv, so a
# developer sees what a future release breaks before moving the lock (make lock-upgrade).
# .venv and requirements/ are left as they are. Arguments go to pytest.
#
#   make test-latest
#   make test-latest PYTEST_ARGS="-x tests/test_bolt.py"
#   KEEP=1 scripts/test-latest.sh   keep the throwaway venv and print where it is
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh --tools-only
uv=".venv/.tools/bin/uv"
export UV_PYTHON_DOWNLOADS=never

scratch="$(mktemp -d -t reelgraph-latest.XXXXXX)"
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$scratch"' EXIT; fi

# the newest of everything, resolved afresh (hashed, so the install is checked all the same)
"$uv" pip compile pyproject.toml requirements/build.in --all-extras --upgrade \
  --universal --python-version 3.12 --generate-hashes --no-emit-index-url \
  --custom-compile-command "make test-latest" --quiet --output-file "$scratch/latest.lock"

echo "== what moves from requirements/dev.lock to the newest allowed releases"
pins() { grep -E '^[A-Za-z0-9]' "$1" | sed -e 's/ *\\$//' | sort; }
diff <(pins requirements/dev.lock) <(pins "$scratch/latest.lock") | grep -E '^[<>]' || echo "nothing"

python="$(.venv/bin/python -c 'import sys; print(sys._base_executable)')"
"$python" -m venv --without-pip "$scratch/venv"
"$uv" pip sync --quiet --python "$scratch/venv/bin/python" --require-hashes "$scratch/latest.lock"
"$uv" pip install --quiet --python "$scratch/venv/bin/python" --no-deps --no-build-isolation \
  --editable .
[ -n "${KEEP:-}" ] && echo "throwaway venv kept: $scratch/venv"

echo "== the suite on the newest releases"
"$scratch/venv/bin/python" -m pytest "$@"
