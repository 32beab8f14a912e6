"""PyTorch-default initialisers, so that fresh models match the originals' parameter distributions.

torch ``nn.Linear``/``nn.ConvNd`` use ``kaiming_uniform_(a=sqrt(5))`` for weights, which is
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for biases.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def uniform(bound: float):
    """Initialiser for U(-bound, bound), any shape."""

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_default(fan_in: int):
    """torch's default weight/bias init for a layer with ``fan_in`` inputs (per group, times kernel size)."""
    return uniform(1.0 / math.sqrt(fan_in))
