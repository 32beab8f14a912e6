"""Normalisations and activations of the separation models (SpeechBrain / TF-GridNet flavours), channels-last.

All statistics are biased variances computed in fp32; ``eps`` is added to the variance (inside the sqrt).

* ``GroupNorm1``: torch ``GroupNorm(1, C)``: one mean/var over every non-batch axis (for a 4-D dual-path
  tensor that is the whole utterance), per-channel affine. Keys ``weight [C]``, ``bias [C]``.
* ``ChannelLayerNorm``: SpeechBrain ``ChannelwiseLayerNorm`` (cLN) and TF-GridNet ``LayerNormalization4D``:
  per-frame statistics over the channel axis. Keys ``gamma [C]``, ``beta [C]`` (torch stores ``[1,1,C]`` /
  ``[1,C,1,1]``).
* ``ChannelFreqLayerNorm``: TF-GridNet ``LayerNormalization4DCF``: statistics over channels *and*
  frequency for each (batch, frame); affine ``gamma/beta [C, F]`` (torch ``[1, C, 1, F]``).
* ``PReLU``: torch ``nn.PReLU()`` with a single slope, init 0.25. Key ``weight [1]``.

``GroupNorm1`` takes an optional ``mask`` (``[B, *S]``, True where valid) so that a right-padded batch gets the
statistics of its valid part only, i.e. those of the unpadded call; the per-position norms need none.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.typing import Array, Bool, Float


def _normalise(x: jax.Array, axes: tuple[int, ...], eps: float) -> jax.Array:
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=axes, keepdims=True)
    return (xf - mean) * jax.lax.rsqrt(var + eps)


def _normalise_masked(x: jax.Array, mask: jax.Array, eps: float) -> jax.Array:
    """``_normalise`` over every non-batch axis, counting only positions where ``mask [B, *S]`` is True."""
    xf = x.astype(jnp.float32)
    m = mask.astype(jnp.float32)[..., None]  # [B, *Sp, 1]
    axes = tuple(range(1, x.ndim))
    count = jnp.maximum(jnp.sum(m, axis=axes, keepdims=True) * x.shape[-1], 1.0)
    mean = jnp.sum(xf * m, axis=axes, keepdims=True) / count
    var = jnp.sum(jnp.square(xf - mean) * m, axis=axes, keepdims=True) / count
    return (xf - mean) * jax.lax.rsqrt(var + eps)


class GroupNorm1(nnx.Module):
    """``GroupNorm(1, C)`` on ``[B, ..., C]``: statistics over all axes but the batch."""

    def __init__(self, channels: int, *, eps: float = 1e-8):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: Float[Array, "B *Sp Ch"], mask: Bool[Array, "B *Sp"] | None = None
                 ) -> Float[Array, "B *Sp Ch"]:
        """``mask``: statistics over the positions where it is True only (a right-padded batch)."""
        y = _normalise(x, tuple(range(1, x.ndim)), self.eps) if mask is None else _normalise_masked(x, mask, self.eps)
        return (y * self.weight[...] + self.bias[...]).astype(x.dtype)


class ChannelLayerNorm(nnx.Module):
    """Per-position LayerNorm over the last (channel) axis with ``gamma``/``beta`` (cLN, LayerNormalization4D)."""

    def __init__(self, channels: int, *, eps: float):
        self.eps = eps
        self.gamma = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: Float[Array, "*Sp Ch"]) -> Float[Array, "*Sp Ch"]:
        return (_normalise(x, (-1,), self.eps) * self.gamma[...] + self.beta[...]).astype(x.dtype)


class ChannelFreqLayerNorm(nnx.Module):
    """LayerNormalization4DCF on ``[B, T, F, C]``: statistics over (F, C) per frame; affine ``[C, F]``."""

    def __init__(self, channels: int, n_freqs: int, *, eps: float = 1e-5):
        self.eps = eps
        self.gamma = nnx.Param(jnp.ones((channels, n_freqs), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((channels, n_freqs), jnp.float32))

    def __call__(self, x: Float[Array, "B L F Ch"]) -> Float[Array, "B L F Ch"]:
        y = _normalise(x, (-2, -1), self.eps) * self.gamma[...].T + self.beta[...].T  # affine [F, C]
        return y.astype(x.dtype)


class PReLU(nnx.Module):
    """torch ``nn.PReLU()``: ``max(0, x) + a * min(0, x)`` with one learnable ``a`` (init 0.25)."""

    def __init__(self, init: float = 0.25):
        self.weight = nnx.Param(jnp.full((1,), init, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        a = self.weight[...].astype(x.dtype)
        return jnp.where(x >= 0, x, a * x)
