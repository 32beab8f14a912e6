"""Depthwise 1-D convolutions, channels-last, with torch-compatible weights and a chunked causal-state API."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.init import torch_default
from mamba_jax.typing import Array, Float


def _depthwise(xp: Float[Array, "B Lp E"], w: Float[Array, "K E"], length: int) -> Float[Array, "B L E"]:
    """``y[:, t] = sum_k w[k] * xp[:, t + k]`` for ``t < length``, as K shifted multiply-adds.

    XLA's CPU depthwise convolution (``feature_group_count = E``) took ~0.5 s per Mamba mixer on 4 s of audio
    (BENCHMARKS.md, CPU profile); the shifted sum is one elementwise fusion. fp32 products and sums."""
    y = xp[:, 0:length, :] * w[0]
    for k in range(1, w.shape[0]):
        y = y + xp[:, k:k + length, :] * w[k]
    return y


class DepthwiseConv1d(nnx.Module):
    """Depthwise conv over time: ``y[t, e] = b[e] + sum_k w[k, e] * x_pad[t + k, e]``.

    ``x_pad`` is ``x`` zero-padded by ``padding = (left, right)``. torch ``Conv1d(groups=E)`` weight
    ``[E, 1, K]`` maps to ``weight[k, e] = w_torch[e, 0, k]``. Keys: ``weight [K, E]``, ``bias [E]``.
    """

    def __init__(self, channels: int, kernel_size: int, *, padding: tuple[int, int], use_bias: bool = True,
                 rngs: nnx.Rngs):
        init = torch_default(kernel_size)  # fan_in = in_channels / groups * K = K
        self.kernel_size = kernel_size
        self.padding = padding
        self.weight = nnx.Param(init(rngs.params(), (kernel_size, channels)))
        self.bias = nnx.Param(init(rngs.params(), (channels,))) if use_bias else None

    def __call__(self, x: Float[Array, "B L E"]) -> Float[Array, "B L E"]:
        w = self.weight[...].astype(x.dtype)
        left, right = self.padding
        xp = jnp.pad(x, ((0, 0), (left, right), (0, 0)))
        y = _depthwise(xp, w, xp.shape[1] - self.kernel_size + 1)  # [B, L', E]
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


class CausalConv1d(DepthwiseConv1d):
    """Causal depthwise conv (left padding K-1), as in mamba_ssm / causal-conv1d.

    Besides the full call, it carries a state of the last ``K-1`` inputs ``[B, K-1, E]`` so a sequence can be
    processed in pieces (``call_with_state``, one frame at a time included) with identical results.
    """

    def __init__(self, channels: int, kernel_size: int = 4, *, use_bias: bool = True, rngs: nnx.Rngs):
        super().__init__(channels, kernel_size, padding=(kernel_size - 1, 0), use_bias=use_bias, rngs=rngs)

    def init_state(self, batch: int, dtype=jnp.float32) -> Float[Array, "B K1 E"]:
        return jnp.zeros((batch, self.kernel_size - 1, self.weight.shape[1]), dtype)

    def call_with_state(self, x: Float[Array, "B L E"], state: Float[Array, "B K1 E"]
                        ) -> tuple[Float[Array, "B L E"], Float[Array, "B K1 E"]]:
        """Convolve ``x`` given the previous ``K-1`` inputs; returns the output and the next state."""
        k = self.kernel_size
        xs = jnp.concatenate([state.astype(x.dtype), x], axis=1)  # [B, K-1+L, E]
        y = _depthwise(xs, self.weight[...].astype(x.dtype), x.shape[1])  # [B, L, E]
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y, xs[:, xs.shape[1] - (k - 1):, :]
