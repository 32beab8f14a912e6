"""Dual-path Mamba M on WSJ0-2mix: the DPMamba S recipe (configs/dpmamba_s.py) with the M size.

Params: 15,869,441 (``python -m mamba_jax.summary configs/dpmamba_m.py``). Paper: SI-SNRi 22.6 dB, SDRi 22.7 dB (16 blocks, skip around intra).
Smoke: ``configs/dpmamba_m.py:smoke``.
"""

from configs._families import dpmamba


def get_config(arg=None):
    return dpmamba("m", arg)
