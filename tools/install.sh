#!/usr/bin/env bash
# Create .venv with Python 3.12 (jax 0.11.2 needs >= 3.12) and install mamba-jax pinned by constraints.txt.
# Usage: bash tools/install.sh [test] [gpu] [--wheels DIR] [--dry-run]
#   test          adds the test extra
#   gpu           adds the CUDA jaxlib plugin of the pinned jax: jax[cuda13] when nvidia-smi reports CUDA >= 13
#                 (driver >= 580), else jax[cuda12] (driver >= 525); MAMBA_JAX_CUDA=12 or 13 chooses without
#                 nvidia-smi. The NVIDIA libraries come as pip wheels (the "with-cuda" plugin extra).
#   --wheels DIR  offline (no package index, e.g. the device machine): installs DIR's wheels (tools/gpu_wheels.sh
#                 makes them) without dependencies into the Python that already has jax 0.11.2 (and, with gpu,
#                 its CUDA plugin): $PYTHON, else python3; no .venv is made. Then mamba-jax itself, editable.
#   --dry-run     prints the commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/.."

extra="" gpu="" wheels="" dry=""
while [ $# -gt 0 ]; do
  case "$1" in
    test) extra="[test]" ;;
    gpu) gpu=1 ;;
    --wheels) [ $# -ge 2 ] || { echo "error: tools/install.sh: --wheels needs a folder" >&2; exit 2; }; wheels=$2; shift ;;
    --dry-run) dry=1 ;;
    *) echo "error: tools/install.sh: unknown argument '$1' (expected test, gpu, --wheels DIR, --dry-run)" >&2; exit 2 ;;
  esac
  shift
done

run() {
  if [ -n "$dry" ]; then echo "+ $*"; else "$@"; fi
}

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

# The CUDA major version of the jax plugin: MAMBA_JAX_CUDA, else what the driver supports (nvidia-smi's header).
cuda_major() {
  if [ -n "${MAMBA_JAX_CUDA:-}" ]; then
    case "$MAMBA_JAX_CUDA" in 12|13) echo "$MAMBA_JAX_CUDA"; return 0 ;; esac
    echo "error: tools/install.sh gpu: MAMBA_JAX_CUDA=$MAMBA_JAX_CUDA; jax 0.11.2 has CUDA 12 and 13 plugins (12 or 13)" >&2
    return 1
  fi
  local smi version
  if ! smi=$(nvidia-smi 2>/dev/null); then
    echo "error: tools/install.sh gpu: nvidia-smi not found or failed (no NVIDIA driver?); set MAMBA_JAX_CUDA=12 or 13 to choose the plugin anyway" >&2
    return 1
  fi
  version=$(printf '%s\n' "$smi" | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1)
  if [ -z "$version" ]; then
    echo "error: tools/install.sh gpu: nvidia-smi printed no 'CUDA Version'; set MAMBA_JAX_CUDA=12 or 13" >&2
    return 1
  elif [ "$version" -ge 13 ]; then echo 13
  elif [ "$version" -eq 12 ]; then echo 12
  else
    echo "error: tools/install.sh gpu: the driver supports CUDA $version; jax 0.11.2 needs CUDA 12 (driver >= 525) or 13 (driver >= 580)" >&2
    return 1
  fi
}

if [ -n "$wheels" ]; then
  # Offline: the Python that has jax (the device machine's python3) gets the missing wheels, then this project.
  py=${PYTHON:-python3}
  ls "$wheels"/*.whl >/dev/null 2>&1 || { echo "error: tools/install.sh: no .whl files in '$wheels' (make them with bash tools/gpu_wheels.sh)" >&2; exit 1; }
  "$py" - "${gpu:+gpu}" <<'EOF' || exit 1
import sys
from importlib import metadata
need = "jax 0.11.2" + (" with a CUDA plugin" if "gpu" in sys.argv[1:] else "")
try:
    ok = metadata.version("jax") == "0.11.2"
    if "gpu" in sys.argv[1:]:
        ok = ok and any(d.metadata["Name"].replace("_", "-").startswith(("jax-cuda12-plugin", "jax-cuda13-plugin"))
                        for d in metadata.distributions())
except metadata.PackageNotFoundError:
    ok = False
if not ok or sys.version_info < (3, 12):
    sys.exit(f"error: tools/install.sh --wheels: {sys.executable} lacks {need} (Python >= 3.12); "
             "offline, set PYTHON to a Python that has it")
EOF
  run "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile "$wheels"/*.whl
  # Editable, without build isolation (no index to fetch setuptools from): registers kernels/ as mamba_jax_kernels.
  log=$(mktemp)
  if ! run "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-build-isolation -e . >"$log" 2>&1; then
    echo "warning: tools/install.sh: mamba-jax itself did not install ($(grep -v '^ ' "$log" | grep . | tail -n 1));" \
         "offline it needs setuptools >= 69 and wheel there; checkout runs still work: bench/gpu_check.sh" \
         "registers kernels/ as mamba_jax_kernels itself" >&2
  fi
  rm -f "$log"
  exit 0
fi

if [ -n "$gpu" ]; then
  cuda=$(cuda_major)  # before anything is installed: a machine without a driver stops here
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
  py=$(find_python312)
  echo "creating .venv with $py" >&2
  run rm -rf .venv
  run "$py" -m venv .venv
fi
run .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
run .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".${extra}"
if [ -n "$gpu" ]; then
  # jaxlib stays the constraints' 0.11.2; the plugin and PJRT wheels must match it exactly.
  run .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt "jax[cuda${cuda}]==0.11.2"
  run .venv/bin/python -c 'import sys, jax; print("jax sees", jax.devices()); jax.default_backend() == "gpu" or sys.exit(
    "error: tools/install.sh gpu: jax[cuda'"$cuda"'] installed but jax sees no GPU (driver too old for this CUDA?)")'
fi
