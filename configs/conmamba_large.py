"""ConMamba-L + Transformer decoder, LibriSpeech 960 h (docs/conmamba.md; Mamba-ASR hparams/S2S/conmamba_large.yaml).

    python train.py --config configs/conmamba_large.py            # 115,187,888 params
    python train.py --config configs/conmamba_large.py:smoke      # tiny, CPU, a few steps

Expected (paper, no LM): WER 2.8 / 6.7 on test-clean / test-other.

The recipe and the blocks besides the base fields (``features``, ``augment``, ``tokenizer``, ``decoding``,
``recipe``) are ``conmamba`` in configs/_families.py, shared by every ConMamba config.
"""

from configs._families import conmamba


def get_config(arg=None):
    return conmamba("large", "transformer", arg)
