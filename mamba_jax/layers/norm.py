"""Normalisation layers used by the Mamba stacks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.typing import Array, Float


class RMSNorm(nnx.Module):
    """mamba_ssm's RMSNorm: ``x * rsqrt(mean(x^2) + eps) * weight`` over the last axis, computed in fp32.

    Weight only (no bias), eps 1e-5 by default. Key: ``weight [D]``.
    """

    def __init__(self, dim: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None):
        del rngs
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), jnp.float32))

    def __call__(self, x: Float[Array, "... D"]) -> Float[Array, "... D"]:
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (y * self.weight[...]).astype(x.dtype)


class LayerNorm(nnx.Module):
    """torch ``nn.LayerNorm`` over the last axis (weight and bias), computed in fp32. Keys: ``weight``, ``bias``."""

    def __init__(self, dim: int, *, eps: float = 1e-5, use_bias: bool = True, rngs: nnx.Rngs | None = None):
        del rngs
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32)) if use_bias else None

    def __call__(self, x: Float[Array, "... D"]) -> Float[Array, "... D"]:
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps) * self.weight[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return y.astype(x.dtype)


def make_norm(kind: str, dim: int, *, eps: float = 1e-5) -> RMSNorm | LayerNorm:
    """``kind`` is ``"rms"`` (mamba_ssm RMSNorm) or ``"layer"`` (torch LayerNorm with bias)."""
    if kind == "rms":
        return RMSNorm(dim, eps=eps)
    if kind == "layer":
        return LayerNorm(dim, eps=eps)
    raise ValueError(f"norm kind must be 'rms' or 'layer', got {kind!r}")
