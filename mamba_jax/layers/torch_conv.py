"""Dense convolutions with PyTorch weight layouts and init, on channels-last activations.

Weights keep the torch state_dict layout so a checkpoint converter copies them unchanged:

* ``Conv1d``           weight ``[out, in, K]``,        ``y[t] = b + sum_{i,k} w[o,i,k] x_pad[t*s + k, i]``
* ``Conv2d``           weight ``[out, in, Kh, Kw]``
* ``ConvTranspose1d``  weight ``[in, out, K]``,        ``y[j*s + k - p] += w[i,o,k] x[j, i]``
* ``ConvTranspose2d``  weight ``[in, out, Kh, Kw]``

Transposed convolutions are written explicitly as an lhs-dilated (stride-dilated input) convolution with
the spatially flipped kernel and padding ``K - 1 - p`` (docs/mamba.md), not with a framework transpose
helper, so the torch weight maps with no hidden flips. Output length of ``ConvTranspose1d`` is
``(L - 1) * s - 2p + K``.

Init is torch's default: weight and bias ~ U(+-1/sqrt(fan_in)) with ``fan_in = weight.shape[1] * prod(K)``
(for a transposed conv that is ``out_channels * prod(K)``, a torch quirk reproduced on purpose).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.init import torch_default
from mamba_jax.typing import Array, Float


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


class _ConvNd(nnx.Module):
    """Shared body. ``transposed`` selects the torch ``ConvTransposeNd`` semantics."""

    _nd: int = 1
    _transposed: bool = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], *,
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0, use_bias: bool = True,
                 dtype=None, rngs: nnx.Rngs):
        nd = self._nd
        self.kernel_size = _tuple(kernel_size, nd)
        self.stride = _tuple(stride, nd)
        self.padding = _tuple(padding, nd)
        self.dtype = dtype
        shape = ((in_channels, out_channels) if self._transposed else (out_channels, in_channels)) + self.kernel_size
        init = torch_default(shape[1] * math.prod(self.kernel_size))
        self.weight = nnx.Param(init(rngs.params(), shape))
        self.bias = nnx.Param(init(rngs.params(), (out_channels,))) if use_bias else None

    def __call__(self, x: Float[Array, "B *Sp Ci"]) -> Float[Array, "B *So Co"]:
        nd = self._nd
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        w = self.weight[...].astype(dtype)
        spatial = "W" if nd == 1 else "HW"
        lhs = "N" + spatial + "C"
        if self._transposed:
            w = jnp.flip(w, axis=tuple(range(2, 2 + nd)))  # [in, out, *K], flipped taps
            pads = [(k - 1 - p, k - 1 - p) for k, p in zip(self.kernel_size, self.padding, strict=True)]
            y = jax.lax.conv_general_dilated(
                x, w, window_strides=(1,) * nd, padding=pads, lhs_dilation=self.stride,
                dimension_numbers=(lhs, "IO" + spatial, lhs))
        else:
            y = jax.lax.conv_general_dilated(
                x, w, window_strides=self.stride, padding=[(p, p) for p in self.padding],
                dimension_numbers=(lhs, "OI" + spatial, lhs))
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


class Conv1d(_ConvNd):
    """torch ``nn.Conv1d`` (groups 1) on ``[B, L, C_in] -> [B, L', C_out]``; weight ``[out, in, K]``."""

    _nd, _transposed = 1, False


class Conv2d(_ConvNd):
    """torch ``nn.Conv2d`` (groups 1) on ``[B, H, W, C_in] -> [B, H', W', C_out]``; weight ``[out, in, Kh, Kw]``."""

    _nd, _transposed = 2, False


class ConvTranspose1d(_ConvNd):
    """torch ``nn.ConvTranspose1d`` on ``[B, L, C_in] -> [B, (L-1)s - 2p + K, C_out]``; weight ``[in, out, K]``."""

    _nd, _transposed = 1, True


class ConvTranspose2d(_ConvNd):
    """torch ``nn.ConvTranspose2d`` on ``[B, H, W, C_in]``; weight ``[in, out, Kh, Kw]``."""

    _nd, _transposed = 2, True
