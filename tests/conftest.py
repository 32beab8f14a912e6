"""Shared pytest setup: GPU-marked tests run only where a CUDA device exists."""

from __future__ import annotations

import os

import jax
import pytest

# The CLI and Separator.from_checkpoint turn on a persistent compilation cache under ~/.cache; tests stay hermetic.
os.environ.setdefault("MAMBA_JAX_COMPILATION_CACHE", "0")


def _has_gpu() -> bool:
    try:
        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (compiled Pallas); this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
