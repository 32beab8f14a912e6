"""SepMamba S causal (forward-only Mamba stacks, 8 blocks) on WSJ0-2mix: the SepMamba S recipe (configs/sepmamba_s.py) with the s_causal model.

Params: 7,253,826 (``python -m mamba_jax.summary configs/sepmamba_causal_s.py``). Look-ahead 105 samples (13.1 ms), see mamba_jax/models/sepmamba.py. Results: paper only.
Smoke: ``configs/sepmamba_causal_s.py:smoke``.
"""

from configs._families import sepmamba


def get_config(arg=None):
    return sepmamba("s_causal", arg)
