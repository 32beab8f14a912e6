"""ConMamba-S + Transformer decoder (docs/conmamba.md; Mamba-ASR hparams/S2S/conmamba_small.yaml).

    python train.py --config configs/conmamba_small.py            # 14,075,520 params
    python train.py --config configs/conmamba_small.py:smoke

Expected (paper, no LM): WER 4.0 / 9.5. Differs from large: D 144, 4 heads, d_ffn 1024, 4 decoder layers,
n_fft 400 / 25 ms window, Adam (no weight decay) lr 1e-3, Noam 25000, no grad accumulation, no label smoothing.
"""

from __future__ import annotations

import ml_collections

from configs.conmamba_large import asr_config, shrink_for_smoke


def small_overrides(c: ml_collections.ConfigDict) -> None:
    c.loss.label_smoothing = 0.0
    c.optim.update(dict(name="adam", lr=1e-3, weight_decay=0.0, warmup_steps=25000, grad_accum=1))
    c.recipe.update(dict(epochs=110, max_batch_seconds=900.0, max_batch_examples=128))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = asr_config(d_model=144, enc_layers=12, dec_layers=4, heads=4, d_ffn=1024, decoder="transformer",
                   vocab=5000, n_fft=400, win_ms=25.0, arg=None)
    small_overrides(c)
    if arg == "smoke":
        shrink_for_smoke(c)
    elif arg:
        raise ValueError(f"unknown config arg {arg!r} (supported: 'smoke')")
    return c
