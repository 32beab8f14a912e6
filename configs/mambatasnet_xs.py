"""Mamba-TasNet XS on WSJ0-2mix: the S recipe (configs/mambatasnet_s.py) with the XS size.

Params: 2,210,176 (``python -m mamba_jax.summary configs/mambatasnet_xs.py``). Paper (arXiv 2407.09732):
SI-SNRi 19.0 dB, SDRi 19.3 dB. Smoke: ``configs/mambatasnet_xs.py:smoke`` (same tiny model as the S smoke).
"""

from configs._families import mamba_tasnet


def get_config(arg=None):
    return mamba_tasnet("xs", arg)
