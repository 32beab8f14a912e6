"""XLA CPU settings that make our models faster and leaner on CPU, applied by :func:`apply_cpu_flags`.

Nothing here runs on import: the entry points (``train.py``, the ``mamba-jax`` CLI, the notebooks, the
``bench/`` scripts, the test suite's ``conftest.py``) call :func:`apply_cpu_flags` before JAX starts its
backend, and a library user who wants the same CPU code calls it first too (docs/architecture.md, "XLA CPU
flags"). Two ``XLA_FLAGS`` entries, measured on the 2-core AVX-512 CPU VM (BENCHMARKS.md, "Separation and ASR
inference speed, CPU"):

* ``--xla_cpu_enable_concurrency_optimized_scheduler=false``. XLA's CPU scheduler by default orders
  independent work so that it can overlap, which keeps the buffers of many layers alive at once. Without it
  a forward pass needs ~4x less temporary memory (SepMamba-S on 4 s: 0.44 -> 0.11 GB; SPMamba: 4.8 -> 1.2 GB;
  DPMamba-S: 1.0 -> 0.3 GB), at the same or better speed (quickstart training: 1.29-1.41 -> 1.41-1.67
  steps/s).
* ``--xla_cpu_prefer_vector_width=512``, only where the CPU reports ``avx512f`` (``/proc/cpuinfo``). XLA asks
  LLVM for 256-bit vectors by default; the selective scan's CPU loop is bound by its per-step
  ``exp(delta * A)`` over ``E x N`` lanes, and 512-bit vectors make a SepMamba-S forward pass ~12% faster.

A flag is added only when ``XLA_FLAGS`` does not already name it (the user's choice wins), when
``MAMBA_JAX_CPU_FLAGS`` is not ``0``/``off``/``false``/``no`` (the opt-out) and when the installed jaxlib is
0.11.x (an unknown flag in ``XLA_FLAGS`` aborts XLA). XLA reads ``XLA_FLAGS`` once, when the first backend
starts: a call after the first JAX computation changes nothing and warns (``CpuFlagsTooLate``). The flags go
into ``os.environ``, so the processes this one starts inherit them. They change scheduling and code
generation, not what is computed (results can differ from the defaults in the last bits of reductions). The
persistent compilation cache keys on ``XLA_FLAGS``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import MutableMapping

SCHEDULER = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
WIDE_VECTORS = "--xla_cpu_prefer_vector_width=512"
_OFF = ("0", "off", "false", "no")


class CpuFlagsTooLate(RuntimeWarning):
    """:func:`apply_cpu_flags` ran after JAX started its backend: XLA has read ``XLA_FLAGS`` already."""


def _cpu_has_avx512(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def _jaxlib_knows_flags() -> bool:
    from importlib import metadata

    try:
        return metadata.version("jaxlib").startswith("0.11.")
    except metadata.PackageNotFoundError:
        return False


def _backends_started() -> bool:
    # JAX has no public "backends initialised" query; without jax imported nothing can have started.
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # another jax layout: assume started, change nothing
        return True


def apply_cpu_flags(environ: MutableMapping[str, str] | None = None, *, avx512: bool | None = None,
                    jaxlib_ok: bool | None = None, started: bool | None = None) -> list[str]:
    """Appends the flags of the module docstring to ``environ["XLA_FLAGS"]`` (default ``os.environ``).

    Call it before the first JAX computation. Idempotent: a second call finds the flags there and adds nothing.
    Returns the flags it added (``[]`` when opted out, on another jaxlib, when all are there, or too late).
    Too late (JAX's backend already started) with flags still missing: a ``CpuFlagsTooLate`` warning, and
    ``XLA_FLAGS`` is left as it is. The keyword arguments override the detected facts (for tests).
    """
    env = os.environ if environ is None else environ
    if env.get("MAMBA_JAX_CPU_FLAGS", "").strip().lower() in _OFF:
        return []
    if not (_jaxlib_knows_flags() if jaxlib_ok is None else jaxlib_ok):
        return []
    flags = env.get("XLA_FLAGS", "")
    wanted = [SCHEDULER] + ([WIDE_VECTORS] if (_cpu_has_avx512() if avx512 is None else avx512) else [])
    added = [f for f in wanted if f.split("=")[0].lstrip("-") not in flags]
    if not added:
        return []
    if _backends_started() if started is None else started:
        warnings.warn(f"mamba_jax.xla_cpu.apply_cpu_flags: JAX's backend has started, XLA_FLAGS is read "
                      f"already: {' '.join(added)} not applied (call it before the first JAX computation)",
                      CpuFlagsTooLate, stacklevel=2)
        return []
    env["XLA_FLAGS"] = " ".join([flags, *added]).strip()
    return added
