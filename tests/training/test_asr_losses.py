"""CTC vs brute-force alignment enumeration; KL/label smoothing vs a direct numpy formula."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax.training.asr_losses import asr_loss, ctc_loss, kldiv_loss, make_decoder_io


def brute_force_ctc(logp: np.ndarray, label: list[int], blank: int = 0) -> float:
    """-log sum over every frame-level path whose collapse (merge repeats, drop blanks) equals ``label``."""
    t, v = logp.shape
    total = -np.inf
    for path in itertools.product(range(v), repeat=t):
        collapsed = [k for i, k in enumerate(path) if k != blank and (i == 0 or path[i - 1] != k)]
        if collapsed == label:
            total = np.logaddexp(total, sum(logp[i, k] for i, k in enumerate(path)))
    return -total


@pytest.mark.parametrize("labels", [[[1, 2], [2, 2]], [[1, 1, 2], [3]], [[2], []]])
def test_ctc_matches_brute_force(labels):
    rng = np.random.default_rng(len(labels[0]))
    t, v = 5, 4
    lengths = np.array([5, 4])
    logp = np.asarray(jax.nn.log_softmax(rng.normal(size=(2, t, v)) * 2, axis=-1), np.float64)
    lab = np.zeros((2, 3), np.int32)
    for i, lb in enumerate(labels):
        lab[i, :len(lb)] = lb
    lab_len = np.array([len(lb) for lb in labels])
    per = np.asarray(ctc_loss(jnp.asarray(logp, jnp.float32), jnp.asarray(lengths), jnp.asarray(lab),
                              jnp.asarray(lab_len), reduction="none"))
    ref = [brute_force_ctc(logp[i, :lengths[i]], labels[i]) for i in range(2)]
    np.testing.assert_allclose(per, ref, rtol=1e-4)
    assert float(ctc_loss(jnp.asarray(logp, jnp.float32), lengths, lab, lab_len)) == pytest.approx(sum(ref) / 2,
                                                                                                  rel=1e-4)
    mean = float(ctc_loss(jnp.asarray(logp, jnp.float32), lengths, lab, lab_len, reduction="mean"))
    assert mean == pytest.approx(np.mean(np.array(ref) / np.maximum(lab_len, 1)), rel=1e-4)


def test_ctc_infeasible_is_zero():
    logp = jax.nn.log_softmax(jnp.zeros((1, 2, 4)))
    assert float(ctc_loss(logp, jnp.array([2]), jnp.array([[1, 1]]), jnp.array([2]), reduction="none")[0]) == 0.0


@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_kldiv_label_smoothing(ls):
    rng = np.random.default_rng(0)
    logp = np.asarray(jax.nn.log_softmax(rng.normal(size=(2, 3, 5)), -1), np.float64)
    tgt = np.array([[1, 4, 2], [3, 2, 0]])
    lens = np.array([3, 2])
    ref = 0.0
    for b in range(2):
        for u in range(lens[b]):
            q = np.full(5, ls / 4)
            q[tgt[b, u]] = 1 - ls
            ref += sum(qi * (np.log(qi) - lp) for qi, lp in zip(q, logp[b, u]) if qi > 0)
    got = kldiv_loss(jnp.asarray(logp, jnp.float32), tgt, lens, label_smoothing=ls)
    assert float(got) == pytest.approx(ref / 2, rel=1e-5)


def test_decoder_io_and_combined_loss():
    tokens = jnp.array([[5, 6, 7], [8, 9, 0]])
    tin, tgt, tl = make_decoder_io(tokens, jnp.array([3, 2]))
    np.testing.assert_array_equal(tin, [[1, 5, 6, 7], [1, 8, 9, 0]])
    np.testing.assert_array_equal(tgt, [[5, 6, 7, 2], [8, 9, 2, 0]])
    np.testing.assert_array_equal(tl, [4, 3])
    out = dict(ctc_logprobs=jax.nn.log_softmax(jnp.zeros((2, 6, 10))), enc_lengths=jnp.array([6, 6]),
               attn_logprobs=jax.nn.log_softmax(jnp.zeros((2, 4, 10))))
    loss, m = asr_loss(out, tokens, jnp.array([3, 2]), ctc_weight=0.3, label_smoothing=0.0)
    assert float(m["attn_loss"]) == pytest.approx(7 * np.log(10) / 2, rel=1e-5)
    assert float(loss) == pytest.approx(0.3 * float(m["ctc_loss"]) + 0.7 * float(m["attn_loss"]), rel=1e-6)
