"""Dual-path Mamba M on WSJ0-2mix: the DPMamba S recipe (configs/dpmamba_s.py) with the M size.

Params: 15,869,441 (``python -m mamba_jax.summary configs/dpmamba_m.py``). Paper: SI-SNRi 22.6 dB, SDRi 22.7 dB (16 blocks, skip around intra).
Smoke: ``configs/dpmamba_m.py:smoke``.
"""

import importlib.util
import pathlib


def _base():
    spec = importlib.util.spec_from_file_location("_dpmamba_s", pathlib.Path(__file__).with_name("dpmamba_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config(arg=None):
    return _base().get_config(arg, size="m")
