"""DPMamba (xi-j/Mamba-TasNet, SpeechBrain Dual_Path_Model, docs/mamba_tasnet.md): a SpeechBrain CKPT
folder of three state_dicts.

Keys ``encoder.conv1d.weight``, ``masknet.{norm, conv1d, dual_mdl.{i}.{intra,inter}_{mdl,norm}, conv2d,
end_conv1x1, prelu, output.0, output_gate.0}.*``, ``decoder.weight``: our modules keep these names, so every
leaf maps to the key spelled like its path (``common.torch_key``) with the default layout rules.
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
