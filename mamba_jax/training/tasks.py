"""What the training loop needs from a task: its data, its loss and its validation.

A task offers ``dataset(split, batch_size, seed, process_index, process_count)``,
``loss(model, batch, rng) -> (loss, aux)`` (pure, jitted inside the step; ``aux["n_kept"] == 0`` marks a
batch with no usable example, whose update the step skips) and
``evaluate(model, max_batches) -> dict`` with at least ``loss`` (lower is better, drives ReduceLROnPlateau)
and ``score`` (higher is better, selects the best-k checkpoints).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from mamba_jax.data import pipeline
from mamba_jax.training.losses import separation_loss


@jax.jit
def eval_step(model, mix: jax.Array, lengths: jax.Array) -> jax.Array:
    """Validation forward ``[B, T] -> [B, S, T]`` of right-padded inputs of ``lengths`` samples (the models make
    padding inert, so each row equals its unpadded call): module-level, so every evaluation of a run (and every
    run of the same model) reuses its compilations; one per padded input length."""
    return model(mix, lengths)


class SeparationTask:
    """Waveform-in, sources-out training; validation reports SI-SNRi and SDRi (BSS-eval) on the valid split."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def dataset(self, split: str, *, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1):
        return pipeline.separation_dataset(self.config.data, split, batch_size=batch_size, seed=seed,
                                           process_index=process_index, process_count=process_count)

    def loss(self, model, batch: dict, rng: jax.Array):
        del rng
        est = model(batch["mix"])  # [B, S, T]
        loss, aux = separation_loss(self.config.loss.name, est, batch["sources"],
                                    threshold_db=self.config.loss.threshold_db)
        return loss, {"n_kept": aux["n_kept"]}  # examples above the loss threshold (all, without one)

    def evaluate(self, model, *, max_batches: int | None = None) -> dict[str, float]:
        """Full-length validation utterances, one at a time, on process 0's view of the model.

        Inputs are zero-padded to a multiple of ``train.eval_pad_multiple`` samples so only a few lengths
        compile; the model gets the true length, so the padding changes nothing, and metrics are computed on
        the unpadded part.
        """
        from mamba_jax.metrics.separation import sdri, si_snri

        ds = pipeline.separation_dataset(self.config.data, "valid", batch_size=1, seed=0)
        multiple = int(self.config.train.get("eval_pad_multiple", 4000))
        losses, si_snri_vals, sdri_vals = [], [], []
        with pipeline.iterate(ds, max_batches) as batches:
            for batch in tqdm(batches, desc="valid", leave=False, disable=jax.process_index() != 0):
                n = int(batch["lengths"][0])
                mix = np.asarray(batch["mix"][:, :n], np.float32)
                ref = np.asarray(batch["sources"][:, :, :n], np.float32)
                padded = -(-n // multiple) * multiple
                est = np.asarray(eval_step(model, jnp.asarray(np.pad(mix, ((0, 0), (0, padded - n)))),
                                       jnp.asarray([n], jnp.int32)))[:, :, :n]
                loss, _ = separation_loss(self.config.loss.name, jnp.asarray(est), jnp.asarray(ref),
                                          threshold_db=None)
                losses.append(float(loss))
                si_snri_vals.append(si_snri(est[0], ref[0], mix[0]))
                sdri_vals.append(sdri(est[0], ref[0], mix[0]))
        if not losses:
            raise ValueError("validation split is empty")
        return dict(loss=float(np.mean(losses)), si_snri=float(np.mean(si_snri_vals)),
                    sdri=float(np.mean(sdri_vals)), score=float(np.mean(si_snri_vals)))


def make_task(config: ml_collections.ConfigDict, workdir):
    """The task of ``config.task``; ``workdir`` holds task files (the ASR tokenizer trained for the run)."""
    if config.task == "separation":
        return SeparationTask(config)
    if config.task == "asr":
        from mamba_jax.training.asr_task import AsrTask

        return AsrTask(config, workdir)
    raise ValueError(f"unknown task {config.task!r}")
