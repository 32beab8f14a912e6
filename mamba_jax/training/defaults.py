"""The fields every config file starts from; ``configs/*.py`` call ``base_config`` and override."""

from __future__ import annotations

import ml_collections

from mamba_jax.data.config import data_config


def base_config(task: str) -> ml_collections.ConfigDict:
    """Defaults for ``task`` in {'separation', 'asr'}. Every field a config may override exists here, so a
    mistyped ``--config.x.y=...`` fails (``lock_config=True``).
    """
    if task not in ("separation", "asr"):
        raise ValueError(f"task must be 'separation' or 'asr', got {task!r}")
    c = ml_collections.ConfigDict()
    c.task = task
    c.model = ml_collections.ConfigDict(dict(name="", scan_impl="auto"))
    if task == "separation":
        c.loss = ml_collections.ConfigDict(dict(
            name="si_snr",  # 'si_snr' (zero-mean, Mamba-TasNet), 'si_sdr' (no mean removal, SepMamba), 'snr' (SPMamba)
            threshold_db=ml_collections.FieldReference(None, field_type=float),  # drop examples below this loss
        ))
    else:
        c.loss = ml_collections.ConfigDict(dict(
            name="ctc_attention",  # 'ctc_attention' (ctc_weight, label_smoothing) or 'ctc'
            ctc_weight=0.3,
            label_smoothing=0.1,
            reduction="batchmean",  # 'batchmean' (SpeechBrain: summed over tokens / batch) or 'mean' (torch ctc_loss)
            blank_id=0,
        ))
    c.optim = ml_collections.ConfigDict(
        dict(
            name="adam",  # 'adam' | 'adamw'
            lr=1.5e-4,
            weight_decay=0.0,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            clip_norm=5.0,
            schedule="constant",  # 'constant' | 'warmup_cosine' | 'plateau' | 'noam'
            warmup_steps=0,
            min_lr_ratio=0.01,  # warmup_cosine floor, as a fraction of lr
            plateau_patience=10,  # evaluations without improvement (plateau)
            plateau_factor=0.5,
            grad_accum=1,
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            num_steps=1000,
            batch_size=1,
            seed=0,
            log_every_steps=10,
            eval_every_steps=200,
            checkpoint_every_steps=200,
            max_to_keep=3,
            keep_best=2,
            eval_batches=ml_collections.FieldReference(None, field_type=int),  # None: the whole split
            eval_pad_multiple=4000,  # validation inputs are zero-padded to a multiple of this (fewer compiles)
            precision="fp32",  # 'fp32' | 'bf16' (matmul inputs only; params, scan and state stay fp32)
            init_from="",  # a checkpoint (workdir, checkpoints/ or step folder) to fine-tune from; fresh runs only
        )
    )
    c.model.dtype = c.train.get_ref("precision")  # the models' matmul compute dtype follows train.precision
    c.data = data_config(sample_rate=8000 if task == "separation" else 16000,
                         corpus="wsj0-2mix" if task == "separation" else "librispeech")
    return c
