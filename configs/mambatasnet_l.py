"""Mamba-TasNet L on WSJ0-2mix: the S recipe (configs/mambatasnet_s.py) with the L size.

Params: 58,951,168 (the paper says 59.6M; the code gives this) (``python -m mamba_jax.summary configs/mambatasnet_l.py``). Paper (arXiv 2407.09732):
SI-SNRi 23.7 dB, SDRi 23.8 dB; lr 1.0e-4 (the only recipe change). Smoke: ``configs/mambatasnet_l.py:smoke`` (same tiny model as the S smoke).
"""

from configs._families import mamba_tasnet


def get_config(arg=None):
    return mamba_tasnet("l", arg)
