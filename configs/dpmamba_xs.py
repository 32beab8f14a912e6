"""Dual-path Mamba XS on WSJ0-2mix: the DPMamba S recipe (configs/dpmamba_s.py) with the XS size.

Params: 2,265,857 (``python -m mamba_jax.summary configs/dpmamba_xs.py``). Paper: SI-SNRi 19.2 dB, SDRi 19.4 dB.
Smoke: ``configs/dpmamba_xs.py:smoke``.
"""

import importlib.util
import pathlib


def _base():
    spec = importlib.util.spec_from_file_location("_dpmamba_s", pathlib.Path(__file__).with_name("dpmamba_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config(arg=None):
    return _base().get_config(arg, size="xs")
