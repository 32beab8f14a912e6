"""SepMamba M on WSJ0-2mix: the SepMamba S recipe (configs/sepmamba_s.py) with the m model.

Params: 22,249,090 (``python -m mamba_jax.summary configs/sepmamba_m.py``). Paper: SI-SNRi 22.7 dB, SI-SDRi 22.7 dB, SDRi 22.9 dB.
Smoke: ``configs/sepmamba_m.py:smoke``.
"""

import importlib.util
import pathlib


def _base():
    spec = importlib.util.spec_from_file_location("_sepmamba_s", pathlib.Path(__file__).with_name("sepmamba_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config(arg=None):
    return _base().get_config(arg, size="m")
