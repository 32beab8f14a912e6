"""Separation training losses with permutation-invariant training (PIT) over every permutation.

``separation_loss(name, est, ref, threshold_db=None)`` returns ``(loss, aux)``; ``est``/``ref`` are
``[B, S, T]``. For each example, each permutation ``p`` assigns estimate ``p[s]`` to reference ``s``; the
example loss is the mean over sources of the per-pair loss, minimised over all ``S!`` permutations
(``mamba_jax.metrics.separation.best_permutation``: one gather over the ``[B, S, S]`` pair matrix).

Per-pair losses (all negative ratios in dB; sums over time, all in fp32):

* ``"si_snr"`` (Mamba-TasNet / DPMamba; SpeechBrain ``cal_si_snr``, eps 1e-8)::

      s, e  = ref - mean(ref), est - mean(est)
      proj  = <e, s> s / (|s|^2 + eps);   noise = e - proj
      -10 log10(|proj|^2 / (|noise|^2 + eps) + eps)

* ``"si_sdr"`` (SepMamba; torchmetrics ``scale_invariant_signal_distortion_ratio(zero_mean=False)``,
  eps = float32 machine epsilon)::

      a = (<e, s> + eps) / (|s|^2 + eps);  -10 log10((|a s|^2 + eps) / (|a s - e|^2 + eps))   (no mean removal)

* ``"snr"`` (SPMamba training; look2hear ``PairwiseNegSDR("snr")``, zero-mean, eps 1e-8, not scale
  invariant)::  -10 log10(|s|^2 / (|e - s|^2 + eps) + eps)

Thresholding (SpeechBrain ``threshold_byloss``, the Mamba-TasNet recipe uses -40): examples whose PIT loss
is ``<= threshold_db`` are dropped and the batch loss is the mean over the rest. When every example is
dropped the original skips the batch; here the loss is 0 (zero gradient) and ``aux["n_kept"] == 0`` tells
the trainer. The permutation choice never carries gradient (``argmin`` / ``min``).

``aux``: ``per_example`` [B] (PIT loss of every example, dropped or not), ``perm`` [B, S] int (estimate index
assigned to each reference), ``kept`` [B] bool, ``n_kept`` scalar.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax.metrics.separation import best_permutation, si_snr
from mamba_jax.typing import Array, Float

_F32_EPS = float(np.finfo(np.float32).eps)


def _zero_mean(x: jax.Array) -> jax.Array:
    return x - jnp.mean(x, axis=-1, keepdims=True)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sum(a * b, axis=-1)


def pair_neg_si_snr(est: Float[Array, "... T"], ref: Float[Array, "... T"]) -> Float[Array, "..."]:
    """Negative zero-mean SI-SNR in dB (SpeechBrain ``cal_si_snr``), broadcasting over leading axes: minus the
    validation metric ``mamba_jax.metrics.separation.si_snr``, the same function."""
    return -si_snr(est, ref)


def pair_neg_si_sdr(est: Float[Array, "... T"], ref: Float[Array, "... T"]) -> Float[Array, "..."]:
    """Negative SI-SDR without mean removal (torchmetrics ``zero_mean=False``)."""
    eps = _F32_EPS
    alpha = (_dot(est, ref) + eps) / (_dot(ref, ref) + eps)
    target = alpha[..., None] * ref
    noise = target - est
    return -10.0 * jnp.log10((_dot(target, target) + eps) / (_dot(noise, noise) + eps))


def pair_neg_snr(est: Float[Array, "... T"], ref: Float[Array, "... T"]) -> Float[Array, "..."]:
    """Negative zero-mean SNR (look2hear ``pairwise_neg_snr``)."""
    eps = 1e-8
    s, e = _zero_mean(ref), _zero_mean(est)
    noise = e - s
    return -10.0 * jnp.log10(_dot(s, s) / (_dot(noise, noise) + eps) + eps)


PAIR_LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "si_snr": pair_neg_si_snr,
    "si_sdr": pair_neg_si_sdr,
    "snr": pair_neg_snr,
}


def separation_loss(name: str, est: Float[Array, "B S T"], ref: Float[Array, "B S T"], *,
                    threshold_db: float | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PIT separation loss (see the module doc). Returns ``(scalar loss, aux)``."""
    if name not in PAIR_LOSSES:
        raise ValueError(f"separation_loss: name must be one of {sorted(PAIR_LOSSES)}, got {name!r}")
    if est.ndim != 3 or est.shape != ref.shape:
        raise ValueError(f"separation_loss: est and ref must both be [B, S, T], got {est.shape} and {ref.shape}")
    est32, ref32 = est.astype(jnp.float32), ref.astype(jnp.float32)
    pair = PAIR_LOSSES[name](est32[:, :, None, :], ref32[:, None, :, :])  # [B, S_est, S_ref]
    per_example, perm = best_permutation(pair)  # [B], [B, S]
    if threshold_db is None:
        kept = jnp.ones(per_example.shape, bool)
    else:
        kept = per_example > threshold_db
    n_kept = jnp.sum(kept)
    loss = jnp.sum(jnp.where(kept, per_example, 0.0)) / jnp.maximum(n_kept, 1)
    return loss, {"per_example": per_example, "perm": perm, "kept": kept, "n_kept": n_kept}
