"""Mamba-TasNet XS on WSJ0-2mix: the S recipe (configs/mambatasnet_s.py) with the XS size.

Params: 2,210,176 (``python -m mamba_jax.summary configs/mambatasnet_xs.py``). Paper (arXiv 2407.09732):
SI-SNRi 19.0 dB, SDRi 19.3 dB. Smoke: ``configs/mambatasnet_xs.py:smoke`` (same tiny model as the S smoke).
"""

import importlib.util
import pathlib


def _base():
    spec = importlib.util.spec_from_file_location("_mambatasnet_s", pathlib.Path(__file__).with_name("mambatasnet_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config(arg=None):
    return _base().get_config(arg, size="xs")
