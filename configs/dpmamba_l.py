"""Dual-path Mamba L on WSJ0-2mix: the DPMamba S recipe (configs/dpmamba_s.py) with the L size.

Params: 59,788,289 (``python -m mamba_jax.summary configs/dpmamba_l.py``). Paper: SI-SNRi 23.4 dB, SDRi 23.6 dB (the v1 abstract claimed 24.4).
Smoke: ``configs/dpmamba_l.py:smoke``.
"""

from configs._families import dpmamba


def get_config(arg=None):
    return dpmamba("l", arg)
