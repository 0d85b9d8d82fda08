#!/usr/bin/env bash
# The hashed locks under requirements/, made from pyproject.toml by uv (itself locked in
# requirements/tools.lock and installed by scripts/bootstrap.sh).
#
#   scripts/lock.sh                  refresh: follow pyproject.toml, keep every pin it still allows
#   scripts/lock.sh --upgrade        move every pin to the newest release pyproject.toml allows
#   scripts/lock.sh --upgrade redis  move only the named packages (and what they need)
#   scripts/lock.sh --check          exit 1 when pyproject.toml and the locks disagree
#
# Each lock is universal (every platform's markers and wheels' hashes) for Python 3.12 and
# holds names, versions and sha256 hashes only: no index or file URLs, so any mirror serves it.
# dev.lock is resolved first and every other lock is constrained to it, so a package has one
# version in all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

# lock name -> the extras it installs ("all" = every extra); who installs it
declare -A EXTRAS=(
  [dev]="all"            # make test, make lint, make test-latest's baseline
  [base]=""              # make run
  [api]="s3"             # the api image
  [worker]="diffusers s3" # the worker image
)
# tools.lock: uv itself, from requirements/tools.in; build.lock: the build backends alone, which
# uv uses (by hash, --build-constraints) to build a source distribution that has no wheel here
ORDER=(dev base api worker build tools)

mode="refresh"
upgrade=()
case "${1:-}" in
  --check) mode="check" ;;
  --upgrade)
    shift
    if [ $# -eq 0 ]; then
      upgrade=(--upgrade)
    else
      for package in "$@"; do upgrade+=(--upgrade-package "$package"); done
    fi
    ;;
  "") ;;
  *)
    echo "usage: scripts/lock.sh [--check | --upgrade [PACKAGE...]]" >&2
    exit 2
    ;;
esac

scripts/bootstrap.sh --tools-only
uv=".venv/.tools/bin/uv"
export UV_PYTHON_DOWNLOADS=never

# where the new locks are written: the repo itself, or a scratch copy to compare
out="requirements"
if [ "$mode" = "check" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  cp requirements/*.lock "$out/"
fi

compile() { # name, then extra uv arguments
  local name="$1"
  shift
  local inputs=(pyproject.toml requirements/build.in) extras=()
  [ "$name" = tools ] && inputs=(requirements/tools.in)
  [ "$name" = build ] && inputs=(requirements/build.in)
  case "${EXTRAS[$name]:-}" in
    all) extras=(--all-extras) ;;
    "") ;;
    *) for extra in ${EXTRAS[$name]}; do extras+=(--extra "$extra"); done ;;
  esac
  # the existing lock is uv's starting point: pins it still allows are kept
  "$uv" pip compile "${inputs[@]}" "${extras[@]}" "$@" \
    --universal --python-version 3.12 --generate-hashes --no-emit-index-url \
    --no-emit-find-links --custom-compile-command "make lock" --quiet \
    --output-file "$out/$name.lock"
}

for name in "${ORDER[@]}"; do
  if [ "$name" = dev ] || [ "$name" = tools ]; then
    compile "$name" "${upgrade[@]}"
  else
    compile "$name" --constraint "$out/dev.lock"
  fi
done

if [ "$mode" = "check" ]; then
  # compare what is pinned (names, versions, markers), not the hash lines: a wheel uploaded
  # later to a pinned release adds a hash without changing what installs
  pins() { grep -v -E '^\s*(--hash|#)' "$1" | sed -e 's/ *\\$//'; }
  drift=0
  for name in "${ORDER[@]}"; do
    if ! diff -u --label "requirements/$name.lock" --label "from pyproject.toml" \
      <(pins "requirements/$name.lock") <(pins "$out/$name.lock"); then
      drift=1
    fi
  done
  if [ "$drift" -ne 0 ]; then
    echo "The locks under requirements/ do not match pyproject.toml: run 'make lock' and commit the result." >&2
    exit 1
  fi
  echo "requirements/*.lock match pyproject.toml"
fi
