"""The suite checks the jaxtyping annotations of mamba_jax.ops, .layers and .models at run time (the import hook in
tests/conftest.py, legend in mamba_jax/typing.py): a wrong-shaped call and a planted wrong annotation both raise."""

from __future__ import annotations

import importlib
import sys

import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

import mamba_jax.layers
from mamba_jax.layers.conv import _depthwise


def test_wrong_shaped_call_raises():
    """``w [K, 1]`` where ``[K, E]`` is annotated: numpy broadcasting would run it silently; the check refuses it."""
    xp = jnp.ones((2, 10, 4))
    good = _depthwise(xp, jnp.ones((3, 4)), 8)
    np.testing.assert_allclose(np.asarray(good), 3.0)  # three taps of ones
    with pytest.raises(jaxtyping.TypeCheckError, match="parameter 'w'"):
        _depthwise(xp, jnp.ones((3, 1)), 8)


def test_planted_wrong_annotation_raises(tmp_path, monkeypatch):
    """A module imported under mamba_jax.layers whose return annotation is wrong: the check raises at the call."""
    (tmp_path / "_planted_shapes.py").write_text(
        "from mamba_jax.typing import Array, Float\n\n"
        "def widen(x: Float[Array, 'B L E']) -> Float[Array, 'B L E']:\n"
        "    return x.repeat(2, axis=-1)  # [B, L, 2E]: the annotation is wrong\n"
    )
    monkeypatch.setattr(mamba_jax.layers, "__path__", [*mamba_jax.layers.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "mamba_jax.layers._planted_shapes", raising=False)
    planted = importlib.import_module("mamba_jax.layers._planted_shapes")
    try:
        with pytest.raises(jaxtyping.TypeCheckError, match="return value"):
            planted.widen(jnp.ones((1, 3, 2)))
    finally:
        sys.modules.pop("mamba_jax.layers._planted_shapes", None)
