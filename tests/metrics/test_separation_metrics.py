"""Metrics against mir_eval (BSS-eval v3, permutation included) and float64 formulas."""

from __future__ import annotations

import warnings

import mir_eval
import numpy as np
import pytest

from mamba_jax.metrics import separation as ms


def _mixture(s, t, seed):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((s, t))
    a = np.eye(s) + 0.25 * rng.standard_normal((s, s))
    est = (a @ ref)[rng.permutation(s)] + 0.05 * rng.standard_normal((s, t))
    est[0] = np.convolve(est[0], [1.0, -0.4, 0.2])[:t]  # a short filter: allowed distortion
    return ref, est


@pytest.mark.parametrize("s,t,seed", [(2, 2000, 0), (3, 1500, 1)])
def test_bss_eval_matches_mir_eval(s, t, seed):
    ref, est = _mixture(s, t, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sdr_r, sir_r, sar_r, perm_r = mir_eval.separation.bss_eval_sources(ref, est)
    sdr, sir, sar, perm = ms.bss_eval_sources(ref, est)
    np.testing.assert_array_equal(perm, perm_r)
    np.testing.assert_allclose(sdr, sdr_r, atol=1e-6)
    np.testing.assert_allclose(sir, sir_r, atol=1e-6)
    np.testing.assert_allclose(sar, sar_r, atol=1e-6)


def test_sdri_against_mir_eval():
    ref, est = _mixture(2, 1600, 4)
    mix = ref.sum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sdr = mir_eval.separation.bss_eval_sources(ref, est)[0]
        base = mir_eval.separation.bss_eval_sources(ref, np.stack([mix, mix]))[0]
    np.testing.assert_allclose(ms.sdri(est, ref, mix), sdr.mean() - base.mean(), atol=1e-6)


def test_si_snr_and_improvement():
    rng = np.random.default_rng(5)
    ref = rng.standard_normal((2, 800)) + 0.5
    est = np.stack([3 * ref[1] + 0.1 * rng.standard_normal(800) + 2.0, -ref[0] + 0.3 * rng.standard_normal(800)])

    def f64(e, s):  # textbook zero-mean SI-SNR, computed independently per pair
        e, s = e - e.mean(), s - s.mean()
        target = np.dot(e, s) / np.dot(s, s) * s
        return 10 * np.log10(np.dot(target, target) / np.dot(e - target, e - target))

    vals, perm = ms.pit_si_snr(est, ref)
    np.testing.assert_array_equal(perm, [1, 0])
    np.testing.assert_allclose(vals, [f64(est[1], ref[0]), f64(est[0], ref[1])], atol=1e-6)
    mix = ref.sum(0)
    expected = vals.mean() - np.mean([f64(mix, ref[0]), f64(mix, ref[1])])
    np.testing.assert_allclose(ms.si_snri(est, ref, mix), expected, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="all zeros"):
        ms.bss_eval_sources(np.zeros((2, 100)), np.ones((2, 100)))
    with pytest.raises(ValueError, match="differ"):
        ms.bss_eval_sources(np.ones((2, 100)), np.ones((2, 90)))
