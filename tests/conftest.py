"""Shared pytest setup: GPU-marked tests run only where a CUDA device exists; one persistent XLA compilation
cache for the whole run (this process, the xdist workers and every subprocess they start); the most expensive
tests scheduled first so that the two ``pytest -n 2`` workers finish together."""

from __future__ import annotations

import gc
import os

# Every compiled program goes into the run's persistent compilation cache (pytest_configure below), not only those
# that took over JAX's default 1 s to compile: the many small programs of a training process (data staging, rng,
# metrics) are then compiled once per run instead of once per process (a repeated Mamba-TasNet smoke training
# process: 9.4 -> 7.6 CPU-s). Set before JAX is imported; inherited by the xdist workers and every subprocess.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

from mamba_jax.xla_cpu import apply_cpu_flags  # noqa: E402

# The XLA CPU flags the entry points apply (mamba_jax/xla_cpu.py), set here before JAX starts its backend, so this
# process and every subprocess (they inherit XLA_FLAGS) test with them whatever the tests import first.
apply_cpu_flags()

# Tracing (beam searches, models, optimisers) allocates millions of short-lived objects: Python's cyclic collector
# then runs every 700 allocations, and its full collections walk every object imported so far, ~5% of an in-process
# test's CPU time (tests/inference/test_decoding.py: 52.6 -> 49.3 CPU-s). Imported modules are frozen out of the
# collections, and the youngest generation is collected every 100,000 allocations instead of 700.
gc.freeze()
gc.set_threshold(100_000, 20, 100)

# The CLI and Separator.from_checkpoint turn on a persistent compilation cache under ~/.cache; tests stay hermetic.
os.environ.setdefault("MAMBA_JAX_COMPILATION_CACHE", "0")

# On a GPU, impl="auto" measures its candidates and caches the choices under ~/.cache by default
# (mamba_jax/ops/scan_autotune.py); the suite keeps its choices in the run's temporary folder (pytest_configure).

# Compiling dominates the suite on CPU (the smoke programs then run for a few steps): LLVM optimisation level 0
# compiles a SepMamba smoke training run in ~35% less CPU time. Set before JAX starts its backend, and inherited
# by every subprocess (tests that set XLA_FLAGS for a subprocess append to this value).
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

# Tests (node-id prefixes) that took over ~50 s each on an idle 2-core machine before the cache and flags above
# (approximate seconds: clean-clone timings and CPU times measured one by one; only the order matters). They
# start first, one per worker as soon as a worker is free (``--dist loadgroup`` in pyproject.toml: each test is
# its own unit of work unless it has an ``xdist_group``), and the many short tests fill in behind them: a long
# test started last would otherwise decide the wall time alone.
HEAVY = {
    "tests/test_readme.py::test_readme_commands_run_as_written[separation]": 190,
    "tests/inference/test_asr_trained.py": 80,
    "tests/test_readme.py::test_readme_commands_run_as_written[asr]": 75,
    "tests/test_notebooks.py::test_notebook_runs_in_smoke_mode[conmamba_asr]": 70,
    "tests/test_notebooks.py::test_notebook_runs_in_smoke_mode[train_sepmamba_colab]": 65,
    "tests/training/test_loop.py::test_resume_continues_exactly": 60,
    # + its group: the uninterrupted, four-device and two-process runs and the other interruptions, ~130 s
    "tests/training/test_multiprocess.py::test_kill_9_then_resume_matches_uninterrupted": 130,
    "tests/test_notebooks.py::test_notebook_runs_in_smoke_mode[separation_inference]": 60,
}


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """One run-wide persistent compilation cache in the run's temporary folder (removed with it).

    The README, notebook, multi-process and trained-checkpoint tests start fresh processes that compile the same
    smoke programs again and again; with the cache only the first process of the run compiles each. Entries are
    keyed by the program, the XLA flags and the devices (JAX's cache key), so different device counts or models
    never share one. The xdist workers inherit the folder through ``JAX_COMPILATION_CACHE_DIR``, which every
    JAX process reads at import; a folder the user already chose is used as it is.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") is None and "PYTEST_XDIST_WORKER" not in os.environ:
        folder = config._tmp_path_factory.getbasetemp() / "jax-compilation-cache"
        folder.mkdir(exist_ok=True)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    if os.environ.get("MAMBA_JAX_SCAN_AUTOTUNE_DIR") is None and "PYTEST_XDIST_WORKER" not in os.environ:
        folder = config._tmp_path_factory.getbasetemp() / "scan-autotune"
        folder.mkdir(exist_ok=True)
        os.environ["MAMBA_JAX_SCAN_AUTOTUNE_DIR"] = str(folder)
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


def _has_gpu() -> bool:
    try:
        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False


def _cost(item) -> float:
    return next((s for prefix, s in HEAVY.items() if item.nodeid.startswith(prefix)), 0.0)


# Modules whose tests share an expensive module-scoped fixture (models built, references compiled): each runs on
# one worker (an ``xdist_group``), so that the fixture is built once, not once per worker that got one of its
# tests (xdist hands out single tests: in two runs, 35-39 modules had tests on both workers). Mid-collection
# modules only: a large group at the end of the run would leave one worker busy alone.
SHARED_FIXTURE_MODULES = ("tests/inference/test_exact_separation.py", "tests/inference/test_decoding.py",
                          "tests/inference/test_separator.py", "tests/inference/test_streaming.py",
                          "tests/inference/test_transcriber.py", "tests/models/test_bad_inputs.py",
                          "tests/training/test_checkpoint.py")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    # Most expensive first (a stable sort: the rest keep pytest's order, which groups each module's tests).
    items.sort(key=lambda item: -_cost(item))
    for item in items:
        module = item.nodeid.split("::")[0]
        if module in SHARED_FIXTURE_MODULES and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(module))
    if _has_gpu():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (compiled Pallas); this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
