"""ConMamba-S + Mamba decoder (docs/conmamba.md; Mamba-ASR hparams/S2S/conmambamamba_small.yaml).

    python train.py --config configs/conmambamamba_small.py       # 14,570,880 params (paper: 15.0M)
    python train.py --config configs/conmambamamba_small.py:smoke

Expected (paper, no LM): WER 4.0 / 9.7. conmamba_small's recipe with ``model.decoder = 'mamba'``.
"""

from __future__ import annotations

import ml_collections

from configs.conmamba_large import asr_config, shrink_for_smoke
from configs.conmamba_small import small_overrides


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = asr_config(d_model=144, enc_layers=12, dec_layers=4, heads=4, d_ffn=1024, decoder="mamba",
                   vocab=5000, n_fft=400, win_ms=25.0, arg=None)
    small_overrides(c)
    if arg == "smoke":
        shrink_for_smoke(c)
    elif arg:
        raise ValueError(f"unknown config arg {arg!r} (supported: 'smoke')")
    return c
