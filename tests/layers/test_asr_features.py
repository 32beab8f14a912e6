"""InputNormalization running statistics, SpecAugment, speed perturbation."""

from __future__ import annotations

import dataclasses
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


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D boolean mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def _check_chunks(mask: np.ndarray, count: tuple[int, int], length: tuple[int, int]) -> None:
    """``mask [B, D]``: per row, at most ``count[1]`` runs (chunks may overlap and merge), each at least one chunk
    (``>= length[0]``) and at most ``count[1]`` chunks of ``<= length[1] - 1`` (torch.randint's exclusive high)."""
    for row in mask:
        runs = _runs(row)
        assert 1 <= len(runs) <= count[1], runs
        assert all(length[0] <= r <= count[1] * (length[1] - 1) for r in runs), runs
        assert sum(runs) <= count[1] * (length[1] - 1), runs


def test_spectrogram_drop_counts_and_fill():
    x = np.random.default_rng(1).normal(size=(4, 200, 80)).astype(np.float32)
    y = np.asarray(spectrogram_drop(jax.random.key(0), jnp.asarray(x), axis=1, count=(4, 4), length=(15, 25)))
    fill = np.mean(x, dtype=np.float64)
    dropped = np.all(np.isclose(y, fill, rtol=0, atol=1e-6), axis=2)  # [B, L] whole frames get the batch's mean
    _check_chunks(dropped, (4, 4), (15, 25))
    np.testing.assert_allclose(y, np.where(dropped[:, :, None], fill, x), rtol=0, atol=1e-6)  # nothing else
    yf = np.asarray(spectrogram_drop(jax.random.key(1), jnp.asarray(x), axis=2, count=(1, 3), length=(10, 20),
                                     replace="zeros"))
    bins = np.all(yf == 0, axis=1)  # [B, F]
    _check_chunks(bins, (1, 3), (10, 20))
    np.testing.assert_array_equal(yf, np.where(bins[:, None, :], 0, x))


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


def _drop_reference(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recover the masks of time-drop then freq-drop (both ``replace="mean"``) from ``y`` and rebuild ``y`` from
    ``x`` with numpy: frames get ``mean(x)``, then bins the mean of the time-dropped tensor."""
    bins = np.all(y == y[:, :1, :], axis=1)  # [B, F]: a random column is constant over time only when dropped
    m1 = np.mean(x, dtype=np.float64)  # XLA's float32 sum differs from numpy's in the last bits
    frames = np.all(np.isclose(y, m1, rtol=0, atol=1e-6) | bins[:, None, :], axis=2)  # [B, L]
    x1 = np.where(frames[:, :, None], m1, x)
    m2 = np.mean(x1, dtype=np.float64)
    return frames, bins, np.where(bins[:, None, :], m2, x1)


def test_spec_augment_both_recipes_against_reference():
    """CTC recipe: the drops' masks within the configured bounds and values exactly the fills; S2S recipe: the
    same drops, then a time warp whose anchors (first/last frame, the centre's two frames) keep their content and
    whose frames match the numpy bicubic resize of the dropped input."""
    length = 120
    x = np.random.default_rng(4).normal(size=(2, length, 80)).astype(np.float32)
    ctc_cfg = SpecAugmentConfig((1, 5), (6, 12), (1, 3), (10, 20), "mean", 0)
    ctc = np.asarray(spec_augment(jax.random.key(3), jnp.asarray(x), ctc_cfg))
    frames, bins, ref = _drop_reference(x, ctc)
    _check_chunks(frames, (1, 5), (6, 12))
    _check_chunks(bins, (1, 3), (10, 20))
    np.testing.assert_allclose(ctc, ref, rtol=0, atol=1e-6)

    s2s_cfg = SpecAugmentConfig()
    s2s = np.asarray(jax.jit(lambda k, v: spec_augment(k, v, s2s_cfg))(jax.random.key(5), jnp.asarray(x)))
    no_warp = dataclasses.replace(s2s_cfg, time_warp_window=0)  # the same keys draw the same drops
    dropped = np.asarray(spec_augment(jax.random.key(5), jnp.asarray(x), no_warp))
    frames, bins, ref = _drop_reference(x, dropped)
    _check_chunks(frames, (4, 4), (15, 25))
    _check_chunks(bins, (4, 4), (10, 20))
    np.testing.assert_allclose(dropped, ref, rtol=0, atol=1e-6)
    w = s2s_cfg.time_warp_window
    np.testing.assert_allclose(s2s[:, [0, -1]], dropped[:, [0, -1]], atol=1e-5)  # align_corners: ends kept
    # centre c ~ U{w..L-w-1}, target tw ~ U{c-w..c+w-1} + 1: output tw-1 is input c-1 and output tw is input c
    found = [(c, tw) for c in range(w, length - w) for tw in range(c - w + 1, c + w + 1)
             if np.allclose(s2s[:, tw - 1], dropped[:, c - 1], atol=1e-5)
             and np.allclose(s2s[:, tw], dropped[:, c], atol=1e-5)]
    assert found, "no warp centre whose frames the output keeps"

    def resized(c, tw):  # dropped frames repeat, so several candidates can keep the anchors: one must fit all
        return np.stack([np.concatenate([_torch_bicubic_1d(d[:c], tw), _torch_bicubic_1d(d[c:], length - tw)])
                         for d in dropped])

    assert any(np.allclose(s2s, resized(c, tw), atol=1e-4) for c, tw in found), found
