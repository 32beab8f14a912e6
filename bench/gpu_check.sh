#!/usr/bin/env bash
# One-shot GPU check (bench/gpu_check.py has the details): kernel tests, scan and model speed and memory, auto.
#   bash bench/gpu_check.sh --part 1 | --part 2 | (both) | --dry-run | --table
# Runs from a checkout without installing the project. Python: $PYTHON, else .venv/bin/python, else python3
# (the device machine's, which has a CUDA jax). Device machine (no internet): the command in bench/gpu_check.py's
# docstring, after bash tools/gpu_wheels.sh here.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
# Peak memory is what a row allocates, not JAX's default 75% pool; JAX must not grab the GPU in one row
# process while another (pytest's) holds it.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# $py may carry flags (PYTHON="python3 -S"): word splitting is wanted here.
# shellcheck disable=SC2086
exec $py bench/gpu_check.py "$@"
