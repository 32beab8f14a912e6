"""Dual-path Mamba L on WSJ0-2mix: the DPMamba S recipe (configs/dpmamba_s.py) with the L size.

Params: 59,788,289 (``python -m mamba_jax.summary configs/dpmamba_l.py``). Paper: SI-SNRi 23.4 dB, SDRi 23.6 dB (the v1 abstract claimed 24.4).
Smoke: ``configs/dpmamba_l.py:smoke``.
"""

import importlib.util
import pathlib


def _base():
    spec = importlib.util.spec_from_file_location("_dpmamba_s", pathlib.Path(__file__).with_name("dpmamba_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config(arg=None):
    return _base().get_config(arg, size="l")
