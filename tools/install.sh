#!/usr/bin/env bash
# Create .venv with Python 3.12 (jax 0.11.2 needs >= 3.12) and install mamba-jax pinned by constraints.txt.
# Usage: bash tools/install.sh [test]     ("test" adds the test extra)
set -euo pipefail
cd "$(dirname "$0")/.."

find_python312() {
  local cand
  for cand in "${PYTHON:-}" python3.12 python3.13; do
    [ -n "$cand" ] || continue
    if "$cand" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
      command -v "$cand"; return 0
    fi
  done
  # pyenv installs 3.12 without putting it on the global shim path.
  for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if [ -x "$cand" ] && "$cand" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
      echo "$cand"; return 0
    fi
  done
  echo "error: Python >= 3.12 not found (jax 0.11.2 requires it). Install python3.12 or set PYTHON=/path/to/python3.12." >&2
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
  py=$(find_python312)
  echo "creating .venv with $py" >&2
  rm -rf .venv
  "$py" -m venv .venv
fi
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".${extra}"
