"""Dual-path Mamba XS on WSJ0-2mix: the DPMamba S recipe (configs/dpmamba_s.py) with the XS size.

Params: 2,265,857 (``python -m mamba_jax.summary configs/dpmamba_xs.py``). Paper: SI-SNRi 19.2 dB, SDRi 19.4 dB.
Smoke: ``configs/dpmamba_xs.py:smoke``.
"""

from configs._families import dpmamba


def get_config(arg=None):
    return dpmamba("xs", arg)
