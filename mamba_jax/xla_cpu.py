"""512-bit vectors for XLA's CPU code on AVX-512 machines (imported by ``mamba_jax/__init__``).

XLA's CPU backend asks LLVM for 256-bit vectors by default, even where the CPU has AVX-512. The selective scan's
CPU loop is bound by its per-step ``exp(delta * A)`` over ``E x N`` lanes, and 512-bit vectors make a
SepMamba-S forward pass on 4 s of audio ~12% faster on an AVX-512 x86 CPU (BENCHMARKS.md, "Separation and ASR
inference speed, CPU"). Importing ``mamba_jax`` therefore appends ``--xla_cpu_prefer_vector_width=512`` to
``XLA_FLAGS`` when all of these hold:

* the CPU reports ``avx512f`` (``/proc/cpuinfo``; other systems are left alone);
* ``XLA_FLAGS`` does not already set ``xla_cpu_prefer_vector_width`` (the user's choice wins);
* ``MAMBA_JAX_WIDE_VECTORS`` is not ``0``/``off``/``false``/``no`` (the opt-out, e.g. for CPUs that lower
  their clock for 512-bit instructions);
* the installed jaxlib is 0.11.x, whose XLA knows the flag (an unknown flag in ``XLA_FLAGS`` aborts XLA);
* JAX has not started its backends yet: XLA reads ``XLA_FLAGS`` once, when the first backend starts, so
  importing ``mamba_jax`` after the first JAX computation changes nothing.

The flag only changes code generation (vector width), not what is computed; results can differ from the
256-bit code in the last bits of reductions. The persistent compilation cache keys on ``XLA_FLAGS``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

FLAG = "--xla_cpu_prefer_vector_width=512"
_OFF = ("0", "off", "false", "no")


def _cpu_has_avx512(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def _jaxlib_knows_flag() -> bool:
    from importlib import metadata

    try:
        return metadata.version("jaxlib").startswith("0.11.")
    except metadata.PackageNotFoundError:
        return False


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # another jax layout: assume started, change nothing
        return True


def prefer_wide_vectors(environ: MutableMapping[str, str] | None = None, *, avx512: bool | None = None,
                        jaxlib_ok: bool | None = None, started: bool | None = None) -> bool:
    """Appends :data:`FLAG` to ``environ["XLA_FLAGS"]`` when the conditions in the module docstring hold.

    Returns whether it did. The keyword arguments override the detected facts (for tests).
    """
    env = os.environ if environ is None else environ
    if env.get("MAMBA_JAX_WIDE_VECTORS", "").strip().lower() in _OFF:
        return False
    flags = env.get("XLA_FLAGS", "")
    if "xla_cpu_prefer_vector_width" in flags:
        return False
    if not (_cpu_has_avx512() if avx512 is None else avx512):
        return False
    if not (_jaxlib_knows_flag() if jaxlib_ok is None else jaxlib_ok):
        return False
    if _backends_started() if started is None else started:
        return False
    env["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True
