"""Separation metrics, host-side in float64 NumPy: SI-SNR(i) and BSS-eval v3 SDR(i)/SIR/SAR.

* ``si_snr``: zero-mean scale-invariant SNR in dB with SpeechBrain's eps placement (eps 1e-8), i.e. exactly
  minus the Mamba-TasNet training loss; ``pit_si_snr`` picks the permutation with the best mean.
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

import numpy as np

_EPS = 1e-8


def si_snr(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Zero-mean SI-SNR in dB over the last axis (SpeechBrain ``cal_si_snr`` eps placement), float64."""
    est = np.asarray(est, np.float64)
    ref = np.asarray(ref, np.float64)
    s = ref - ref.mean(-1, keepdims=True)
    e = est - est.mean(-1, keepdims=True)
    proj = (np.sum(e * s, -1) / (np.sum(s * s, -1) + _EPS))[..., None] * s
    noise = e - proj
    return 10 * np.log10(np.sum(proj ** 2, -1) / (np.sum(noise ** 2, -1) + _EPS) + _EPS)


def _best_perm(score: np.ndarray) -> tuple[int, ...]:
    """``score[i, j]`` (estimate i vs reference j) -> permutation maximising the mean matched score."""
    n = score.shape[0]
    perms = list(itertools.permutations(range(n)))
    means = [np.mean(score[list(p), range(n)]) for p in perms]
    return perms[int(np.argmax(means))]


def pit_si_snr(est: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[S, T]`` each -> (SI-SNR per reference under the best permutation [S], perm [S])."""
    pair = si_snr(np.asarray(est)[:, None, :], np.asarray(ref)[None, :, :])  # [S_est, S_ref]
    perm = _best_perm(pair)
    return pair[list(perm), range(len(perm))], np.array(perm)


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
    perm = _best_perm(sir) if compute_permutation else tuple(range(n_src))
    sel = (list(perm), list(range(n_src)))
    return sdr[sel], sir[sel], sar[sel], np.array(perm)


def sdri(est: np.ndarray, ref: np.ndarray, mix: np.ndarray, *, flen: int = 512) -> float:
    """Mean BSS-eval SDR of the estimates minus that of the mixture given as every estimate."""
    sdr, _, _, _ = bss_eval_sources(ref, est, flen=flen)
    base, _, _, _ = bss_eval_sources(ref, np.broadcast_to(np.asarray(mix), np.shape(ref)), flen=flen)
    return float(np.mean(sdr) - np.mean(base))
