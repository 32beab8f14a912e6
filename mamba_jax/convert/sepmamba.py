"""SepMamba and SepMambaCausal (itsmeeandrew/SepMamba, docs/sepmamba.md): one ``.pth`` state_dict.

Keys ``down.{i}.conv1d.*``, ``down.{i}.mamba_layer.{forward,backward}_mamba_block.mamba_blocks.{j}.{mixer.*,
norm.{weight,bias}}``, ``up.{i}.{convT1d,conv1d_fusion}.*``, ``up.{i}.mamba_layer...``, ``decoder.*``. Our
stack of blocks is ``layers`` where the original's is ``mamba_blocks``; everything else is spelled like our
path. The file is ``best_model.pth``/``last_model.pth`` = {model_state_dict, optimizer_state_dict, ...}
(``read_state_dict`` unwraps it).
"""

from __future__ import annotations

import numpy as np

from mamba_jax.convert.common import StateDictMapper, torch_key


def _key(our_path: str) -> str:
    key = torch_key(our_path)
    return key.replace("_mamba_block.layers.", "_mamba_block.mamba_blocks.")


def convert(state_dict: dict[str, np.ndarray], model_cfg) -> tuple[dict, dict]:
    """``(params, rest)`` from a SepMamba (``model_cfg.causal``: SepMambaCausal) state_dict."""
    m = StateDictMapper(state_dict, model_cfg)
    m.take_all(_key)
    return m.finish()
