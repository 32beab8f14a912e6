"""SpeechBrain ``InputNormalization(norm_type="global")`` with running statistics kept as nnx state.

Per call with a batch ``x [B, L, F]`` and valid frame counts ``lengths [B]``:

* each utterance's mean and (unbiased) std over its valid frames, std floored at 1e-10; then their batch
  averages ``m, s``;
* in training: first call ``glob = (m, s)``; later calls, while ``epoch < update_until_epoch``,
  ``glob = (1 - w)·glob + w·(m, s)`` with ``w = 1/(count+1)``; ``count`` increases on every training call;
* output ``(x - glob_mean) / glob_std`` (training and evaluation alike).

The statistics are ``nnx.BatchStat`` variables (not ``nnx.Param``), so optimisers skip them and checkpoints
keep them (SpeechBrain's ``normalizer.ckpt``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.typing import Array, Float, Int


class InputNormalization(nnx.Module):
    def __init__(self, n_feats: int = 80, *, update_until_epoch: int = 4, eps: float = 1e-10):
        self.update_until_epoch = update_until_epoch
        self.eps = eps
        self.glob_mean = nnx.BatchStat(jnp.zeros((n_feats,), jnp.float32))
        self.glob_std = nnx.BatchStat(jnp.ones((n_feats,), jnp.float32))
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def batch_stats(self, x: Float[Array, "B L F"], lengths: Int[Array, "B"]
                    ) -> tuple[Float[Array, "F"], Float[Array, "F"]]:
        """Batch average of per-utterance mean and unbiased std over valid frames."""
        xf = x.astype(jnp.float32)
        valid = (jnp.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]  # [B, L, 1]
        n = jnp.maximum(lengths.astype(jnp.float32), 1.0)[:, None]  # [B, 1]
        mean = jnp.sum(jnp.where(valid, xf, 0.0), axis=1) / n  # [B, F]
        var = jnp.sum(jnp.where(valid, jnp.square(xf - mean[:, None]), 0.0), axis=1) / jnp.maximum(n - 1.0, 1.0)
        std = jnp.maximum(jnp.sqrt(var), self.eps)
        return jnp.mean(mean, axis=0), jnp.mean(std, axis=0)

    def __call__(self, x: Float[Array, "B L F"], lengths: Int[Array, "B"], *, epoch: int | jax.Array = 0,
                 train: bool = False) -> Float[Array, "B L F"]:
        """Normalise; in training also update the running statistics (see the module docstring)."""
        if train:
            m, s = self.batch_stats(x, lengths)
            count = self.count[...]
            w = 1.0 / (count.astype(jnp.float32) + 1.0)
            first = count == 0
            update = jnp.logical_or(first, jnp.asarray(epoch) < self.update_until_epoch)
            w = jnp.where(first, 1.0, jnp.where(update, w, 0.0))
            self.glob_mean[...] = (1.0 - w) * self.glob_mean[...] + w * m
            self.glob_std[...] = (1.0 - w) * self.glob_std[...] + w * s
            self.count[...] = count + 1
        return ((x.astype(jnp.float32) - self.glob_mean[...]) / self.glob_std[...]).astype(x.dtype)
