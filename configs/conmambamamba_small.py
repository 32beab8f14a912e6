"""ConMamba-S + Mamba decoder (docs/conmamba.md; Mamba-ASR hparams/S2S/conmambamamba_small.yaml).

    python train.py --config configs/conmambamamba_small.py       # 14,570,880 params (paper: 15.0M)
    python train.py --config configs/conmambamamba_small.py:smoke

Expected (paper, no LM): WER 4.0 / 9.7. conmamba_small's recipe with ``model.decoder = 'mamba'``.
"""

from configs._families import conmamba


def get_config(arg=None):
    return conmamba("small", "mamba", arg)
