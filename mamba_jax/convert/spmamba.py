"""SPMamba (JusperLee/SPMamba, look2hear/models/SPMamba.py, docs/spmamba.md): one ``.pth`` state_dict.

``best_model.pth`` = {model_name, state_dict, model_args, infos}; Lightning checkpoints hold the same keys
under ``state_dict`` with an ``audio_model.`` prefix (``read_state_dict`` unwraps both). Key renames:

* ``blocks.{b}.{intra,inter}_mamba.{forward,backward}_blocks.0.*`` <- ours ``..._blocks/layers/0/*``;
* ``blocks.{b}.attn_conv_{Q,K,V}_{h}.{0,1,2}.*`` (nn.Sequential of Conv2d, PReLU, LayerNormalization4DCF)
  <- ours ``attn_conv_{Q,K,V}/{h}/{conv,act,norm}/*``; the same for ``attn_concat_proj.{0,1,2}``;
* ``LayerNormalization4D(CF)`` gamma/beta ``[1, C, 1, 1]`` / ``[1, C, 1, F]`` <- ours ``[C]`` / ``[C, F]``.
"""

from __future__ import annotations

import re

import numpy as np

from mamba_jax.convert.common import StateDictMapper, torch_key

_SEQUENTIAL = {"conv": "0", "act": "1", "norm": "2"}


def _key(our_path: str) -> str:
    key = torch_key(our_path).replace("_blocks.layers.", "_blocks.")
    key = re.sub(r"\.(attn_conv_[QKV])\.(\d+)\.", r".\1_\2.", key)
    return re.sub(r"\.(attn_conv_[QKV]_\d+|attn_concat_proj)\.(conv|act|norm)\.",
                  lambda m: f".{m.group(1)}.{_SEQUENTIAL[m.group(2)]}.", key)


def convert(state_dict: dict[str, np.ndarray], model_cfg) -> tuple[dict, dict]:
    """``(params, rest)`` from an SPMamba state_dict."""
    m = StateDictMapper(state_dict, model_cfg)
    m.take_all(_key)
    return m.finish()
