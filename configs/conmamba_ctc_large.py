"""ConMamba-L CTC-only, character tokens (docs/conmamba.md; Mamba-ASR hparams/CTC/conmamba_large.yaml).

    python train.py --config configs/conmamba_ctc_large.py        # 31,555,519 params
    python train.py --config configs/conmamba_ctc_large.py:smoke

Expected (paper, no LM): WER 3.9 / 10.3. D 256, 18 encoder layers, no decoder, 31 characters
(blank 0 / bos 1 / eos 2), n_fft 512 with a 25 ms window, AdamW wd 5e-4 lr 1e-3, Noam 7500, grad-accum 4,
SpecAugment without warp (time-drop 1-5 x 6-12 frames, freq-drop 1-3 x 10-20 bins), CTC prefix beam 100.
"""

from configs._families import conmamba


def get_config(arg=None):
    return conmamba("ctc_large", "none", arg)
