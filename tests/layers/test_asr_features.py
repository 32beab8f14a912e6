"""InputNormalization running statistics, SpecAugment, speed perturbation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax.layers.normalization import InputNormalization
from mamba_jax.layers.specaugment import SpecAugmentConfig, spec_augment, spectrogram_drop, warp_at


def _sb_global_norm_reference(batches, epochs, until=4):
    """Loop form of SpeechBrain's global InputNormalization update (training calls)."""
    gm = gs = None
    count = 0
    for (x, lens), ep in zip(batches, epochs):
        means = [x[i, :n].mean(0) for i, n in enumerate(lens)]
        stds = [np.maximum(x[i, :n].std(0, ddof=1), 1e-10) for i, n in enumerate(lens)]
        m, s = np.mean(means, 0), np.mean(stds, 0)
        if count == 0:
            gm, gs = m, s
        elif ep < until:
            w = 1 / (count + 1)
            gm, gs = (1 - w) * gm + w * m, (1 - w) * gs + w * s
        count += 1
    return gm, gs, count


def test_input_normalization_running_stats():
    rng = np.random.default_rng(0)
    batches = [(rng.normal(3 * i, 1 + i, (3, 20, 8)).astype(np.float32), np.array([20, 15, 7])) for i in range(6)]
    epochs = [0, 1, 2, 3, 4, 5]  # the last two must not update
    norm = InputNormalization(8, update_until_epoch=4)
    for (x, lens), ep in zip(batches, epochs):
        out = norm(jnp.asarray(x), jnp.asarray(lens), epoch=ep, train=True)
    gm, gs, count = _sb_global_norm_reference(batches, epochs)
    np.testing.assert_allclose(norm.glob_mean[...], gm, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.glob_std[...], gs, rtol=1e-5)
    assert int(norm.count[...]) == count
    np.testing.assert_allclose(out, (batches[-1][0] - gm) / gs, rtol=1e-4, atol=1e-4)
    before = np.asarray(norm.glob_mean[...]).copy()
    norm(jnp.asarray(batches[0][0]), jnp.asarray(batches[0][1]), epoch=0, train=False)  # eval: no update
    np.testing.assert_array_equal(norm.glob_mean[...], before)


def test_spectrogram_drop_counts_and_fill():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 200, 80)).astype(np.float32))
    y = np.asarray(spectrogram_drop(jax.random.key(0), x, axis=1, count=(4, 4), length=(15, 25)))
    dropped = np.all(y == np.float32(np.mean(np.asarray(x))), axis=2)  # [B, L] whole frames replaced
    for b in range(4):
        assert 14 <= dropped[b].sum() <= 4 * 24
    yf = np.asarray(spectrogram_drop(jax.random.key(1), x, axis=2, count=(1, 3), length=(10, 20), replace="zeros"))
    bins = np.all(yf == 0, axis=1)  # [B, F]
    assert all(9 <= bins[b].sum() <= 3 * 19 for b in range(4))


def _torch_bicubic_1d(seg: np.ndarray, n_out: int) -> np.ndarray:
    """numpy upsample_bicubic (align_corners=True, a=-0.75, clamped taps) of ``seg [m, F]`` to n_out rows."""
    a, m = -0.75, seg.shape[0]

    def w(s):
        s = abs(s)
        return ((a + 2) * s - (a + 3)) * s * s + 1 if s <= 1 else ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    out = np.zeros((n_out, seg.shape[1]))
    for i in range(n_out):
        real = i * (m - 1) / (n_out - 1) if n_out > 1 else 0.0
        i0 = int(np.floor(real))
        t = real - i0
        for k in range(-1, 3):
            out[i] += w(t - k) * seg[min(max(i0 + k, 0), m - 1)]
    return out


def test_time_warp_matches_bicubic_reference():
    x = np.random.default_rng(2).normal(size=(2, 50, 6)).astype(np.float32)
    for c, tw in [(20, 24), (20, 16), (5, 8), (44, 40)]:
        ref = np.concatenate([_torch_bicubic_1d(x[1, :c], tw), _torch_bicubic_1d(x[1, c:], 50 - tw)])
        np.testing.assert_allclose(np.asarray(warp_at(jnp.asarray(x), c, tw))[1], ref, atol=1e-4)


def test_spec_augment_jits_both_recipes():
    x = jnp.ones((2, 120, 80)) * jnp.arange(80.0)
    s2s = jax.jit(lambda k, v: spec_augment(k, v, SpecAugmentConfig()))(jax.random.key(3), x)
    ctc = spec_augment(jax.random.key(3), x, SpecAugmentConfig((1, 5), (6, 12), (1, 3), (10, 20), "mean", 0))
    assert s2s.shape == ctc.shape == x.shape and not np.allclose(s2s, x) and np.isfinite(s2s).all()
