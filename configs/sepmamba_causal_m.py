"""SepMamba M causal (forward-only Mamba stacks, 6 blocks) on WSJ0-2mix: the SepMamba S recipe (configs/sepmamba_s.py) with the m_causal model.

Params: 22,249,090 (``python -m mamba_jax.summary configs/sepmamba_causal_m.py``). Look-ahead 105 samples (13.1 ms), see mamba_jax/models/sepmamba.py. Results: paper only.
Smoke: ``configs/sepmamba_causal_m.py:smoke``.
"""

import importlib.util
import pathlib


def _base():
    spec = importlib.util.spec_from_file_location("_sepmamba_s", pathlib.Path(__file__).with_name("sepmamba_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config(arg=None):
    return _base().get_config(arg, size="m_causal")
