"""SepMamba M causal (forward-only Mamba stacks, 6 blocks) on WSJ0-2mix: the SepMamba S recipe (configs/sepmamba_s.py) with the m_causal model.

Params: 22,249,090 (``python -m mamba_jax.summary configs/sepmamba_causal_m.py``). Look-ahead 105 samples (13.1 ms), see mamba_jax/models/sepmamba.py. Results: paper only.
Smoke: ``configs/sepmamba_causal_m.py:smoke``.
"""

from configs._families import sepmamba


def get_config(arg=None):
    return sepmamba("m_causal", arg)
