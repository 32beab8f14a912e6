"""ConMamba-L + Mamba decoder (docs/conmamba.md; Mamba-ASR hparams/S2S/conmambamamba_large.yaml).

    python train.py --config configs/conmambamamba_large.py       # 122,917,040 params
    python train.py --config configs/conmambamamba_large.py:smoke

Expected (paper, no LM): WER 3.0 / 7.0. Same recipe as conmamba_large with ``model.decoder = 'mamba'``.
"""

from __future__ import annotations

import ml_collections

from configs.conmamba_large import asr_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return asr_config(d_model=512, enc_layers=12, dec_layers=6, heads=8, d_ffn=2048, decoder="mamba",
                      vocab=5000, n_fft=512, win_ms=32.0, arg=arg)
