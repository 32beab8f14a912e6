"""Mamba-TasNet (xi-j/Mamba-TasNet, docs/mamba_tasnet.md): a SpeechBrain CKPT folder of three state_dicts.

Keys ``encoder.conv1d.weight``, ``masknet.{layer_norm, bottleneck_conv1x1, mamba_net.layers.{i}.mixer.*,
mamba_net.norm_f, mask_conv1x1}.*``, ``decoder.weight``: our modules keep these names, so every leaf maps to
the key spelled like its path (``common.torch_key``) with the default layout rules.
"""

from __future__ import annotations

import numpy as np

from mamba_jax.convert.common import StateDictMapper, torch_key

CKPT_FILES = ("encoder", "masknet", "decoder")


def convert(state_dict: dict[str, np.ndarray], model_cfg) -> tuple[dict, dict]:
    """``(params, rest)`` from the merged ``{encoder,masknet,decoder}.*`` state_dict."""
    m = StateDictMapper(state_dict, model_cfg)
    m.take_all(torch_key)
    return m.finish()
