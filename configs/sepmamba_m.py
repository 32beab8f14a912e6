"""SepMamba M on WSJ0-2mix: the SepMamba S recipe (configs/sepmamba_s.py) with the m model.

Params: 22,249,090 (``python -m mamba_jax.summary configs/sepmamba_m.py``). Paper: SI-SNRi 22.7 dB, SI-SDRi 22.7 dB, SDRi 22.9 dB.
Smoke: ``configs/sepmamba_m.py:smoke``.
"""

from configs._families import sepmamba


def get_config(arg=None):
    return sepmamba("m", arg)
