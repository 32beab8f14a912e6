"""SepMamba S causal (forward-only Mamba stacks, 8 blocks) on WSJ0-2mix: the SepMamba S recipe (configs/sepmamba_s.py) with the s_causal model.

Params: 7,253,826 (``python -m mamba_jax.summary configs/sepmamba_causal_s.py``). Look-ahead 105 samples (13.1 ms), see mamba_jax/models/sepmamba.py. Results: paper only.
Smoke: ``configs/sepmamba_causal_s.py:smoke``.
"""

import importlib.util
import pathlib


def _base():
    spec = importlib.util.spec_from_file_location("_sepmamba_s", pathlib.Path(__file__).with_name("sepmamba_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config(arg=None):
    return _base().get_config(arg, size="s_causal")
