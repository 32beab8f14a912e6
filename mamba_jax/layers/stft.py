"""``torch.stft`` / ``torch.istft`` (center=True, reflect padding, periodic Hann, onesided, not normalised).

STFT of ``x [B, T]``: reflect-pad ``n_fft // 2`` on both sides, frames ``t * hop`` of ``n_fft`` samples times
the periodic Hann window, rfft -> ``[B, L, F]`` complex with ``L = 1 + T // hop`` and ``F = n_fft // 2 + 1``.

iSTFT (``length=T``): irfft each frame (imaginary parts of the DC and Nyquist bins are ignored, as in any
c2r transform), multiply by the window, overlap-add, divide by the overlap-added squared window, and keep
samples ``[n_fft // 2, n_fft // 2 + T)``.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from mamba_jax.typing import Array, Float


def hann_periodic(n: int) -> np.ndarray:
    """``torch.hann_window(n)`` (periodic): ``0.5 - 0.5 cos(2 pi k / n)``."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def n_frames(length: int, hop: int) -> int:
    return 1 + length // hop


def stft(x: Float[Array, "B T"], n_fft: int, hop: int) -> jnp.ndarray:
    """``[B, T] -> [B, L, F]`` complex64 (see module doc). Needs ``T > n_fft // 2`` (reflect padding)."""
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(f"stft: reflect padding needs T > n_fft // 2 = {n_fft // 2}, got T={x.shape[-1]}")
    pad = n_fft // 2
    xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (pad, pad)), mode="reflect")  # [B, T + n_fft]
    n = n_frames(x.shape[-1], hop)
    idx = np.arange(n)[:, None] * hop + np.arange(n_fft)[None, :]  # [L, n_fft], static
    frames = xp[:, idx] * hann_periodic(n_fft)  # [B, L, n_fft]
    return jnp.fft.rfft(frames, axis=-1)


def istft(spec: jnp.ndarray, n_fft: int, hop: int, length: int) -> Float[Array, "B T"]:
    """``[B, L, F]`` complex -> ``[B, length]`` float32 (see module doc). Needs ``n_fft % hop == 0``."""
    if n_fft % hop:
        raise ValueError(f"istft: n_fft ({n_fft}) must be a multiple of hop ({hop})")
    b, n, _ = spec.shape
    win = hann_periodic(n_fft)
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1).astype(jnp.float32) * win  # [B, L, n_fft]
    r = n_fft // hop
    total = (n + r - 1) * hop  # = n_fft + hop * (L - 1)
    pieces = frames.reshape(b, n, r, hop)
    out = jnp.zeros((b, total), jnp.float32)
    for j in range(r):  # piece j of frame t lands at (t + j) * hop
        out = out + jnp.pad(pieces[:, :, j].reshape(b, n * hop), ((0, 0), (j * hop, (r - 1 - j) * hop)))
    env = np.zeros(total, np.float64)
    for t in range(n):
        env[t * hop: t * hop + n_fft] += win.astype(np.float64) ** 2
    start = n_fft // 2
    if start + length > total:
        raise ValueError(f"istft: {n} frames cannot produce {length} samples")
    env = env[start: start + length]
    if np.any(env < 1e-11):
        raise ValueError("istft: window overlap-add envelope is zero (NOLA violated)")
    return out[:, start: start + length] / env.astype(np.float32)
