"""Mamba-TasNet M on WSJ0-2mix: the S recipe (configs/mambatasnet_s.py) with the M size.

Params: 15,647,488 (``python -m mamba_jax.summary configs/mambatasnet_m.py``). Paper (arXiv 2407.09732):
SI-SNRi 22.4 dB, SDRi 22.6 dB. Smoke: ``configs/mambatasnet_m.py:smoke`` (same tiny model as the S smoke).
"""

from configs._families import mamba_tasnet


def get_config(arg=None):
    return mamba_tasnet("m", arg)
