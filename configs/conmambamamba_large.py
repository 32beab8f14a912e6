"""ConMamba-L + Mamba decoder (docs/conmamba.md; Mamba-ASR hparams/S2S/conmambamamba_large.yaml).

    python train.py --config configs/conmambamamba_large.py       # 122,917,040 params
    python train.py --config configs/conmambamamba_large.py:smoke

Expected (paper, no LM): WER 3.0 / 7.0. Same recipe as conmamba_large with ``model.decoder = 'mamba'``.
"""

from configs._families import conmamba


def get_config(arg=None):
    return conmamba("large", "mamba", arg)
