"""Mamba-TasNet L on WSJ0-2mix: the S recipe (configs/mambatasnet_s.py) with the L size.

Params: 58,951,168 (the paper says 59.6M; the code gives this) (``python -m mamba_jax.summary configs/mambatasnet_l.py``). Paper (arXiv 2407.09732):
SI-SNRi 23.7 dB, SDRi 23.8 dB; lr 1.0e-4 (the only recipe change). Smoke: ``configs/mambatasnet_l.py:smoke`` (same tiny model as the S smoke).
"""

import importlib.util
import pathlib


def _base():
    spec = importlib.util.spec_from_file_location("_mambatasnet_s", pathlib.Path(__file__).with_name("mambatasnet_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config(arg=None):
    return _base().get_config(arg, size="l")
