"""Right-padded batches: per-row valid lengths, masks, and reversal within each row's length.

A batch ``x [B, L, ...]`` holds row ``b``'s sequence at ``t < lengths[b]`` and padding after it. A causal
layer already computes the valid positions exactly (they never see later steps); a time-reversed branch
must reverse each row *within* its length, so that its padding stays on the right and the reversed scan
starts from a zero state at the row's true end, as the unpadded call does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mamba_jax.typing import Array, Bool, Int


def valid_mask(lengths: Int[Array, "B"], size: int) -> Bool[Array, "B L"]:
    """``mask[b, t] = t < lengths[b]`` for ``t < size``."""
    return jnp.arange(size, dtype=jnp.int32)[None, :] < jnp.asarray(lengths, jnp.int32)[:, None]


def mask_padding(x: Array, lengths: Int[Array, "B"] | None, axis: int = 1) -> Array:
    """Zeroes ``x [B, ..., L, ...]`` at positions ``t >= lengths[b]`` along ``axis``; identity for None."""
    if lengths is None:
        return x
    axis = axis % x.ndim
    mask = valid_mask(lengths, x.shape[axis])  # [B, L]
    shape = [1] * x.ndim
    shape[0], shape[axis] = x.shape[0], x.shape[axis]
    return jnp.where(mask.reshape(shape), x, jnp.zeros((), x.dtype))


def reverse_padded(x: Array, lengths: Int[Array, "B"] | None, axis: int = 1) -> Array:
    """Reverses each row of ``x [B, ..., L, ...]`` along ``axis`` within its first ``lengths[b]`` positions.

    Positions ``t >= lengths[b]`` stay where they are, so the function is its own inverse and
    ``reverse_padded(x, None) == flip(x, axis)``. Row ``b`` reads ``x[b, lengths[b] - 1 - t]`` for
    ``t < lengths[b]`` (a gather; lengths are clipped to ``[0, L]``).
    """
    if lengths is None:
        return jnp.flip(x, axis)
    axis = axis % x.ndim
    size = x.shape[axis]
    n = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, size)[:, None]  # [B, 1]
    t = jnp.arange(size, dtype=jnp.int32)[None, :]  # [1, L]
    idx = jnp.where(t < n, n - 1 - t, t)  # [B, L]
    shape = [1] * x.ndim
    shape[0], shape[axis] = x.shape[0], size
    idx = jnp.broadcast_to(idx.reshape(shape), x.shape[:axis + 1] + (1,) * (x.ndim - axis - 1))
    return jnp.take_along_axis(x, idx, axis=axis, mode="clip")


def as_lengths(lengths: Int[Array, "B"] | None, batch: int) -> jax.Array | None:
    """``lengths`` as int32 ``[B]`` (a scalar broadcasts), or None."""
    if lengths is None:
        return None
    return jnp.broadcast_to(jnp.asarray(lengths, jnp.int32), (batch,))


def conv_lengths(lengths: Int[Array, "B"], kernel: int, stride: int = 1, padding: int = 0) -> jax.Array:
    """Valid output frames of an unpadded-call strided conv: ``(n + 2 padding - kernel) // stride + 1``."""
    return (jnp.asarray(lengths, jnp.int32) + 2 * padding - kernel) // stride + 1
