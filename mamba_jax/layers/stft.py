"""``torch.stft`` / ``torch.istft`` (center=True, reflect padding, periodic Hann, onesided, not normalised).

STFT of ``x [B, T]``: reflect-pad ``n_fft // 2`` on both sides, frames ``t * hop`` of ``n_fft`` samples times
the periodic Hann window, rfft -> ``[B, L, F]`` complex with ``L = 1 + T // hop`` and ``F = n_fft // 2 + 1``.

iSTFT (``length=T``): irfft each frame (imaginary parts of the DC and Nyquist bins are ignored, as in any
c2r transform), multiply by the window, overlap-add, divide by the overlap-added squared window, and keep
samples ``[n_fft // 2, n_fft // 2 + T)``.

Both take optional ``lengths`` (int32 ``[B]``) for a right-padded batch: the STFT reflects each row at its own
end (frames ``t < 1 + lengths[b] // hop`` equal those of the unpadded row), the iSTFT overlap-adds only those
frames, divides by their own window envelope and zeroes samples ``>= lengths[b]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax.typing import Array, Float, Int


def hann_periodic(n: int) -> np.ndarray:
    """``torch.hann_window(n)`` (periodic): ``0.5 - 0.5 cos(2 pi k / n)``."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def n_frames(length: int, hop: int) -> int:
    return 1 + length // hop


def _reflect_padded(x: Float[Array, "B T"], pad: int, lengths: Int[Array, "B"]) -> Float[Array, "B T2"]:
    """``x`` reflect-padded by ``pad`` on the left and, per row, at ``lengths[b]`` on the right: sample ``j``
    of the row reads ``x[|j|]`` for ``j < lengths[b]`` and ``x[2 (lengths[b] - 1) - j]`` after; ``[B, T + 2 pad]``."""
    t = x.shape[-1]
    j = jnp.arange(-pad, t + pad, dtype=jnp.int32)[None, :]  # [1, T + 2 pad]
    n = jnp.asarray(lengths, jnp.int32)[:, None]  # [B, 1]
    idx = jnp.abs(j)
    idx = jnp.where(idx < n, idx, 2 * (n - 1) - idx)
    idx = jnp.clip(idx, 0, t - 1)  # only positions past every frame of the row clip
    return jnp.take_along_axis(x, idx, axis=1)


def stft(x: Float[Array, "B T"], n_fft: int, hop: int, lengths: Int[Array, "B"] | None = None) -> jnp.ndarray:
    """``[B, T] -> [B, L, F]`` complex64 (see module doc). Needs ``T > n_fft // 2`` (reflect padding); with
    ``lengths`` each row is reflected at its own end (each length ``> n_fft // 2``)."""
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(f"stft: reflect padding needs T > n_fft // 2 = {n_fft // 2}, got T={x.shape[-1]}")
    pad = n_fft // 2
    if lengths is None:
        xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (pad, pad)), mode="reflect")  # [B, T + n_fft]
    else:
        xp = _reflect_padded(x.astype(jnp.float32), pad, lengths)
    n = n_frames(x.shape[-1], hop)
    idx = np.arange(n)[:, None] * hop + np.arange(n_fft)[None, :]  # [L, n_fft], static
    frames = xp[:, idx] * hann_periodic(n_fft)  # [B, L, n_fft]
    return jnp.fft.rfft(frames, axis=-1)


def _overlap_add(pieces: Float[Array, "B L Rp Hop"], hop: int) -> Float[Array, "B T2"]:
    """Sums piece ``j`` of frame ``t`` into samples ``[(t + j) hop, (t + j + 1) hop)``; ``[B, (L + R - 1) hop]``."""
    b, n, r, _ = pieces.shape
    out = jnp.zeros((b, (n + r - 1) * hop), jnp.float32)
    for j in range(r):
        out = out + jnp.pad(pieces[:, :, j].reshape(b, n * hop), ((0, 0), (j * hop, (r - 1 - j) * hop)))
    return out


def istft(spec: jnp.ndarray, n_fft: int, hop: int, length: int, lengths: Int[Array, "B"] | None = None
          ) -> Float[Array, "B T"]:
    """``[B, L, F]`` complex -> ``[B, length]`` float32 (see module doc). Needs ``n_fft % hop == 0``. With
    ``lengths`` row b uses its first ``1 + lengths[b] // hop`` frames and is zero from ``lengths[b]`` on."""
    if lengths is not None:
        return _istft_lengths(spec, n_fft, hop, length, jnp.asarray(lengths, jnp.int32))
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


def _istft_lengths(spec: jnp.ndarray, n_fft: int, hop: int, length: int, lengths: jax.Array) -> Float[Array, "B T"]:
    """``istft`` of right-padded rows: per-row frame count, envelope and length (see ``istft``)."""
    if n_fft % hop:
        raise ValueError(f"istft: n_fft ({n_fft}) must be a multiple of hop ({hop})")
    b, n, _ = spec.shape
    r = n_fft // hop
    win = hann_periodic(n_fft)
    frame_ok = (jnp.arange(n)[None, :] < (1 + lengths // hop)[:, None]).astype(jnp.float32)  # [B, L]
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1).astype(jnp.float32) * win * frame_ok[..., None]
    out = _overlap_add(frames.reshape(b, n, r, hop), hop)
    env = _overlap_add(jnp.broadcast_to((frame_ok[..., None] * win ** 2).reshape(b, n, r, hop), (b, n, r, hop)), hop)
    start = n_fft // 2
    if start + length > out.shape[1]:
        raise ValueError(f"istft: {n} frames cannot produce {length} samples")
    out, env = out[:, start:start + length], env[:, start:start + length]
    valid = jnp.arange(length)[None, :] < lengths[:, None]
    return jnp.where(valid, out / jnp.where(valid, env, 1.0), 0.0)
