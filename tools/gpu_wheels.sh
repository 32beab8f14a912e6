#!/usr/bin/env bash
# Downloads (here, where PyPI is reachable) the wheels that a GPU machine without internet needs beside its own
# jax 0.11.2 + CUDA plugin, flax, optax, orbax, numpy, scipy, matplotlib, pytest...: the runtime dependencies of
# mamba-jax that such an image lacks, at the versions of constraints.txt, for CPython 3.12 on manylinux x86-64.
# Source-only packages (pesq) are built into wheels here. The folder stays well under 64 MiB.
#
#   bash tools/gpu_wheels.sh [DIR]        # default .whl (added to .git/info/exclude)
#
# Then on the GPU machine, from the checkout root with DIR in it (the device machine: carry [".whl"],
# timeout_s 570; both parts of the check in one call, <= 8 min):
#   set -o pipefail; PYTHON=python3 bash tools/install.sh gpu test --wheels .whl && \
#     PYTHON=python3 MAMBA_JAX_COMMIT=<hash> bash bench/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log; \
#     cp bench/results/gpu_check.json $OUT/
# Extra names: GPU_WHEELS_EXTRA="name ..." (versions from constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}

# Not in the device image (its package list: absl-py, flax, optax, orbax-checkpoint, jax, numpy, scipy,
# matplotlib, scikit-learn, numba, msgpack, tqdm, jaxtyping, sentencepiece, pytest, pytest-xdist, ... are there).
names="grain array_record ml_collections librosa soxr pooch platformdirs decorator soundfile cffi pycparser
tensorboardX espeakng-loader jiwer RapidFuzz pesq pystoi portpicker ${GPU_WHEELS_EXTRA:-}"

mkdir -p "$dir"
if [ "$dir" = ".whl" ] && [ -d .git ] && ! grep -qx '/.whl/' .git/info/exclude 2>/dev/null; then
  echo '/.whl/' >> .git/info/exclude
fi
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64)
for name in $names; do
  pin=$(grep -i -m 1 -E "^${name//[-_]/[-_]}==" constraints.txt || true)
  [ -n "$pin" ] || { echo "error: tools/gpu_wheels.sh: $name has no pin in constraints.txt" >&2; exit 1; }
  if ! "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
       --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" --platform any -d "$dir" "$pin" 2>/dev/null; then
    # No binary wheel (pesq): build one here (needs a C compiler; numpy comes from the build's own env).
    [ "$(uname -m)" = x86_64 ] || { echo "error: tools/gpu_wheels.sh: $pin has no wheel; build it on x86-64" >&2; exit 1; }
    "$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$dir" "$pin"
  fi
done
echo "$(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1) in $dir"
