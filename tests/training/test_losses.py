"""Separation losses against float64 NumPy formulas with brute-force PIT (loops over itertools.permutations)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax.training.losses import separation_loss


def _ref_pair(name, e, s):
    """float64, written from the papers' / libraries' definitions (see losses.py docstring)."""
    e, s = np.asarray(e, np.float64), np.asarray(s, np.float64)
    if name == "si_snr":
        s, e = s - s.mean(), e - e.mean()
        proj = np.dot(e, s) / (np.dot(s, s) + 1e-8) * s
        return -10 * np.log10(np.sum(proj ** 2) / (np.sum((e - proj) ** 2) + 1e-8) + 1e-8)
    if name == "si_sdr":
        eps = np.finfo(np.float32).eps
        a = (np.dot(e, s) + eps) / (np.dot(s, s) + eps)
        return -10 * np.log10((np.sum((a * s) ** 2) + eps) / (np.sum((a * s - e) ** 2) + eps))
    s, e = s - s.mean(), e - e.mean()
    return -10 * np.log10(np.sum(s ** 2) / (np.sum((e - s) ** 2) + 1e-8) + 1e-8)


def _ref_loss(name, est, ref, threshold=None):
    per, perms = [], []
    for b in range(est.shape[0]):
        best = None
        for p in itertools.permutations(range(est.shape[1])):
            v = np.mean([_ref_pair(name, est[b, p[j]], ref[b, j]) for j in range(est.shape[1])])
            if best is None or v < best[0]:
                best = (v, p)
        per.append(best[0])
        perms.append(best[1])
    per = np.array(per)
    kept = per > threshold if threshold is not None else np.ones_like(per, bool)
    return (per[kept].mean() if kept.any() else 0.0), per, np.array(perms), kept


def _batch(s, seed, t=400):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((4, s, t)) + 0.3
    # estimates: a random permutation of scaled references plus noise of varying level
    est = np.empty_like(ref)
    true_perm = []
    for b in range(4):
        p = rng.permutation(s)
        true_perm.append(p)
        for j in range(s):
            est[b, p[j]] = (0.5 + b) * ref[b, j] + (0.2 + 0.4 * b) * rng.standard_normal(t) + 0.1 * b
    return est.astype(np.float32), ref.astype(np.float32), np.array(true_perm)


@pytest.mark.parametrize("name", ["si_snr", "si_sdr", "snr"])
@pytest.mark.parametrize("s", [2, 3])
def test_matches_numpy_pit(name, s):
    est, ref, true_perm = _batch(s, seed=s)
    loss, aux = jax.jit(lambda e, r: separation_loss(name, e, r))(jnp.asarray(est), jnp.asarray(ref))
    ref_loss, per, perms, _ = _ref_loss(name, est, ref)
    np.testing.assert_allclose(np.asarray(aux["per_example"]), per, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(aux["perm"]), perms)
    if name != "snr":  # scale-invariant losses recover the planted assignment
        np.testing.assert_array_equal(np.asarray(aux["perm"]), true_perm)


def test_threshold_drops_easy_examples():
    est, ref, _ = _batch(2, seed=7)
    est[0] = ref[0, ::-1] * 3.0 + 1e-4 * np.random.default_rng(0).standard_normal(ref[0].shape)  # ~ -80 dB
    thresholded = jax.jit(lambda e, r: separation_loss("si_snr", e, r, threshold_db=-40.0))
    loss, aux = thresholded(jnp.asarray(est), jnp.asarray(ref))
    ref_loss, per, _, kept = _ref_loss("si_snr", est, ref, threshold=-40.0)
    assert per[0] < -40 and not kept[0] and kept[1:].all()
    np.testing.assert_array_equal(np.asarray(aux["kept"]), kept)
    assert int(aux["n_kept"]) == 3
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-4)
    # all dropped: zero loss, zero gradient, n_kept == 0 (the original skips such a batch)
    g_est = jnp.asarray(np.stack([ref[:, 1], ref[:, 0]], 1) * 2)
    loss0, aux0 = thresholded(g_est, jnp.asarray(ref))
    assert int(aux0["n_kept"]) == 0 and float(loss0) == 0.0
    g = jax.jit(jax.grad(lambda e: thresholded(e, jnp.asarray(ref))[0]))(g_est)
    assert float(jnp.abs(g).max()) == 0.0


def test_gradient_and_errors():
    est, ref, _ = _batch(2, seed=3)
    g = jax.jit(jax.grad(lambda e: separation_loss("si_sdr", e, jnp.asarray(ref))[0]))(jnp.asarray(est))
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
    with pytest.raises(ValueError, match="name"):
        separation_loss("sdr", jnp.asarray(est), jnp.asarray(ref))
    with pytest.raises(ValueError, match=r"\[B, S, T\]"):
        separation_loss("snr", jnp.asarray(est[0]), jnp.asarray(ref[0]))
