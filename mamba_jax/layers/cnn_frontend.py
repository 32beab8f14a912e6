"""SpeechBrain's ``ConvolutionFrontEnd`` as ConMamba configures it (docs/conmamba.md, step 3).

Each block: Conv2d 3x3 stride 2 with "same" **reflect** padding of 1 on both axes -> LayerNorm jointly over
(freq, channel) -> LeakyReLU(0.01) -> Dropout. Input ``[B, L, F]`` (F = 80 mels), output ``[B, L', F'·C]``
flattened with index ``f·C + c`` (640 = 20·32 for 80 mels). ``L' = ceil(ceil(L/2)/2)``.

``lengths`` (valid frames per row, optional) makes right padding inert: the conv's reflect padding at the end
of a row is taken at the row's true end (input frame ``L`` := frame ``L-2``, the only padded frame a valid
output reads), so the first ``ceil(L/2)`` outputs equal the unpadded call's whatever the padding holds.
Without it the padded row is convolved as it is (SpeechBrain on a padded batch).

Weights are kept channels-last: ``conv.kernel [kT, kF, C_in, C_out]``; SpeechBrain's torch weight
``[C_out, C_in, kF, kT]`` maps to it by ``transpose(3, 2, 1, 0)``. LayerNorm affine ``weight/bias [F, C]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.init import torch_default
from mamba_jax.typing import Array, Float, Int


class ConvBlock2d(nnx.Module):
    """One stride-2 conv block ``[B, L, F, C_in] -> [B, ceil(L/2), ceil(F/2), C_out]``."""

    def __init__(self, in_ch: int, out_ch: int, n_freq_out: int, *, kernel: int = 3, stride: int = 2,
                 dropout: float = 0.1, dtype=None, rngs: nnx.Rngs):
        fan_in = in_ch * kernel * kernel
        init = torch_default(fan_in)
        self.kernel_size, self.stride, self.dtype = kernel, stride, dtype
        self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, in_ch, out_ch)))
        self.bias = nnx.Param(init(rngs.params(), (out_ch,)))
        self.norm_weight = nnx.Param(jnp.ones((n_freq_out, out_ch), jnp.float32))
        self.norm_bias = nnx.Param(jnp.zeros((n_freq_out, out_ch), jnp.float32))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: Float[Array, "B L F C"], lengths: Int[Array, "B"] | None = None
                 ) -> Float[Array, "B L2 F2 C2"]:
        # SB "same" padding with stride > 1: floor(k/2) on each side, reflect mode (get_padding_elem).
        p = self.kernel_size // 2
        if lengths is not None:  # reflect at each row's true end: frame L+j := frame L-2-j (j < p)
            t = jnp.arange(x.shape[1])[None, :]  # [1, L]
            n = lengths[:, None]
            src = jnp.clip(2 * n - 2 - t, 0, x.shape[1] - 1)  # mirror image of position t about n - 1
            idx = jnp.where((t >= n) & (t < n + p), src, t)[:, :, None, None]  # [B, L, 1, 1]
            x = jnp.take_along_axis(x, jnp.broadcast_to(idx, (x.shape[0], x.shape[1], 1, 1)), axis=1)
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        dt = self.dtype or x.dtype
        y = jax.lax.conv_general_dilated(
            x.astype(dt), self.kernel[...].astype(dt), window_strides=(self.stride, self.stride), padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST,
        ) + self.bias[...].astype(dt)  # [B, L2, F2, C_out]
        yf = y.astype(jnp.float32)
        mean = jnp.mean(yf, axis=(-2, -1), keepdims=True)
        var = jnp.mean(jnp.square(yf - mean), axis=(-2, -1), keepdims=True)
        yf = (yf - mean) * jax.lax.rsqrt(var + 1e-5) * self.norm_weight[...] + self.norm_bias[...]
        return self.dropout(jax.nn.leaky_relu(yf, 0.01)).astype(y.dtype)


class ConvFrontEnd(nnx.Module):
    """Two ConvBlock2d (64 then 32 channels by default). Keys: ``convblock_0.*``, ``convblock_1.*``."""

    def __init__(self, n_mels: int = 80, channels: tuple[int, ...] = (64, 32), *, dropout: float = 0.1,
                 dtype=None, rngs: nnx.Rngs):
        f, c_in = n_mels, 1
        blocks = []
        for c in channels:
            f = -(-f // 2)
            blocks.append(ConvBlock2d(c_in, c, f, dropout=dropout, dtype=dtype, rngs=rngs))
            c_in = c
        self.blocks = nnx.List(blocks)
        self.out_dim = f * c_in

    def __call__(self, feats: Float[Array, "B L F"], lengths: Int[Array, "B"] | None = None
                 ) -> Float[Array, "B L4 FC"]:
        """``lengths``: valid frames per row (padding made inert, see the module docstring) or None."""
        x = feats[..., None]  # [B, L, F, 1]
        for blk in self.blocks:
            x = blk(x, lengths)
            if lengths is not None:
                lengths = (lengths + 1) // 2
        return x.reshape(*x.shape[:2], -1)  # [B, L', F'·C], index f·C + c

    @staticmethod
    def output_lengths(lengths: Int[Array, "B"], n_blocks: int = 2) -> Int[Array, "B"]:
        """Frames after ``n_blocks`` stride-2 convs: ``ceil(L/2)`` per block."""
        for _ in range(n_blocks):
            lengths = (lengths + 1) // 2
        return lengths
