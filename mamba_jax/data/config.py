"""The ``config.data`` block shared by every config file."""

from __future__ import annotations

import ml_collections


def data_config(**overrides) -> ml_collections.ConfigDict:
    """Data fields with their defaults; keyword arguments override them (unknown names raise).

    root: corpus root, or None for the embedded synthetic corpus (built on first use).
    corpus: 'wsj0-2mix' | 'wsj0-dm' (raw-WSJ0 dynamic mixing) | 'librimix' | 'librispeech'.
    sample_rate: rate the model runs at; on_rate_mismatch: 'resample' or 'error' for files at another rate.
    mode: 'min' | 'max' (wsj0-2mix / LibriMix). segment_seconds: training crop (None: full utterances).
    dynamic_mixing, dm_recipe ('speechbrain' | 'sepmamba'), speed_perturb: training-time mixing.
    drop_shorter: drop utterances shorter than segment_seconds (SPMamba). items_per_epoch: None = corpus size.
    """
    cfg = ml_collections.ConfigDict(
        dict(
            root=ml_collections.FieldReference(None, field_type=str),
            corpus="wsj0-2mix",
            sample_rate=8000,
            mode="min",
            segment_seconds=ml_collections.FieldReference(None, field_type=float),
            dynamic_mixing=False,
            dm_recipe="speechbrain",
            speed_perturb=False,
            drop_shorter=False,
            on_rate_mismatch="resample",
            num_workers=0,
            items_per_epoch=ml_collections.FieldReference(None, field_type=int),
            num_sources=2,
        )
    )
    for key, value in overrides.items():
        if key not in cfg:
            raise AttributeError(f"data_config: unknown field {key!r}")
        cfg[key] = value
    return cfg
