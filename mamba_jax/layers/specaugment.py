"""SpeechBrain's spectrogram augmentations (``augment.freq_domain``) in JAX, for ``x [B, L, F]``.

* ``spectrogram_drop``: ``n ~ U{count_lo..count_hi}`` chunks (one n for the batch); per utterance and chunk a
  length ``~ U{len_lo..len_hi-1}`` (torch.randint's exclusive high) and a start ``~ U{0..max(1, D - maxlen)-1}``
  with ``maxlen`` the longest sampled chunk in the batch; masked cells get the mean of the whole batch tensor
  (``replace="mean"``) or 0. ``axis=1`` drops frames, ``axis=2`` mel bins.
* ``time_warp``: one centre ``c ~ U{w..L-w-1}`` and target ``t ~ U{c-w..c+w-1} + 1`` for the batch;
  ``x[:, :c]`` is resized to ``t`` frames and ``x[:, c:]`` to ``L - t`` frames with bicubic interpolation
  (align_corners=True, torch's cubic kernel a = -0.75, edge clamping). Identity when ``L - w <= w``.
* ``spec_augment``: the recipe's chain, always all of them (Augmenter with min = max = number of
  augmentations): S2S time-drop 4×15–25, freq-drop 4×10–20, warp 5; CTC time-drop 1–5×6–12, freq-drop
  1–3×10–20, no warp.

Shapes are static (jit-friendly); randomness is a pure function of the key.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mamba_jax.typing import Array, Float, PRNGKey


@dataclasses.dataclass(frozen=True)
class SpecAugmentConfig:
    """Defaults: the S2S recipe. Ranges are SpeechBrain's (low, high) arguments."""

    time_drop_count: tuple[int, int] = (4, 4)
    time_drop_length: tuple[int, int] = (15, 25)
    freq_drop_count: tuple[int, int] = (4, 4)
    freq_drop_length: tuple[int, int] = (10, 20)
    replace: str = "mean"
    time_warp_window: int = 5  # 0: no warp

    @classmethod
    def from_config(cls, augment_cfg) -> "SpecAugmentConfig":
        return cls(tuple(augment_cfg.time_drop_count), tuple(augment_cfg.time_drop_length),
                   tuple(augment_cfg.freq_drop_count), tuple(augment_cfg.freq_drop_length),
                   augment_cfg.replace, augment_cfg.time_warp_window)


def spectrogram_drop(key: PRNGKey, x: Float[Array, "B L F"], *, axis: int, count: tuple[int, int],
                     length: tuple[int, int], replace: str = "mean") -> Float[Array, "B L F"]:
    """Drop random chunks along ``axis`` (1 time, 2 frequency); see the module docstring."""
    b, d = x.shape[0], x.shape[axis]
    k_n, k_len, k_pos = jax.random.split(key, 3)
    max_n = count[1]
    if max_n == 0:
        return x
    n = jax.random.randint(k_n, (), count[0], count[1] + 1)
    lens = jax.random.randint(k_len, (b, max_n), length[0], max(length[1], length[0] + 1))  # high exclusive
    active = jnp.arange(max_n)[None, :] < n  # [1, max_n]
    maxlen = jnp.max(jnp.where(active, lens, 0))
    hi = jnp.maximum(1, d - maxlen)
    pos = jnp.floor(jax.random.uniform(k_pos, (b, max_n)) * hi).astype(jnp.int32)
    ar = jnp.arange(d)[None, None, :]
    mask = (pos[..., None] <= ar) & (ar < (pos + lens)[..., None]) & active[..., None]  # [B, max_n, D]
    mask = jnp.any(mask, axis=1)  # [B, D]
    mask = mask[:, :, None] if axis == 1 else mask[:, None, :]
    fill = jnp.mean(x) if replace == "mean" else jnp.zeros((), x.dtype)
    if replace not in ("mean", "zeros"):
        raise ValueError(f"replace must be 'mean' or 'zeros', got {replace!r}")
    return jnp.where(mask, jax.lax.stop_gradient(fill).astype(x.dtype), x)


def _cubic_weights(t: jax.Array) -> jax.Array:
    """torch's bicubic convolution weights (a = -0.75) for fractional offsets ``t``: ``[..., 4]``."""
    a = -0.75

    def near(s):  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s):  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    return jnp.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _resample_segment(x: jax.Array, src: jax.Array, lo: jax.Array | int, hi: jax.Array | int) -> jax.Array:
    """Bicubic sample of ``x [B, L, F]`` at fractional frames ``src [L]``, indices clamped to ``[lo, hi]``."""
    i0 = jnp.floor(src)
    t = src - i0
    w = _cubic_weights(t)  # [L, 4]
    idx = jnp.clip(i0.astype(jnp.int32)[:, None] + jnp.arange(-1, 3)[None, :], lo, hi)  # [L, 4]
    return jnp.einsum("blkf,lk->blf", x[:, idx, :], w.astype(x.dtype))


def time_warp(key: PRNGKey, x: Float[Array, "B L F"], *, window: int = 5) -> Float[Array, "B L F"]:
    """SpeechBrain ``Warping(warp_window, 'bicubic', dim=1)``; see the module docstring."""
    length = x.shape[1]
    if window <= 0 or length - window <= window:
        return x
    k_c, k_w = jax.random.split(key)
    c = jax.random.randint(k_c, (), window, length - window)
    tw = jax.random.randint(k_w, (), c - window, c + window) + 1
    return warp_at(x, c, tw)


def warp_at(x: Float[Array, "B L F"], c: jax.Array | int, tw: jax.Array | int) -> Float[Array, "B L F"]:
    """Resize ``x[:, :c]`` to ``tw`` frames and ``x[:, c:]`` to ``L - tw`` frames (bicubic, align_corners)."""
    length = x.shape[1]
    c, tw = jnp.asarray(c), jnp.asarray(tw)
    out_t = jnp.arange(length)
    # align_corners=True: output i of n samples input position i·(m-1)/(n-1) of an m-frame segment
    left_src = out_t * (c - 1) / jnp.maximum(tw - 1, 1)
    right_src = c + (out_t - tw) * (length - c - 1) / jnp.maximum(length - tw - 1, 1)
    left = _resample_segment(x, left_src.astype(jnp.float32), 0, c - 1)
    right = _resample_segment(x, jnp.maximum(right_src, c).astype(jnp.float32), c, length - 1)
    return jnp.where((out_t < tw)[None, :, None], left, right)


def spec_augment(key: PRNGKey, x: Float[Array, "B L F"], cfg: SpecAugmentConfig = SpecAugmentConfig()
                 ) -> Float[Array, "B L F"]:
    """time-drop -> freq-drop -> time-warp (if ``time_warp_window > 0``), in the recipes' order."""
    k1, k2, k3 = jax.random.split(key, 3)
    x = spectrogram_drop(k1, x, axis=1, count=cfg.time_drop_count, length=cfg.time_drop_length, replace=cfg.replace)
    x = spectrogram_drop(k2, x, axis=2, count=cfg.freq_drop_count, length=cfg.freq_drop_length, replace=cfg.replace)
    if cfg.time_warp_window > 0:
        x = time_warp(k3, x, window=cfg.time_warp_window)
    return x
