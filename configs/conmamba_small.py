"""ConMamba-S + Transformer decoder (docs/conmamba.md; Mamba-ASR hparams/S2S/conmamba_small.yaml).

    python train.py --config configs/conmamba_small.py            # 14,075,520 params
    python train.py --config configs/conmamba_small.py:smoke

Expected (paper, no LM): WER 4.0 / 9.5. Differs from large: D 144, 4 heads, d_ffn 1024, 4 decoder layers,
n_fft 400 / 25 ms window, Adam (no weight decay) lr 1e-3, Noam 25000, no grad accumulation, no label smoothing.
"""

from configs._families import conmamba


def get_config(arg=None):
    return conmamba("small", "transformer", arg)
