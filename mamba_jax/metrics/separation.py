"""Separation metrics, host-side in float64 NumPy: SI-SNR(i) and BSS-eval v3 SDR(i)/SIR/SAR.

* ``si_snr``: zero-mean scale-invariant SNR in dB with SpeechBrain's eps placement (eps 1e-8); on jax arrays
  it is the Mamba-TasNet training loss (negated); ``pit_si_snr`` picks the permutation with the best mean
  (``best_permutation``, the search the PIT losses and the overlap-add alignment use too).
* ``bss_eval_sources``: BSS-eval v3 (Vincent, Gribonval, Fevotte 2006), the definition ``mir_eval``
  implements. For estimate ``e`` and reference ``j``, with every reference allowed a ``flen``-tap FIR
  distortion (``flen = 512``)::

      P_j   = projection of e onto span{r_j delayed by 0..flen-1}          (s_target = P_j)
      P_all = projection of e onto span{r_i delayed by 0..flen-1, all i}
      SDR = 10 log10(|P_j|^2 / |e - P_j|^2)
      SIR = 10 log10(|P_j|^2 / |P_all - P_j|^2)
      SAR = 10 log10(|P_all|^2 / |e - P_all|^2)

  (signals zero-extended by ``flen - 1`` samples). The permutation, as in ``mir_eval``, maximises the
  **mean SIR**; ``perm[j]`` is the estimate assigned to reference ``j``.
* ``si_snri`` / ``sdri``: the metric of the estimates minus that of the mixture used as every estimate
  (SpeechBrain recipe: mean over sources of each, then the difference).

All functions take ``[S, T]`` arrays for one utterance.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

_EPS = 1e-8


def si_snr(est, ref):
    """Zero-mean SI-SNR in dB over the last axis (SpeechBrain ``cal_si_snr``, eps 1e-8 where it puts it).

    The one implementation: numpy inputs compute in float64 (host metrics); jax arrays stay jax in their own
    dtype and are differentiable (the Mamba-TasNet training loss is its negative, ``training.losses``)."""
    if isinstance(est, jax.Array) or isinstance(ref, jax.Array):
        xp = jnp
    else:
        xp, est, ref = np, np.asarray(est, np.float64), np.asarray(ref, np.float64)
    s = ref - xp.mean(ref, axis=-1, keepdims=True)
    e = est - xp.mean(est, axis=-1, keepdims=True)
    proj = (xp.sum(e * s, axis=-1) / (xp.sum(s * s, axis=-1) + _EPS))[..., None] * s
    noise = e - proj
    return 10 * xp.log10(xp.sum(proj * proj, axis=-1) / (xp.sum(noise * noise, axis=-1) + _EPS) + _EPS)


def best_permutation(cost):
    """``cost[..., i, j]`` (estimate i against reference j, lower is better) -> ``(mean cost [...], perm [..., S])``
    under the permutation minimising the mean matched cost over all ``S!`` (``perm[j]``: the estimate assigned
    to reference j; ties go to the first in ``itertools.permutations`` order, so all-equal costs give the
    identity). The one permutation search of the library: numpy in, numpy out (host metrics, float64); a jax
    array stays jax (the jitted PIT losses), with no gradient through the choice."""
    xp = np if isinstance(cost, np.ndarray) else jnp
    s = cost.shape[-1]
    perms = np.array(list(itertools.permutations(range(s))), np.int32)  # [P, S]
    per_perm = xp.mean(cost[..., perms, np.arange(s)], axis=-1)  # [..., P]
    return xp.min(per_perm, axis=-1), xp.asarray(perms)[xp.argmin(per_perm, axis=-1)]


def pit_si_snr(est: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[S, T]`` each -> (SI-SNR per reference under the best permutation [S], perm [S])."""
    pair = si_snr(np.asarray(est)[:, None, :], np.asarray(ref)[None, :, :])  # [S_est, S_ref]
    _, perm = best_permutation(-pair)
    return pair[perm, np.arange(len(perm))], perm


def si_snri(est: np.ndarray, ref: np.ndarray, mix: np.ndarray) -> float:
    """Mean PIT SI-SNR of the estimates minus the mean SI-SNR of the mixture against each reference."""
    vals, _ = pit_si_snr(est, ref)
    base = si_snr(np.broadcast_to(np.asarray(mix), np.shape(ref)), ref)
    return float(np.mean(vals) - np.mean(base))


# ---- BSS-eval v3 ----------------------------------------------------------------------------------------

def _xcorr(a_f: np.ndarray, b_f: np.ndarray, nfft: int, max_lag: int) -> np.ndarray:
    """``c[tau] = sum_u a(u) b(u + tau)`` for ``tau`` in ``[-max_lag, max_lag]`` from rffts of size ``nfft``."""
    c = np.fft.irfft(np.conj(a_f) * b_f, n=nfft)
    return np.concatenate([c[nfft - max_lag:], c[: max_lag + 1]])  # index tau + max_lag


class _Projector:
    """Least-squares projections onto delayed references: Gram matrix built once per utterance."""

    def __init__(self, ref: np.ndarray, flen: int):
        self.ref, self.flen = ref, flen
        n_src, t = ref.shape
        self.nfft = int(2 ** np.ceil(np.log2(t + flen)))
        self.ref_f = np.fft.rfft(ref, n=self.nfft)
        lag = np.arange(flen)
        a_minus_b = lag[:, None] - lag[None, :]
        g = np.zeros((n_src, flen, n_src, flen))
        for i in range(n_src):
            for j in range(n_src):
                # <r_i(t - a), r_j(t - b)> = sum_u r_i(u) r_j(u + a - b) = c_ij(a - b)
                c = _xcorr(self.ref_f[i], self.ref_f[j], self.nfft, flen - 1)
                g[i, :, j, :] = c[a_minus_b + flen - 1]
        self.gram = g.reshape(n_src * flen, n_src * flen)

    def project(self, est: np.ndarray, sources: list[int]) -> np.ndarray:
        """Projection of ``est [T]`` onto the delays of ``ref[sources]``; length ``T + flen - 1``."""
        flen, nfft = self.flen, self.nfft
        t = est.shape[0]
        est_f = np.fft.rfft(est, n=nfft)
        # <r_i(t - a), e(t)> = sum_u r_i(u) e(u + a), a = 0..flen-1
        d = np.concatenate([_xcorr(self.ref_f[i], est_f, nfft, flen - 1)[flen - 1:] for i in sources])
        idx = np.concatenate([np.arange(i * flen, (i + 1) * flen) for i in sources])
        g = self.gram[np.ix_(idx, idx)]
        try:
            coef = np.linalg.solve(g, d)
        except np.linalg.LinAlgError:
            coef = np.linalg.lstsq(g, d, rcond=None)[0]
        coef = coef.reshape(len(sources), flen)
        out_f = np.sum(np.fft.rfft(coef, n=nfft) * self.ref_f[sources], axis=0)
        return np.fft.irfft(out_f, n=nfft)[: t + flen - 1]


def _db(num: float, den: float) -> float:
    return float(10 * np.log10(num / den)) if den > 0 else float("inf")


def bss_eval_sources(ref: np.ndarray, est: np.ndarray, *, flen: int = 512, compute_permutation: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BSS-eval v3 of ``est [S, T]`` against ``ref [S, T]`` -> (sdr, sir, sar, perm), each ``[S]`` in reference
    order (``mir_eval.separation.bss_eval_sources`` semantics, see the module doc)."""
    ref = np.atleast_2d(np.asarray(ref, np.float64))
    est = np.atleast_2d(np.asarray(est, np.float64))
    if ref.shape != est.shape:
        raise ValueError(f"bss_eval_sources: ref {ref.shape} and est {est.shape} differ")
    if np.any(np.all(ref == 0, axis=1)) or np.any(np.all(est == 0, axis=1)):
        raise ValueError("bss_eval_sources: a reference or estimate is all zeros")
    n_src, t = ref.shape
    proj = _Projector(ref, flen)
    pairs = [(i, j) for i in range(n_src) for j in range(n_src)] if compute_permutation else \
        [(j, j) for j in range(n_src)]
    sdr, sir, sar = (np.full((n_src, n_src), np.nan) for _ in range(3))
    for i in set(p[0] for p in pairs):
        e = np.concatenate([est[i], np.zeros(flen - 1)])
        p_all = proj.project(est[i], list(range(n_src)))
        for j in [p[1] for p in pairs if p[0] == i]:
            p_j = proj.project(est[i], [j])
            sdr[i, j] = _db(np.sum(p_j ** 2), np.sum((e - p_j) ** 2))
            sir[i, j] = _db(np.sum(p_j ** 2), np.sum((p_all - p_j) ** 2))
            sar[i, j] = _db(np.sum(p_all ** 2), np.sum((e - p_all) ** 2))
    perm = best_permutation(-sir)[1] if compute_permutation else np.arange(n_src)
    sel = (list(perm), list(range(n_src)))
    return sdr[sel], sir[sel], sar[sel], np.array(perm)


def sdri(est: np.ndarray, ref: np.ndarray, mix: np.ndarray, *, flen: int = 512) -> float:
    """Mean BSS-eval SDR of the estimates minus that of the mixture given as every estimate."""
    sdr, _, _, _ = bss_eval_sources(ref, est, flen=flen)
    base, _, _, _ = bss_eval_sources(ref, np.broadcast_to(np.asarray(mix), np.shape(ref)), flen=flen)
    return float(np.mean(sdr) - np.mean(base))
